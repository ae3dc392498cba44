"""
The Llama-style model of RegMix's proxies and target (the TinyLlama code base): pre-norm RMSNorm,
rotary position embeddings, SwiGLU MLP, no biases, full multi-head attention, untied input and
output embeddings. One class serves every size; the size is a preset name (presets.py).

    python model.py      # parameter counts and FLOPs per token of every preset
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import head
from presets import PRESETS, shape


@dataclass
class ModelConfig:
    n_layer: int
    n_head: int
    n_embd: int
    mlp_hidden: int
    block_size: int
    vocab_size: int = 50304  # padded up to a multiple of 64 (see padded_vocab)
    norm_eps: float = 1e-5
    rope_base: float = 10000.0


def padded_vocab(n):
    return (n + 63) // 64 * 64


def config_for(preset, vocab_size, block_size=None):
    """The preset's config for data with `vocab_size` tokens (padded up to a multiple of 64)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset '{preset}'; choose one of {', '.join(PRESETS)}")
    cfg = ModelConfig(**shape(preset), vocab_size=padded_vocab(vocab_size))
    if block_size:
        cfg.block_size = block_size
    return cfg


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def rope_cache(block_size, head_dim, base):
    theta = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), theta)
    return torch.cos(angles).repeat(1, 2), torch.sin(angles).repeat(1, 2)  # (T, head_dim)


def apply_rope(x, cos, sin):
    """Rotate pairs (i, i + d/2) of every head's features by a position-dependent angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat((-x2, x1), dim=-1) * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # flash kernel on CUDA
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_up = nn.Linear(cfg.n_embd, 2 * cfg.mlp_hidden, bias=False)  # one matmul for both
        self.down = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm_1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm_2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm_1(x), cos, sin)
        return x + self.mlp(self.norm_2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        cos, sin = rope_cache(cfg.block_size, cfg.n_embd // cfg.n_head, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.head = "chunked"  # the loss head (head.py); train.build_model picks the fused kernel where it applies
        self.reset_parameters()

    def reset_parameters(self):
        """The official initialisation (TinyLlama's GPT-NeoX scheme): N(0, sqrt(2 / (5 fan_in))) for
        every Linear and Embedding; the MLP's output projection N(0, 1 / sqrt(fan_in) / n_layer).
        Explicit on purpose: PyTorch's N(0, 1) embedding init made CPU steps ~15x slower (denormals)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / 5 / m.weight.size(1)))
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)
        for b in self.blocks:
            nn.init.normal_(b.mlp.down.weight, std=1 / math.sqrt(b.mlp.down.weight.size(1)) / self.cfg.n_layer)

    def hidden(self, idx):
        T = idx.size(1)
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens, the model's block size is {self.cfg.block_size}")
        x = self.wte(idx)
        cos, sin = self.cos[:T], self.sin[:T]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm_f(x)

    def forward(self, idx, targets=None):
        """Logits (B, T, vocab) without targets; with targets, the mean cross-entropy only, computed
        so that full fp32 logits never exist for the whole batch (head.py)."""
        h = self.hidden(idx)
        if targets is None:
            return self.lm_head(h)
        return head.cross_entropy(h.flatten(0, 1), self.lm_head.weight, targets.flatten(), fused=self.head == "fused")

    # -- sizes -------------------------------------------------------------------------
    def num_params(self, non_embedding=True):
        """Non-embedding counts exclude the input embedding and the output head (the paper's convention)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + self.lm_head.weight.numel()
        return n

    def flops_per_token(self):
        """Training FLOPs per token: 6 per matmul weight (forward + backward), the output head
        included, plus attention scores over a full block (nanoGPT / PaLM's formula)."""
        c = self.cfg
        return 6 * (self.num_params() + self.lm_head.weight.numel()) + 12 * c.n_layer * c.n_embd * c.block_size

    def estimate_mfu(self, tokens_per_sec, device, peak=None):
        """Model FLOPs utilisation of one device processing tokens_per_sec, against `peak` FLOP/s
        or else the device's dense bf16 peak; None where unknown (CPU)."""
        peak = peak or device_peak_flops(device)
        return None if peak is None else self.flops_per_token() * tokens_per_sec / peak

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint(self):
        return {"config": asdict(self.cfg), "model": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, ckpt):
        model = cls(ModelConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        return model


# dense bf16 tensor-core peaks (FLOP/s), from the vendors' data sheets (SXM parts)
PEAK_FLOPS = {"A100": 312e12, "H100": 989e12, "H200": 989e12}


def device_peak_flops(device):
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


if __name__ == "__main__":
    print(f"{'preset':<7}{'layers':>7}{'d_model':>8}{'non-emb params':>16}{'total (vocab 50304)':>21}{'FLOPs/token':>13}")
    for name in PRESETS:
        with torch.device("meta"):  # no memory: count only
            m = GPT(config_for(name, 50257))
        print(f"{name:<7}{m.cfg.n_layer:>7}{m.cfg.n_embd:>8}{m.num_params():>16,}{m.num_params(False):>21,}"
              f"{m.flops_per_token():>13.3g}")
