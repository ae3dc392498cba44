"""Search in rounds against one shot, at the same budget of proxies, on a loss surface made from
real runs. Goal (issue 26): on every surface the rounds' mean regret at most 0.9x the one shot's,
0.75x on average, the worst decile no worse.

    python bench/rounds.py [--seeds 20] [--budget 48] [--strategies thompson explore] [--surface S]

The oracle: a regressor (the project's ensemble) fitted on the paper's released runs (tests/data:
the 768 1M-proxy runs, or the 256 60M ones), for one target. A "proxy run" of a mixture observes
the oracle's loss plus Gaussian noise (sd 0.02, about the spread of the paper's repeated runs).
Each strategy spends the budget, fits the ensemble on what it observed and picks a mixture as
simulate does; its regret is the oracle's loss there minus the best oracle loss found by
--reference. Every strategy of a seed starts from the same first-round mixtures.

    one-shot   all runs drawn at once, as the paper (mixtures.sample_mixtures)
    thompson   the first half drawn so, then each round's mixtures proposed by proposals.propose:
               each the best candidate of its own bootstrap refit (Thompson sampling), as --next
               proposes (within 15x the prior; with --proxy-range also within the proxy range)
    naive      the same rounds, each mixture picked at random among the top 100 (round 2) or top
               50 (later rounds) candidates of the fit on every run so far
    ucb        the same rounds, the candidates with the lowest mean - std over 10 bootstrap refits
    explore    Thompson sampling for half of each later round, the other half drawn at random
Every strategy's final pick is simulate's: after one shot the top-k mean, unless the fit predicts
the natural mixture or the best measured run better; after rounds the mean of the top-k mean and
the best measured run (--blend-best-run). --surface picks the oracle (issue 26: other targets,
another regressor, the 60M runs); --reference the best mixture regret is measured from.
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
import constraints  # noqa: E402
import regressors  # noqa: E402
import proposals  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--seeds", type=int, default=20, help="independent repetitions (first rounds, noise, candidates)")
p.add_argument("--budget", type=int, default=48, help="proxy runs per strategy, every round together")
p.add_argument("--rounds", type=int, default=3, help="rounds of the round-based strategies (split as mixtures.round_sizes)")
p.add_argument("--noise", type=float, default=0.02, help="sd of a proxy's measured loss around the oracle's")
p.add_argument("--proxy-range", action=argparse.BooleanOptionalAction, default=False,
               help="also keep proposals within the largest weight each domain had in a run so far (default: only "
                    "within 15x the prior, as --next proposes; the final pick stays within that range either way)")
p.add_argument("--strategies", nargs="*", default=["thompson", "explore"], help="round-based strategies to compare")
p.add_argument("--surface", default="pile_cc",
               help="the oracle: [60m:]TARGET[:REGRESSOR], TARGET a loss of the paper's runs (pile_cc, github, ...), "
                    "several (a,b) or all; 60m: its 256 60M runs instead of the 768 1M ones; REGRESSOR the oracle's "
                    "(default ensemble)")
p.add_argument("--reference", choices=["strong", "dirichlet"], default="strong",
               help="the best mixture regret is measured from: strong = the best of Dirichlet(c x prior) draws at "
                    "c = 1, 4, 16, 64 within 15x the prior, refined by a local search from the best 20; dirichlet = "
                    "the best of 300,000 Dirichlet(prior) draws (the bench's first reference)")
p.add_argument("--blend-best-run", action=argparse.BooleanOptionalAction, default=None,
               help="every strategy's final pick the mean of the search's and the best measured run (default: as "
                    "simulate, the round-based strategies only)")
p.add_argument("--first-seed", type=int, default=0, help="the first seed (fresh seeds: --first-seed 20)")
p.add_argument("--pick", choices=["vouched", "paper", "region", "measured"], default="vouched",
               help="the final pick, as simulate's --pick: vouched (the trust region; the search's mixture and its "
                    "rivals judged by the fit corrected by its out-of-fold errors on their nearest runs, "
                    "search.local_errors; the default) or "
                    "paper (each weight within the runs' range, rivals by prediction: the pick before issue 33); and "
                    "two rejected variants: region (the trust region, rivals by prediction alone), measured (the "
                    "runs' range, the best run judged by its own measurement)")
args = p.parse_args()

DATA = os.path.join(ROOT, "tests", "data")
parts = args.surface.split(":")
scale = parts.pop(0) if parts[0] == "60m" else "1m"
target, oracle_name = parts[0], (parts[1] if len(parts) > 1 else "ensemble")
tables = ([regression.Results(os.path.join(DATA, f"paper_{s}_1m.csv")) for s in ("train", "test")] if scale == "1m"
          else [regression.Results(os.path.join(DATA, "paper_test_60m.csv"))])
train = tables[0]
_, tw = regression.target_weights(target, train.loss_domains, train.domains, "the paper's runs")
X0 = np.vstack([r.target(tw)[0] for r in tables])
y0 = np.concatenate([r.target(tw)[1] for r in tables])
with open(os.path.join(DATA, "paper_prior.json")) as f:
    prior = json.load(f)
prior = np.array([prior[d] for d in train.domains])
prior /= prior.sum()
t0 = time.perf_counter()
with regressors.one_blas_thread():
    oracle = regressors.fit(oracle_name, X0, y0, 20)
CAP = mixtures.availability(prior)


def reference(kind):
    """The best oracle loss to measure regret from."""
    rng = np.random.default_rng(0)
    if kind == "dirichlet":
        pool = mixtures.dirichlet(prior, rng, 300_000)
        return oracle.predict(pool[(pool <= CAP).all(1)]).min()
    pool = np.vstack([mixtures.dirichlet(c * prior, rng, 100_000) for c in (1, 4, 16, 64)])
    pool = pool[(pool <= CAP + 1e-12).all(1)]
    scores = oracle.predict(pool)
    starts = pool[np.argsort(scores)[:20]]
    current = oracle.predict(starts)
    for _ in range(60):  # local search: move a random share of one domain to another, 32 tries per start
        i, j = rng.integers(0, len(prior), (2, len(starts), 32))
        share = rng.uniform(0, 0.3, (len(starts), 32)) * np.take_along_axis(starts, i, 1)
        trial = np.repeat(starts[:, None], 32, 1)
        np.put_along_axis(trial, i[..., None], np.take_along_axis(trial, i[..., None], 2) - share[..., None], 2)
        np.put_along_axis(trial, j[..., None], np.take_along_axis(trial, j[..., None], 2) + share[..., None], 2)
        ok = (trial <= CAP + 1e-12).all(2)
        s = oracle.predict(trial.reshape(-1, len(prior))).reshape(trial.shape[:2])
        s[~ok] = np.inf
        k = s.argmin(1)
        better = s[np.arange(len(starts)), k] < current
        starts[better] = trial[np.arange(len(starts)), k][better]
        current = np.minimum(current, s[np.arange(len(starts)), k])
    return min(scores.min(), current.min())


best = reference(args.reference)
print(f"oracle: {oracle_name} on {len(y0)} {scale} runs, target {target}; reference ({args.reference}) {best:.4f} "
      f"({time.perf_counter() - t0:.0f} s)")


def fit(X, y):
    with regressors.one_blas_thread():
        return regressors.fit("ensemble", X, y, regressors.leaf_size(len(y)))


def candidates(X, rng, n=100_000, proxy_range=True):
    """Dirichlet(prior) mixtures within 15x the prior and, as simulate (and --next without
    --extrapolate) draws them, within the largest weight any run so far gave each domain."""
    c = mixtures.dirichlet(prior, rng, n)
    cap = np.minimum(mixtures.availability(prior), X.max(0) if proxy_range else 1.0)
    return c[(c <= cap + 1e-12).all(1)]


def thompson(X, y, m, rng, r):
    return proposals.propose("ensemble", X, y, regressors.leaf_size(len(y)), candidates(X, rng, proxy_range=args.proxy_range),
                              m, int(rng.integers(1 << 31)), X)


def naive(X, y, m, rng, r):
    c = candidates(X, rng, proxy_range=args.proxy_range)
    top = c[np.argsort(fit(X, y).predict(c))[:100 if r == 2 else 50]]
    return mixtures.on_grid(top[rng.choice(len(top), m, replace=False)])


def ucb(X, y, m, rng, r, refits=10):
    c = candidates(X, rng, 50_000, proxy_range=args.proxy_range)
    P = np.array([fit(X[i], y[i]).predict(c) for i in (rng.integers(0, len(y), len(y)) for _ in range(refits))])
    return mixtures.on_grid(c[np.argsort(P.mean(0) - P.std(0))[:m]])


def explore(X, y, m, rng, r):
    """Thompson sampling for half of the round, the other half drawn at random as round 1 was."""
    k = m // 2
    fresh = mixtures.sample_mixtures(prior, m - k, seed=int(rng.integers(1 << 31)))
    return np.vstack([thompson(X, y, k, rng, r), fresh]) if k else fresh


def regret(seed, sizes, strategy):
    rng = np.random.default_rng([seed, 1])
    X = mixtures.sample_mixtures(prior, sizes[0], seed=seed)
    y = oracle.predict(X) + rng.normal(0, args.noise, len(X))
    for r, m in enumerate(sizes[1:], start=2):
        new = strategy(X, y, m, rng, r)
        X, y = np.vstack([X, new]), np.concatenate([y, oracle.predict(new) + rng.normal(0, args.noise, m)])
    model = fit(X, y)
    cand = candidates(X, rng, proxy_range=args.pick in ("paper", "measured"))
    radius = constraints.trust_radius(X) if args.pick in ("vouched", "region") else None
    chosen = cand[search.best(model.predict(cand), 10, cand, X, radius)].mean(0)  # 1M candidates, top 100 in simulate
    blend = len(sizes) > 1 if args.blend_best_run is None else args.blend_best_run
    if blend and (X[np.argmin(y)] <= CAP + 1e-12).all():  # as simulate does after rounds: the mean of the search's pick and the best measured run
        chosen = (chosen + X[np.argmin(y)]) / 2
    else:  # as simulate does after one shot: the natural mixture and the best measured run compete with the search
        ok = [(c <= CAP + 1e-12).all() and (radius is None or constraints.nearest_run(c[None], X)[0] <= radius)
              for c in (prior, X[np.argmin(y)])]
        b = int(np.argmin(y))
        rivals, own = [c for c, fine in zip((prior, X[b]), ok) if fine], [-1] + [i for i, fine in zip((-1, b), ok) if fine]
        scores = model.predict(np.vstack([chosen] + rivals))
        if args.pick == "measured" and ok[1]:
            scores[-1] = y.min()  # the best run by what it measured
        if args.pick == "vouched":  # each corrected by its neighbours' out-of-fold errors, as simulate does
            cv = regression.predictions(list(regressors.ENSEMBLE), X, y, leaf=regressors.leaf_size(len(y)))["ensemble"]
            scores += search.local_errors(dict(cv_predictions=list(cv)), X, y, [chosen] + rivals, own)
        chosen = ([chosen] + rivals)[int(np.argmin(scores))]
    return float(oracle.predict(chosen[None])[0] - best)


plans = {"one-shot": ([args.budget], None)}
plans.update({s: (mixtures.round_sizes(args.budget, args.rounds), globals()[s]) for s in args.strategies})
table = {}
for name, (sizes, strategy) in plans.items():
    t0 = time.perf_counter()
    table[name] = np.array([regret(s, sizes, strategy) for s in range(args.first_seed, args.first_seed + args.seeds)])
    print(f"{name:<10} rounds {'+'.join(map(str, sizes)):<10} mean regret {table[name].mean():.4f} "
          f"(median {np.median(table[name]):.4f}), {time.perf_counter() - t0:.0f} s", flush=True)
print(f"\n{args.surface}, {args.seeds} seeds, {args.budget} proxies, noise sd {args.noise}: regret, and its mean as a "
      "ratio to one-shot's")
for name, r in table.items():
    wins = int((r < table["one-shot"]).sum())
    print(f"  {name:<10} mean {r.mean():.4f}  median {np.median(r):.4f}  worst decile {np.percentile(r, 90):.4f}  "
          f"{r.mean() / table['one-shot'].mean():.2f}x" + ("" if name == "one-shot" else f"  (better on {wins} of {args.seeds} seeds)"))
