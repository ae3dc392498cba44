"""head.py: every product over the vocabulary on tensor-core dtypes under autocast, the loss and
gradients against an fp64 reference, and the fused Triton kernel run by Triton's CPU interpreter."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import head
import train
from data import DataError
from model import GPT, config_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.addmm_.default,
            torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default, torch.ops.aten.matmul.default}


class RecordProducts(TorchDispatchMode):
    """Shapes and dtypes of every matrix product that reaches the kernels."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            self.seen.append([(tuple(a.shape), a.dtype) for a in args if isinstance(a, torch.Tensor)])
        return func(*args, **(kwargs or {}))


def test_every_product_over_the_vocabulary_runs_in_bf16_under_autocast():
    torch.manual_seed(0)
    vocab = 4096
    model = GPT(config_for("1m", vocab, block_size=64))
    x, y = torch.randint(0, vocab, (2, 64)), torch.randint(0, vocab, (2, 64))
    with RecordProducts() as rec:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x, y)
        loss.backward()
    over_vocab = [p for p in rec.seen if any(vocab in shape for shape, _ in p)]
    # the head's three products (logits, grad_h, grad_W) at least, and all of them in bf16
    assert len(over_vocab) >= 3, rec.seen
    assert all(dtype == torch.bfloat16 for p in over_vocab for _, dtype in p), over_vocab
    assert model.lm_head.weight.grad.dtype == torch.float32  # the parameters' gradients stay fp32


@pytest.mark.parametrize("chunk", [7, None])
def test_bf16_head_matches_an_fp64_reference(chunk):
    torch.manual_seed(1)
    n, d, vocab = 50, 32, 300
    h = torch.randn(n, d, dtype=torch.float64) * 0.5
    w = torch.randn(vocab, d, dtype=torch.float64) * 0.3
    t = torch.randint(0, vocab, (n,))
    h64, w64 = h.clone().requires_grad_(), w.clone().requires_grad_()
    ref = F.cross_entropy(h64 @ w64.T, t)
    rh, rw = torch.autograd.grad(ref * 2, (h64, w64))
    h32, w32 = h.float().requires_grad_(), w.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head.cross_entropy(h32, w32, t, chunk=chunk)
    gh, gw = torch.autograd.grad(loss * 2, (h32, w32))
    assert gh.dtype == torch.float32 and gw.dtype == torch.float32
    # bf16 keeps 8 significant bits: ~0.4% per rounding of the inputs and of g
    assert abs(loss.item() - ref.item()) < 1e-2 * ref.item()
    assert (gh.double() - rh).norm() / rh.norm() < 2e-2
    assert (gw.double() - rw).norm() / rw.norm() < 2e-2
    assert loss.item() != pytest.approx(ref.item(), rel=1e-7)  # bf16 really ran


def test_balanced_chunks():
    assert head.balanced_chunk(100, 30) == 25  # 4 chunks of 25, not 30 + 30 + 30 + 10
    assert head.balanced_chunk(32768, 42690) == 32768
    assert head.balanced_chunk(65536, 42690) == 32768
    assert head.balanced_chunk(5, 100) == 5


FUSED_CHECK = """
import torch, torch.nn.functional as F, head
assert head.INTERPRET and head.triton is not None
torch.manual_seed(0)
n, d, vocab = 70, 32, 200  # 70 rows and 200 columns: ragged row and vocabulary blocks
h = torch.randn(n, d, dtype=torch.float64) * 0.5
w = torch.randn(vocab, d, dtype=torch.float64) * 0.3
t = torch.randint(0, vocab, (n,))
h64, w64 = h.clone().requires_grad_(), w.clone().requires_grad_()
ref = F.cross_entropy(h64 @ w64.T, t)
rh, rw = torch.autograd.grad(ref, (h64, w64))
h32, w32 = h.float().requires_grad_(), w.float().requires_grad_()
assert head.fused_ok(h32, w32)
rows, g = head.softmax_grad_fused(h32.detach(), w32.detach(), t)
ref_rows, ref_g = head.softmax_grad(h32.detach(), w32.detach(), t)
print("rows", float((rows - ref_rows).abs().max()), "g", float((g - ref_g).abs().max()))
loss = head.cross_entropy(h32, w32, t)
gh, gw = torch.autograd.grad(loss, (h32, w32))
print("loss", abs(loss.item() - ref.item()), "gh", float((gh.double() - rh).norm() / rh.norm()),
      "gw", float((gw.double() - rw).norm() / rw.norm()))
"""


def test_fused_kernel_matches_the_reference_in_tritons_interpreter():
    pytest.importorskip("triton")
    r = subprocess.run([sys.executable, "-c", FUSED_CHECK], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    errs = dict(zip(*[iter(r.stdout.split())] * 2))
    # fp32 throughout in the interpreter (it mishandles bf16): agreement to fp32 rounding
    assert float(errs["rows"]) < 1e-4 and float(errs["g"]) < 1e-5, r.stdout
    assert float(errs["loss"]) < 1e-5 and float(errs["gh"]) < 1e-5 and float(errs["gw"]) < 1e-5, r.stdout


def test_head_choice():
    cpu = torch.device("cpu")
    assert train.check_head("chunked", 256, cpu) == "chunked"
    with pytest.raises(DataError, match="--head fused: it needs a CUDA device"):
        train.check_head("fused", 256, cpu)
    assert not head.fused_width(768) and not head.fused_width(8) and head.fused_width(256) and head.fused_width(128)
