"""prepare.py's tokens/s as a ratio to the bare tokenizer on the same text and cores, per reader.

    python bench/prepare_speed.py [--mb 20] [--threads 2] [--tokenizer gpt2|FILE] [--formats ...]

Both sides see the same documents (Python standard library source, repeated to --mb MB), written
once per format as one shard. The prepare side includes decompression / decoding, JSON parsing,
the validation split and writing the token files; the baseline only encodes (tiktoken's
encode_ordinary_batch, or the tokenizers library's encode_batch). The reader's own cost is timed
too: reading every document without tokenizing. Goal: ratio >= 0.8 for every format.
"""
import argparse
import glob
import json
import os
import sys
import sysconfig
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import corpora  # noqa: E402
import prepare  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--mb", type=int, default=20, help="megabytes of text")
p.add_argument("--threads", type=int, default=os.cpu_count(), help="tokenizer threads for both sides")
p.add_argument("--tokenizer", default="gpt2", help="gpt2 or a tokenizer.json")
p.add_argument("--formats", nargs="+", default=["jsonl.zst", "jsonl.gz", "parquet", "arrow"], help="shard formats to measure")
p.add_argument("--repeats", type=int, default=3, help="alternating measurements of each side; the best counts")
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
enc = prepare.get_tokenizer(args.tokenizer, threads=args.threads)
tmp = tempfile.mkdtemp()


def write_shard(fmt):
    import gzip
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard
    path = os.path.join(tmp, f"bench.{fmt}")
    records = [{"text": t, "meta": {"pile_set_name": "Github"}} for t in texts]
    if fmt in ("parquet", "arrow"):
        table = pa.Table.from_pylist(records)
        if fmt == "parquet":
            pq.write_table(table, path)
        else:
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table, max_chunksize=1000)
    else:
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        data = zstandard.ZstdCompressor().compress(data) if fmt.endswith("zst") else gzip.compress(data)
        open(path, "wb").write(data)
    return path


print(f"{size / 1e6:.1f} MB of text, tokenizer {enc.name}, {args.threads} threads")
print(f"{'format':<12}{'bare tok/s':>14}{'prepare tok/s':>15}{'ratio':>8}{'reader alone MB/s':>20}")
for fmt in args.formats:
    shard = write_shard(fmt)
    best_bare = best_prep = best_read = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        n = sum(len(t) + 1 for t in enc.encode_batch(texts))
        best_bare = min(best_bare, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in corpora.pile_docs([shard], corpora.Skips()):
            pass
        best_read = min(best_read, time.perf_counter() - t0)
        t0 = time.perf_counter()
        meta = prepare.prepare(corpora.pile_docs([shard], corpora.Skips()), os.path.join(tmp, "out"), enc, progress=False)
        best_prep = min(best_prep, time.perf_counter() - t0)
        m = sum(s["train_tokens"] + s["val_tokens"] for s in meta["domains"].values())
        assert m == n, (m, n)
    print(f"{fmt:<12}{n / best_bare:>14,.0f}{n / best_prep:>15,.0f}{best_bare / best_prep:>8.2f}{size / 1e6 / best_read:>20.0f}")
print("goal: ratio prepare / bare >= 0.8 for every format")
