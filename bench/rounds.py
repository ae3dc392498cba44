"""Search in rounds against one shot, at the same budget of proxies, on a loss surface made from
real runs. Goal (issue 16): the rounds' mean regret at most 0.75x the one shot's.

    python bench/rounds.py [--seeds 20] [--budget 48] [--strategies thompson naive]

The oracle: the project's ensemble fitted on the paper's 768 released 1M-proxy runs (tests/data,
target pile_cc). A "proxy run" of a mixture observes the oracle's loss plus Gaussian noise (sd
0.02, about the spread of the paper's repeated runs). Each strategy spends the budget, fits the
ensemble on what it observed and picks a mixture as simulate does (the mean of the top candidates
within the caps); its regret is the oracle's loss there minus the best oracle loss among 300,000
Dirichlet(prior) mixtures. Every strategy of a seed starts from the same first-round mixtures.

    one-shot   all runs drawn at once, as the paper (mixtures.sample_mixtures)
    thompson   the first half drawn so, then each round's mixtures proposed by search.propose:
               each the best candidate of its own bootstrap refit (Thompson sampling), as --next
               proposes (within 15x the prior; with --proxy-range also within the proxy range)
    naive      the same rounds, each mixture picked at random among the top 100 (round 2) or top
               50 (later rounds) candidates of the fit on every run so far
    ucb        the same rounds, the candidates with the lowest mean - std over 10 bootstrap refits
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import mixtures  # noqa: E402
import regression  # noqa: E402
import search  # noqa: E402
import regressors  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--seeds", type=int, default=20, help="independent repetitions (first rounds, noise, candidates)")
p.add_argument("--budget", type=int, default=48, help="proxy runs per strategy, every round together")
p.add_argument("--rounds", type=int, default=3, help="rounds of the round-based strategies (split as mixtures.round_sizes)")
p.add_argument("--noise", type=float, default=0.02, help="sd of a proxy's measured loss around the oracle's")
p.add_argument("--proxy-range", action=argparse.BooleanOptionalAction, default=False,
               help="also keep proposals within the largest weight each domain had in a run so far (default: only "
                    "within 15x the prior, as --next proposes; the final pick stays within that range either way)")
p.add_argument("--strategies", nargs="+", default=["thompson", "naive"], help="round-based strategies to compare")
args = p.parse_args()

DATA = os.path.join(ROOT, "tests", "data")
train, test = (regression.Results(os.path.join(DATA, f"paper_{s}_1m.csv")) for s in ("train", "test"))
X0 = np.vstack([r.target({"pile_cc": 1.0})[0] for r in (train, test)])
y0 = np.concatenate([r.target({"pile_cc": 1.0})[1] for r in (train, test)])
with open(os.path.join(DATA, "paper_prior.json")) as f:
    prior = json.load(f)
prior = np.array([prior[d] for d in train.domains])
prior /= prior.sum()
t0 = time.perf_counter()
with regressors.one_blas_thread():
    oracle = regressors.fit("ensemble", X0, y0, 20)
pool = search.dirichlet(prior, np.random.default_rng(0), 300_000)
pool = pool[(pool <= search.availability(prior)).all(1)]
best = oracle.predict(pool).min()
print(f"oracle: ensemble on {len(y0)} runs, best of {len(pool):,} mixtures {best:.4f} ({time.perf_counter() - t0:.0f} s)")


def fit(X, y):
    with regressors.one_blas_thread():
        return regressors.fit("ensemble", X, y, regressors.leaf_size(len(y)))


def candidates(X, rng, n=100_000, proxy_range=True):
    """Dirichlet(prior) mixtures within 15x the prior and, as simulate (and --next without
    --extrapolate) draws them, within the largest weight any run so far gave each domain."""
    c = search.dirichlet(prior, rng, n)
    cap = np.minimum(search.availability(prior), X.max(0) if proxy_range else 1.0)
    return c[(c <= cap + 1e-12).all(1)]


def thompson(X, y, m, rng, r):
    return search.propose("ensemble", X, y, regressors.leaf_size(len(y)), candidates(X, rng, proxy_range=args.proxy_range),
                              m, int(rng.integers(1 << 31)), X)


def naive(X, y, m, rng, r):
    c = candidates(X, rng, proxy_range=args.proxy_range)
    top = c[np.argsort(fit(X, y).predict(c))[:100 if r == 2 else 50]]
    return search.on_grid(top[rng.choice(len(top), m, replace=False)])


def ucb(X, y, m, rng, r, refits=10):
    c = candidates(X, rng, 50_000, proxy_range=args.proxy_range)
    P = np.array([fit(X[i], y[i]).predict(c) for i in (rng.integers(0, len(y), len(y)) for _ in range(refits))])
    return search.on_grid(c[np.argsort(P.mean(0) - P.std(0))[:m]])


def regret(seed, sizes, strategy):
    rng = np.random.default_rng([seed, 1])
    X = mixtures.sample_mixtures(prior, sizes[0], seed=seed)
    y = oracle.predict(X) + rng.normal(0, args.noise, len(X))
    for r, m in enumerate(sizes[1:], start=2):
        new = strategy(X, y, m, rng, r)
        X, y = np.vstack([X, new]), np.concatenate([y, oracle.predict(new) + rng.normal(0, args.noise, m)])
    chosen = search.top_k_mean(fit(X, y), candidates(X, rng), 10)  # 1M candidates, top 100 in simulate
    return float(oracle.predict(chosen[None])[0] - best)


plans = {"one-shot": ([args.budget], None)}
plans.update({s: (mixtures.round_sizes(args.budget, args.rounds), globals()[s]) for s in args.strategies})
table = {}
for name, (sizes, strategy) in plans.items():
    t0 = time.perf_counter()
    table[name] = np.array([regret(s, sizes, strategy) for s in range(args.seeds)])
    print(f"{name:<10} rounds {'+'.join(map(str, sizes)):<10} mean regret {table[name].mean():.4f} "
          f"(median {np.median(table[name]):.4f}), {time.perf_counter() - t0:.0f} s", flush=True)
print(f"\n{args.seeds} seeds, {args.budget} proxies, noise sd {args.noise}: mean regret as a ratio to one-shot's")
for name, r in table.items():
    if name != "one-shot":
        wins = int((r < table["one-shot"]).sum())
        print(f"  {name:<10} {r.mean() / table['one-shot'].mean():.2f}x  (better on {wins} of {args.seeds} seeds)")
