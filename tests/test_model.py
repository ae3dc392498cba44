"""model.py: the paper's sizes, causality, the chunked loss, learning, checkpoints."""
import io

import pytest
import torch
import torch.nn.functional as F

from head import cross_entropy
from model import GPT, ModelConfig, config_for


@pytest.mark.parametrize("preset,expected", [("1m", 1.31e6), ("60m", 59.0e6), ("1b", 1.13e9)])
def test_non_embedding_params_match_the_paper(preset, expected):
    with torch.device("meta"):
        m = GPT(config_for(preset, 50257))
    assert float(f"{m.num_params():.3g}") == expected
    c = m.cfg
    # the formula: per layer 4 d^2 (attention) + 3 d h (SwiGLU) + 2 d (norms); plus the final norm
    assert m.num_params() == c.n_layer * (4 * c.n_embd ** 2 + 3 * c.n_embd * c.mlp_hidden + 2 * c.n_embd) + c.n_embd
    assert m.cfg.vocab_size == 50304 and m.wte.weight is not m.lm_head.weight  # padded, untied


def small(vocab=97, block=32, seed=0):
    torch.manual_seed(seed)
    return GPT(ModelConfig(n_layer=2, n_head=4, n_embd=32, mlp_hidden=64, block_size=block, vocab_size=vocab))


def test_causal():
    m = small().eval()
    x = torch.randint(0, 97, (2, 16))
    x2 = x.clone()
    x2[:, 10] = (x2[:, 10] + 1) % 97
    with torch.no_grad():
        a, b = m(x), m(x2)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-3)


def test_chunked_loss_equals_full_loss_and_gradients():
    torch.manual_seed(0)
    h = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(97, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 97, (50,))
    full = F.cross_entropy(h @ w.T, t)
    gh, gw = torch.autograd.grad(full * 3, (h, w))
    chunked = cross_entropy(h, w, t, chunk=7)  # 7 does not divide 50: a ragged last chunk
    ch, cw = torch.autograd.grad(chunked * 3, (h, w))
    assert torch.allclose(full, chunked, rtol=1e-12)
    assert torch.allclose(gh, ch, rtol=1e-10) and torch.allclose(gw, cw, rtol=1e-10)


def test_model_loss_equals_plain_cross_entropy():
    m = small()
    x, y = torch.randint(0, 97, (3, 32)), torch.randint(0, 97, (3, 32))
    plain = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
    assert torch.allclose(m(x, y), plain, atol=1e-6)


def test_tiny_overfits_one_batch():
    torch.manual_seed(0)
    m = GPT(config_for("tiny", 512, block_size=64))
    x = torch.randint(0, 512, (4, 65))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = m(x[:, :-1], x[:, 1:])
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 6.0 and loss.item() < 0.5 * first


def test_checkpoint_round_trip():
    m = small().eval()
    buf = io.BytesIO()
    torch.save(m.checkpoint(), buf)
    buf.seek(0)
    m2 = GPT.from_checkpoint(torch.load(buf)).eval()
    x = torch.randint(0, 97, (2, 20))
    assert m2.cfg == m.cfg and torch.equal(m(x), m2(x))


def test_init_scales():
    m = GPT(config_for("1m", 4096))
    d, L = 256, 2
    assert m.wte.weight.std().item() == pytest.approx((2 / 5 / d) ** 0.5, rel=0.05)
    assert m.blocks[0].mlp.down.weight.std().item() == pytest.approx(1 / 512 ** 0.5 / L, rel=0.05)


def test_mfu_is_none_on_cpu():
    assert small().estimate_mfu(1e6, "cpu") is None


def test_block_size_checked():
    with pytest.raises(ValueError, match="block size is 32"):
        small()(torch.zeros(1, 33, dtype=torch.long))
