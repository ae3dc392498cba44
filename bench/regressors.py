"""Which regressor to trust at which sweep size, on the paper's released data.

    python bench/regressors.py [--sizes 40 80 160 512] [--subsets 5]

For each size n, --subsets random subsets of the 512 training runs (all 512 once): every regressor
is fitted on the subset and ranks the 256 held-out 1M runs and the 64 1B models (Spearman rho,
mean over subsets); `auto` is what fit's rule picks by 5-fold cross-validation on the subset alone.
Quality, not speed: no timing here.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import regression  # noqa: E402
import regressors  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--sizes", type=int, nargs="+", default=[40, 80, 160, 512], help="training runs per fit")
p.add_argument("--subsets", type=int, default=5, help="random subsets per size (512: one)")
args = p.parse_args()

data = os.path.join(ROOT, "tests", "data")
target = {"pile_cc": 1.0}
X, y, _ = regression.Results(os.path.join(data, "paper_train_1m.csv")).target(target)
X1, y1, _ = regression.Results(os.path.join(data, "paper_test_1m.csv")).target(target)
Xb, yb, _ = regression.Results(os.path.join(data, "paper_test_1b.csv")).target(target)
names = list(regressors.NAMES) + ["auto"]
print(f"{'n':>5}" + "".join(f"{n:>17}" for n in names) + "   (rho 1M test / rho 1B; auto's picks)")
for n in args.sizes:
    rho = {k: [] for k in names}
    picks = []
    for s in range(1 if n >= len(y) else args.subsets):
        idx = np.random.default_rng(s).permutation(len(y))[:n]
        cv = regression.predictions(regressors.SINGLE, X[idx], y[idx])
        chosen = regression.choose({k: regression.metrics(y[idx], v)["spearman"] for k, v in cv.items()})
        picks.append(chosen)
        both = np.vstack([X1, Xb])
        pred = regression.predictions(regressors.SINGLE, X[idx], y[idx], both)
        for k in names:
            v = pred[chosen if k == "auto" else k]
            rho[k].append((regression.metrics(y1, v[:len(y1)])["spearman"], regression.metrics(yb, v[len(y1):])["spearman"]))
    row = "".join(f"{np.mean([a for a, _ in rho[k]]):>10.3f} /{np.mean([b for _, b in rho[k]]):.2f}" for k in names)
    print(f"{n:>5}{row}   {', '.join(sorted(set(picks)))}", flush=True)
