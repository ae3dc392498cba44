"""Batch assembly time as a fraction of one training step of the CPU preset (goal <= 5%).

    python bench/batch_speed.py [--steps 20]

Builds a small data folder of 5 random domains, then times Batches.next() and one full
training step (forward, backward, AdamW) of the `tiny` model at its proxy recipe, alternately.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data import Batches, TokenWriter, atomic_write_json, open_domains  # noqa: E402
from model import GPT, config_for  # noqa: E402
from presets import recipe  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--steps", type=int, default=20, help="measured steps")
args = p.parse_args()

r = recipe("tiny")["proxy"]
vocab, names = 4096, [f"d{i}" for i in range(5)]
tmp = tempfile.mkdtemp()
rng = np.random.default_rng(0)
for d in names:
    for split, n in (("train", 2_000_000), ("val", 50_000)):
        w = TokenWriter(os.path.join(tmp, d, f"{split}.bin"), vocab)
        w.write(rng.integers(0, vocab, n))
        w.commit()
atomic_write_json(os.path.join(tmp, "meta.json"), dict(
    tokenizer=dict(vocab_size=vocab), prior={d: 0.2 for d in names},
    domains={d: dict(eval_only=False) for d in names}))
domains = open_domains(tmp)
batches = Batches(domains, {d: 0.2 for d in names}, r["micro_batch_size"], r["block_size"], seed=0)
model = GPT(config_for("tiny", vocab, r["block_size"]))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = batches.next()
t_batch, t_step = [], []
for i in range(args.steps + 3):
    t0 = time.perf_counter()
    loss = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad()
    t1 = time.perf_counter()
    x, y = batches.next()
    t2 = time.perf_counter()
    if i >= 3:
        t_step.append(t1 - t0)
        t_batch.append(t2 - t1)
print(f"tiny preset, {r['micro_batch_size']} x {r['block_size']} tokens, {torch.get_num_threads()} threads")
print(f"batch assembly: {np.median(t_batch) * 1e3:.2f} ms, training step: {np.median(t_step) * 1e3:.1f} ms (medians)")
print(f"fraction: {np.median(t_batch) / np.median(t_step):.2%}  (goal <= 5%)")
