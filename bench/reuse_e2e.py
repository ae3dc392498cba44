"""Mixture reuse end to end on the embedded corpus (issue 35): a sixth domain arrives; reuse the old
mixture with a quarter of the proxies, or recompute with all of them; train the target on each.

    python bench/reuse_e2e.py [--seeds 42 43 44] [--steps 100] [--new man]

1. data/default6: the embedded corpus (data/default's five trainable domains and numpy_docs,
   eval-only) plus a sixth domain from another source on this machine (man pages), prepared alike
   (GPT-2's BPE cut to 4,096 ids: the old domains' token files are the same as data/default's).
2. Per seed, the old mixture: `--stage all` on data/default (64 tiny proxies), or the mixture
   bench/e2e.py already found for that seed (--old-from).
3. Reuse: `--stage all --reuse OLD --data data/default6` (the default size: 2 columns, 16 proxies).
4. Full recomputation: `--stage all --data data/default6` (64 proxies).
5. The target (`--stage train --model tiny --steps S`, the same seed) trained on the reused, the
   recomputed and the natural mixture; numpy_docs's loss printed per seed, mean and sd.
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import corpora  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44], help="seeds of sweeps and trainings")
p.add_argument("--steps", type=int, default=100, help="steps of each target training")
p.add_argument("--work", default=os.path.join(ROOT, "out_reuse"), help="where everything goes")
p.add_argument("--old-from", default=os.path.join(ROOT, "out_e2e", "default", "seed{seed}", "vouched", "n64_numpy_docs"),
               help="a folder per seed ({seed}) holding the old mixture.json; where absent, --stage all makes it")
args = p.parse_args()
DATA, DATA6 = os.path.join(ROOT, "data", "default"), os.path.join(ROOT, "data", "default6")


def run(*argv, quiet=True):
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=quiet, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(argv)}\n{(r.stdout or '')[-2000:]}{(r.stderr or '')[-2000:]}")
    return r.stdout


def build_default6(max_bytes=2_000_000):
    src = os.path.join(args.work, "src")
    for i, (domain, text, _) in enumerate(corpora.default_docs(max_bytes)):
        os.makedirs(os.path.join(src, domain), exist_ok=True)
        with open(os.path.join(src, domain, f"{i:06d}.txt"), "w", encoding="utf-8") as f:
            f.write(text)
    os.makedirs(os.path.join(src, "man"), exist_ok=True)
    total = 0
    for i, path in enumerate(sorted(glob.glob("/usr/share/man/man[1-8]/*.gz"), key=lambda s: zlib.crc32(s.encode()))):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            text = f.read()
        if text.strip() and total < max_bytes:
            total += len(text.encode())
            with open(os.path.join(src, "man", f"{i:06d}.txt"), "w", encoding="utf-8") as f:
                f.write(text)
    if not total:
        sys.exit("this machine has no man pages for the sixth domain")
    run("prepare.py", "--input", src, "--out", DATA6, "--eval-only", "numpy_docs", "--vocab-size", "4096")


def sweep(out, data, seed, *extra):
    if not os.path.exists(os.path.join(out, "mixture.json")):
        run("regmix.py", "--stage", "all", "--model", "tiny", "--data", data, "--out", out, "--seed", str(seed),
            "--target", "numpy_docs", *extra)
    mix = json.load(open(os.path.join(out, "mixture.json")))
    runs = len(os.listdir(os.path.join(out, "runs"))) if os.path.isdir(os.path.join(out, "runs")) else 0
    return mix["weights"], runs


def train(weights, seed, name):
    out = os.path.join(args.work, "train")
    ev = os.path.join(out, name, "eval.json")
    if not os.path.exists(ev):
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, f"{name}.json")
        json.dump(weights, open(path, "w"))
        run("regmix.py", "--stage", "train", "--model", "tiny", "--steps", str(args.steps), "--data", DATA6, "--out", out,
            "--name", name, "--mixture", path, "--seed", str(seed), "--log-every", "1000", "--ckpt-every", "0")
    return json.load(open(ev))["losses"]["numpy_docs"]


if not os.path.exists(os.path.join(DATA6, "meta.json")):
    build_default6()
meta6 = json.load(open(os.path.join(DATA6, "meta.json")))
table = {}
for seed in args.seeds:
    old_dir = args.old_from.format(seed=seed)
    if not os.path.exists(os.path.join(old_dir, "mixture.json")):
        old_dir = os.path.join(args.work, f"seed{seed}", "old")
        sweep(old_dir, DATA, seed)
    old = os.path.join(old_dir, "mixture.json")
    reused, n_reuse = sweep(os.path.join(args.work, f"seed{seed}", "reuse"), DATA6, seed, "--reuse", old)
    full, n_full = sweep(os.path.join(args.work, f"seed{seed}", "full"), DATA6, seed)
    print(f"seed {seed}: reuse ({n_reuse} proxies) " + ", ".join(f"{d} {w:.2f}" for d, w in reused.items() if w >= 0.01)
          + f"; full ({n_full} proxies) " + ", ".join(f"{d} {w:.2f}" for d, w in full.items() if w >= 0.01), flush=True)
    table[seed] = dict(reuse=train(reused, seed, f"reuse_{seed}"), full=train(full, seed, f"full_{seed}"),
                       natural=train(meta6["prior"], seed, f"natural_{seed}"))
print(f"\nnumpy_docs loss after {args.steps} steps, the target trained on each mixture of data/default6 (lower is better)")
print(f"{'mixture':<10}" + "".join(f"{s:>9}" for s in args.seeds) + f"{'mean':>9}{'sd':>8}")
for kind in ("reuse", "full", "natural"):
    v = np.array([table[s][kind] for s in args.seeds])
    print(f"{kind:<10}" + "".join(f"{x:>9.4f}" for x in v) + f"{v.mean():>9.4f}{v.std(ddof=1) if len(v) > 1 else 0:>8.4f}")
print("seed noise: natural's sd over the seeds, the line above")
