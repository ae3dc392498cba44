"""prepare.py's tokens/s as a ratio to bare tiktoken encode_ordinary_batch on the same text and cores.

    python bench/prepare_speed.py [--mb 20] [--threads 2]

Both sides see the same documents (Python standard library source, repeated to --mb MB,
written as one .jsonl.zst shard). The prepare side includes zstd decompression, JSON parsing,
the validation split and writing the token files; the baseline only encodes. Goal: >= 0.8.
"""
import argparse
import glob
import json
import os
import sys
import sysconfig
import tempfile
import time

import zstandard

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prepare  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--mb", type=int, default=20, help="megabytes of text")
p.add_argument("--threads", type=int, default=os.cpu_count(), help="tokenizer threads for both sides")
p.add_argument("--vocab-size", type=int, default=50257, help="tokenizer vocabulary")
p.add_argument("--repeats", type=int, default=5, help="alternating measurements of each side; the best counts")
args = p.parse_args()

texts, size = [], 0
files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"), recursive=True))
while size < args.mb * 1e6:
    for f in files:
        t = open(f, encoding="utf-8", errors="replace").read()
        if not t.strip():
            continue
        texts.append(t)
        size += len(t.encode())
        if size >= args.mb * 1e6:
            break
enc = prepare.get_tokenizer(args.vocab_size)
tmp = tempfile.mkdtemp()
shard = os.path.join(tmp, "bench.jsonl.zst")
with open(shard, "wb") as f:
    f.write(zstandard.ZstdCompressor().compress(
        "".join(json.dumps({"text": t, "meta": {"pile_set_name": "Github"}}) + "\n" for t in texts).encode()))

best_bare, best_prep = float("inf"), float("inf")
for _ in range(args.repeats):
    t0 = time.perf_counter()
    n = sum(len(t) + 1 for t in enc.encode_ordinary_batch(texts, num_threads=args.threads))
    best_bare = min(best_bare, time.perf_counter() - t0)
    t0 = time.perf_counter()
    meta = prepare.prepare(prepare.pile_docs([shard], prepare.Skips()), os.path.join(tmp, "out"), enc,
                           threads=args.threads, progress=False)
    best_prep = min(best_prep, time.perf_counter() - t0)
    m = sum(s["train_tokens"] + s["val_tokens"] for s in meta["domains"].values())
    assert m == n, (m, n)
print(f"{size / 1e6:.1f} MB, {n:,} tokens, {args.threads} threads")
print(f"bare encode_ordinary_batch: {n / best_bare:,.0f} tokens/s")
print(f"prepare.py (zstd+json+split+write): {n / best_prep:,.0f} tokens/s")
print(f"ratio prepare / bare: {best_bare / best_prep:.2f}  (goal >= 0.8)")
