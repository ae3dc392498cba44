"""simulate's time (sampling + scoring + top-k) as a ratio to bare LightGBM Booster.predict on the
same 1,000,000 x 17 matrix, measured in one run. Goal: <= 0.3.

    python bench/simulate_speed.py [--samples 1000000]

The model is the paper's: LightGBM fitted on the 512 released 1M-proxy runs (tests/data).
The first scoring call compiles the numba kernel (cached on disk afterwards); it is timed apart.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import regression  # noqa: E402
import regressors  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--samples", type=int, default=1_000_000, help="candidate mixtures")
p.add_argument("--top-k", type=int, default=100, help="candidates averaged")
args = p.parse_args()

res = regression.Results(os.path.join(ROOT, "tests", "data", "paper_train_1m.csv"))
X, y, _ = res.target({"pile_cc": 1.0})
booster = regressors.LightGBM(20).fit(X, y).booster
prior = json.load(open(os.path.join(ROOT, "tests", "data", "paper_prior.json")))
prior = np.array([prior[d] for d in res.domains])

t0 = time.perf_counter()
forest = regressors.Forest(booster)
forest.predict(X[:10])
t_setup = time.perf_counter() - t0

t0 = time.perf_counter()
cand = regression.dirichlet(prior / prior.sum(), np.random.default_rng(0), args.samples)
scores = forest.predict(cand)
weights = cand[np.argsort(scores, kind="stable")[:args.top_k]].mean(0)
t_sim = time.perf_counter() - t0

t0 = time.perf_counter()
ref = booster.predict(cand)
t_lgb = time.perf_counter() - t0

print(f"{args.samples:,} candidates x {len(res.domains)} domains, {booster.num_trees()} trees")
print(f"forest setup + kernel load/compile: {t_setup:.2f}s (once per process)")
print(f"simulate (sample + score + top-k): {t_sim:.2f}s")
print(f"LightGBM Booster.predict alone:    {t_lgb:.2f}s")
print(f"max |score - LightGBM| = {np.abs(scores - ref).max():.3g}")
print(f"ratio simulate / LightGBM predict: {t_sim / t_lgb:.3f}  (goal <= 0.3)")
