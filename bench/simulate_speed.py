"""simulate's time as a ratio to bare LightGBM Booster.predict of the same 1,000,000 x 17 candidates,
measured in one run. Goal (the paper's "< 10 CPU seconds" on our machines): <= 0.3.

    python bench/simulate_speed.py [--samples 1000000]

1. The search alone, in this process: sampling + forest scoring + top-k, with LightGBM fitted on
   the paper's 512 released 1M-proxy runs (tests/data). The first scoring call compiles the numba
   kernel (cached on disk afterwards); it is timed apart.
2. The whole `python regmix.py --stage simulate` process with its defaults (bootstrap 10), after
   a `--stage fit` on the same runs: imports, candidates, scoring, bootstrap refits, plots (the
   median of 3 runs).
3. The same process on the first 48 of those runs (goal: < 15 s).
4. The same process on the 512 runs with --target all (the mean of the 13 validation losses), where
   fit chooses one forest per metric (per_metric_lightgbm): the search screened, 5 bootstrap refits of its
   screen (one forest of the whole target).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import regression  # noqa: E402
import regressors  # noqa: E402
import mixtures  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--samples", type=int, default=1_000_000, help="candidate mixtures")
p.add_argument("--top-k", type=int, default=100, help="candidates averaged")
args = p.parse_args()

DATA = os.path.join(ROOT, "tests", "data")
res = regression.Results(os.path.join(DATA, "paper_train_1m.csv"))
X, y, _ = res.target({"pile_cc": 1.0})
booster = regressors.LightGBM(20).fit(X, y).booster
prior = json.load(open(os.path.join(DATA, "paper_prior.json")))
prior = np.array([prior[d] for d in res.domains])

t0 = time.perf_counter()
forest = regressors.Forest(booster)
forest.predict(X[:10])
t_setup = time.perf_counter() - t0

t0 = time.perf_counter()
cand = mixtures.dirichlet(prior / prior.sum(), np.random.default_rng(0), args.samples)
scores = forest.predict(cand)
weights = cand[np.argsort(scores, kind="stable")[:args.top_k]].mean(0)
t_sim = time.perf_counter() - t0

t0 = time.perf_counter()
ref = booster.predict(cand)
t_lgb = time.perf_counter() - t0


def stage(*argv):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "regmix.py"), *argv], check=True, stdout=subprocess.DEVNULL,
                   cwd=ROOT)
    return time.perf_counter() - t0


with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(DATA, "paper_train_1m.csv"), newline="") as f:
        rows = list(csv.reader(f))
    times = {}
    for n, target in ((512, "pile_cc"), (48, "pile_cc"), ("512 all", "all")):
        out = os.path.join(tmp, str(n).replace(" ", "_"))
        os.makedirs(out)
        with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
            csv.writer(f).writerows(rows[:int(str(n).split()[0]) + 1])
        stage("--stage", "fit", "--results", os.path.join(out, "runs.csv"), "--out", out, "--data", out,
              "--target", target)
        sim = ["--stage", "simulate", "--out", out, "--data", out, "--prior", os.path.join(DATA, "paper_prior.json"),
               "--samples", str(args.samples)]
        stage(*sim)  # warm: the numba cache and the file cache
        times[n] = float(np.median([stage(*sim) for _ in range(3)]))  # the machine is noisy: the median of 3
        times[n, "regressor"] = json.load(open(os.path.join(out, "mixture.json")))["regressor"]

print(f"{args.samples:,} candidates x {len(res.domains)} domains, {booster.num_trees()} trees")
print(f"forest setup + kernel load/compile: {t_setup:.2f}s (once per process)")
print(f"search (sample + score + top-k):    {t_sim:.2f}s")
print(f"LightGBM Booster.predict alone:     {t_lgb:.2f}s")
print(f"max |score - LightGBM| = {np.abs(scores - ref).max():.3g}")
print(f"ratio search / LightGBM predict:    {t_sim / t_lgb:.3f}  (goal <= 0.3)")
print(f"whole --stage simulate process, 512 runs ({times[512, 'regressor']}, bootstrap 10): {times[512]:.1f}s, "
      f"ratio {times[512] / t_lgb:.3f}  (goal <= 0.3)")
print(f"whole --stage simulate process, 48 runs ({times[48, 'regressor']}, bootstrap 10): {times[48]:.1f}s  "
      "(goal < 15 s on an idle 2-core machine)")
print(f"whole --stage simulate process, 512 runs, --target all ({times['512 all', 'regressor']}, default bootstrap): "
      f"{times['512 all']:.1f}s, ratio {times['512 all'] / t_lgb:.3f}  (goal <= 0.3)")
