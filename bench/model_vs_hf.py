"""Training-step tokens/s of our model as a ratio to Hugging Face's LlamaForCausalLM configured
identically (same sizes, batch, threads), measured alternately in one run. Goal: >= 1.2x.

    pip install -r requirements-dev.txt   # transformers: bench and tests only, never the main job
    python bench/model_vs_hf.py [--presets tiny 1m] [--batch 4] [--block 256] [--steps 6]

Both models: pre-norm RMSNorm (eps 1e-5), RoPE (base 10000), SwiGLU, no biases, untied
embeddings, full multi-head attention, SDPA attention, fp32, AdamW. Each step is forward +
backward + optimizer step on the same random batch.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from model import GPT, config_for  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--presets", nargs="+", default=["tiny", "1m"], help="model presets to compare")
p.add_argument("--vocab", type=int, default=None,
               help="vocabulary (default: what each preset trains on: tiny 4096, the embedded corpus; others 50257, GPT-2)")
p.add_argument("--batch", type=int, default=4, help="sequences per step")
p.add_argument("--block", type=int, default=256, help="tokens per sequence")
p.add_argument("--steps", type=int, default=6, help="measured steps per round")
p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median counts")
args = p.parse_args()

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402


def hf_model(cfg):
    c = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.mlp_hidden,
                    num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
                    max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_base,
                    tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    c._attn_implementation = "sdpa"
    return LlamaForCausalLM(c)


def step_time(model, x, hf):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(args.steps + 2):
        t0 = time.perf_counter()
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss if hf else model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return np.median(times)


torch.manual_seed(0)
for preset in args.presets:
    vocab = args.vocab or (4096 if preset == "tiny" else 50257)
    cfg = config_for(preset, vocab, args.block)
    ours, theirs = GPT(cfg), hf_model(cfg)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.randint(0, vocab, (args.batch, args.block + 1))
    t_ours, t_hf = [], []
    for _ in range(args.rounds):
        t_ours.append(step_time(ours, x, False))
        t_hf.append(step_time(theirs, x, True))
    tok = args.batch * args.block
    a, b = tok / np.median(t_ours), tok / np.median(t_hf)
    print(f"{preset}: ours {a:,.0f} tok/s, transformers LlamaForCausalLM {b:,.0f} tok/s, ratio {a / b:.2f}x "
          f"({torch.get_num_threads()} threads, {args.batch} x {args.block}, vocab {cfg.vocab_size})")
