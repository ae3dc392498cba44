"""
simulate, the paper's step 5: search the fitted function for the mixture it predicts best.

    python regmix.py --stage simulate       # -> OUT/mixture.json, mixture.png

As the authors' notebook does it: score 1,000,000 random mixtures (Dirichlet around the prior)
with the regressor fit chose, and return the mean of the 100 predicted best. `simulate` tells
that story; what goes beyond the paper has a function of its own, each skippable on a first read:
the constraints (constraints.py), the rivals the answer must beat (final_pick), the bootstrap's
measure of how stable it is (confidence), the file and the printed table (record, report).

Every piece takes values (Search and Constraints are simulate's flags as dataclasses), so a
notebook can call it without argparse.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import regressors
from constraints import Constraints, concentration, search_space
from data import DataError, atomic_write_json, mixture_vector, read_mixture, usable_cores
from mixtures import dirichlet
from regression import (_plt, fitted_for, fitted_results, fitted_target, load_regressor, orient, read_fit,
                        round_color, run_rounds)


@dataclass
class Search:
    """simulate's own options (its flags): which regressor (auto: fit's choice), how many
    candidates, the top k averaged, the seed, bootstrap refits (None: bootstrap_refits' default),
    mixtures to compare (NAME=FILE), --optimize, and --blend-best-run (None: on when the runs came
    in rounds)."""
    regressor: str = "auto"
    samples: int = 1_000_000
    top_k: int = 100
    seed: int = 42
    bootstrap: int = None
    compare: list = field(default_factory=list)
    optimize: bool = False
    blend_best_run: bool = None

    @classmethod
    def from_args(cls, args):
        return cls(args.regressor, args.samples, args.top_k, args.seed, args.bootstrap, list(args.compare), args.optimize,
                   args.blend_best_run)


def stage_simulate(args, domains=None):
    # one BLAS thread: the bootstrap's refits run beside the search (one_blas_thread says why)
    with regressors.one_blas_thread(), ThreadPoolExecutor(usable_cores()) as pool:
        try:
            return simulate(args.out, domains.meta if domains is not None else None, Search.from_args(args),
                            Constraints.from_args(args), pool)
        finally:
            pool.shutdown(cancel_futures=True)  # after an error: the refits not yet started are dropped


def simulate(out, meta, search, constraints, pool):
    """Search OUT/fit.json's regressor for the best mixture within `constraints` (Constraints), as
    `search` (Search) says; write OUT/mixture.json and mixture.png. meta: the data's meta.json or
    None. `pool` runs the bootstrap's refits beside the search."""
    fit = read_fit(out)
    names = fit["domains"]
    name = fit["chosen"] if search.regressor == "auto" else search.regressor
    check_optimize(search, name)
    X, measured, y, Y, runs = fitted_target(fit, fitted_results(fit, out))
    prior, limits, cap = search_space(names, X, meta, constraints)
    # candidates as in the authors' notebook: Dirichlet with alpha = the prior (times a concentration
    # where the caps would reject most of them), drawn in a thread while the regressor loads (numpy's
    # gamma draws release the GIL; importing LightGBM takes seconds)
    c, share = concentration(prior, cap, np.random.default_rng([search.seed, 1]))
    drawing = pool.submit(dirichlet, c * prior, np.random.default_rng(search.seed), search.samples)
    model = load_regressor(out, name, fitted_for(fit))
    refits = start_refits(pool, fit, name, X, y, Y, search)  # the bootstrap, beside the search
    cand = drawing.result()
    ok = within(cand, cap, search.top_k)
    scores = model.predict(cand)
    kept = cand[ok]
    weights = kept[best(scores[ok], search.top_k)].mean(0)  # the paper's answer: the mean of the top k
    free = cand[best(scores, search.top_k)].mean(0)  # what the search would pick unconstrained
    pick = final_pick(weights, model, search, fit, names, prior, X, measured, y, runs, cap, out)
    binding = [dict(domain=d, constraint=src, cap=float(v[j]), unconstrained=float(free[j]))
               for src, v in limits.items() for j, d in enumerate(names)  # where the search wanted more and
               if free[j] > v[j] + 1e-9 and pick["weights"][j] >= 0.9 * v[j]]  # the answer sits at the cap
    # the plot waits in the pool's queue behind the refits, and is drawn beside their scoring
    plotting = pool.submit(plot_mixture, os.path.join(out, "mixture.png"), names, pick["weights"], prior,
                           f"{'max' if fit.get('ceiling') is not None else 'min'} {fit['target']}", X, pick["rounds"])
    conf = confidence(refits, kept, search.top_k, pick["simulated"], names)
    result = record(fit, name, search, pick, binding, conf, limits, c, len(kept), names)
    atomic_write_json(os.path.join(out, "mixture.json"), result)
    report(result, pick, search, limits, c, share, len(cand), out, names)
    plotting.result()
    return result


def check_optimize(search, name):
    if search.optimize and name in ("lightgbm", "component_lightgbm", "ensemble"):
        raise DataError(f"--optimize needs a smooth regressor (linear, mixing_law, quadratic, gp, per_metric_mixing_law), "
                        f"not {name}: trees are flat between thresholds; pass --regressor too")


def within(cand, cap, top_k):
    """Which candidates respect every cap; an error where fewer than top_k do."""
    ok = (cand <= cap + 1e-12).all(1)
    if ok.sum() < top_k:
        raise DataError(f"only {int(ok.sum())} of {len(cand):,} candidates within the constraints for --top-k "
                        f"{top_k}; raise --samples, or relax them (--no-bound, --extrapolate, --max-epochs)")
    return ok


def start_refits(pool, fit, name, X, y, Y, search):
    """The bootstrap's refits (futures): they need only the runs, so they start at once and fill the
    cores that the search's single-threaded parts and the plot leave idle."""
    n_boot = bootstrap_refits(search.bootstrap, name, Y.shape[1])
    return [pool.submit(regressors.fit, name, X[idx], y[idx], fit["min_data_in_leaf"], to_score=True, Y=Y[idx],
                        members=fit.get("ensemble_members")) for idx in resamples(len(y), n_boot, search.seed)]


# -----------------------------------------------------------------------------
# beyond the paper: the answer's rivals

def final_pick(weights, model, search, fit, names, prior, X, measured, y, runs, cap, out):
    """What simulate returns, and what it is compared with. The natural, uniform and best-run
    mixtures (and --compare files) are predicted beside the search's mixture; within the
    constraints they are candidates too, so the search never returns, silently, a mixture predicted
    worse than one it could have taken. After rounds (or --blend-best-run) the answer is instead the
    mean of the search's mixture and the best run (docs/rounds.md says why). --optimize first
    refines the search's mixture on the simplex."""
    ceiling = fit.get("ceiling")
    best_run = int(np.argmin(y))
    baselines = {"natural (prior)": prior, "uniform": np.full(len(names), 1 / len(names)), "best proxy run": X[best_run]}
    compare = dict(baselines)
    for item in search.compare:
        cname, _, path = item.partition("=")
        if not path:
            raise DataError(f"--compare {item}: expected NAME=FILE.json")
        compare[cname] = mixture_vector(read_mixture(path), names, source=f"--compare {item}")
    optimized, simulated = None, weights
    if search.optimize:
        weights = optimize_on_simplex(model, simulated, cap)
        optimized = dict(simulated_weights={d: float(w) for d, w in zip(names, simulated)},
                         simulated_predicted_loss=float(orient(model.predict(simulated[None]), ceiling)[0]))
    predicted = orient(model.predict(np.vstack([weights] + list(compare.values()))), ceiling)
    feasible = {k: bool((v <= cap + 1e-9).all()) for k, v in compare.items()}
    fitted = orient(predicted, ceiling)  # lower is better
    searched_loss = float(predicted[0])
    winner = min((k for k in baselines if feasible[k]), key=lambda k: fitted[1 + list(compare).index(k)], default=None)
    won_by = None
    rounds = run_rounds(out, runs)
    blend = (rounds.max() > 1) if search.blend_best_run is None else search.blend_best_run
    blended = bool(blend and feasible["best proxy run"])
    if blended:
        # after rounds, the runs gather where the optimum may be: the search's pick (which the fit
        # flatters, having chosen it) and the best run measured there (which noise flatters) each
        # err, and their mean erred less on the surfaces of bench/rounds.py (docs/rounds.md). The
        # mean of two mixtures within the caps is within them.
        weights = (weights + X[best_run]) / 2
        predicted[0] = orient(model.predict(weights[None]), ceiling)[0]
    elif winner is not None and fitted[1 + list(compare).index(winner)] < fitted[0]:
        won_by = winner
        weights = compare[winner]
        predicted[0] = predicted[1 + list(compare).index(winner)]
    return dict(weights=weights, predicted=predicted, compare=compare, feasible=feasible, won_by=won_by, blend=blend,
                blended=blended, searched_loss=searched_loss, optimized=optimized, simulated=simulated, rounds=rounds,
                best_run=best_run, best_run_name=runs[best_run], best_run_measured=float(measured[best_run]))


def confidence(refits, kept, top_k, simulated, names):
    """The bootstrap's verdict on the answer: each refit searches again (the first 100,000 candidates
    within the constraints, the same top fraction of them); the spread of their mixtures, and their
    mean total variation to the search's own (0: the same, 1: disjoint). None without refits."""
    if not refits:
        return None
    sub = kept[:100_000]
    k = max(1, round(top_k * len(sub) / len(kept)))
    ws = np.array([top_k_mean(r.result(), sub, k) for r in refits])  # each scored while later ones fit
    losses = np.array([r.result().predict(w[None])[0] for r, w in zip(refits, ws)])
    return dict(bootstrap=len(refits), candidates=int(len(sub)), top_k=int(k),
                weights_std={d: float(s) for d, s in zip(names, ws.std(0))},
                weights_mean={d: float(s) for d, s in zip(names, ws.mean(0))},
                predicted_loss_std=float(np.std(losses)),
                mean_abs_change=float(np.abs(ws - simulated).sum(1).mean() / 2))  # total variation to it


# -----------------------------------------------------------------------------
# beyond the paper: the file and the printed table

def record(fit, name, search, pick, binding, conf, limits, c, n_kept, names):
    """mixture.json (docs/stages.md lists its fields)."""
    predicted, compare, feasible = pick["predicted"], pick["compare"], pick["feasible"]
    result = dict(weights={d: float(w) for d, w in zip(names, pick["weights"])}, predicted_loss=float(predicted[0]),
                  maximize=fit.get("ceiling") is not None, n_samples=n_kept, concentration=c, top_k=search.top_k,
                  target=fit["target"], target_weights=fit["target_weights"], regressor=name,
                  constraints={src: {d: float(x) for d, x in zip(names, v)} for src, v in limits.items()},
                  binding=binding, confidence=conf, optimized=pick["optimized"],
                  baselines={k: dict(predicted_loss=float(p), weights={d: float(x) for d, x in zip(names, v)},
                                     within_constraints=feasible[k])
                             for (k, v), p in zip(compare.items(), predicted[1:])},
                  search_predicted_loss=pick["searched_loss"], baseline_chosen=pick["won_by"],
                  blended_with_best_run=pick["blended"],
                  warning=(fit.get("trust") or {}).get("warning"))
    result["baselines"]["best proxy run"].update(run=pick["best_run_name"], measured_loss=pick["best_run_measured"])
    return result


def report(result, pick, search, limits, c, share, n_cand, out, names):
    """simulate's printed lines and table."""
    predicted, compare, conf = pick["predicted"], pick["compare"], result["confidence"]
    print(f"\nsimulate with {result['regressor']}: {result['n_samples']:,} of {n_cand:,} Dirichlet({'' if c == 1 else f'{c} x '}prior) "
          f"candidates within the constraints ({', '.join(limits) or 'none'}), mean of the top {search.top_k} -> "
          f"{out}/mixture.json" + (f" (Dirichlet(prior) put only {share:.0%} within them)" if c > 1 else ""))
    for b in result["binding"]:
        print(f"  binds: {b['domain']} <= {b['cap']:.4f} ({b['constraint']}); unconstrained it would get {b['unconstrained']:.4f}")
    if pick["blended"]:
        print(f"  returned: the mean of the search's mixture (predicted {pick['searched_loss']:.4f}) and the best proxy run "
              f"({pick['best_run_name']}, measured {pick['best_run_measured']:.4f}), as after rounds (--no-blend-best-run: the search's)")
    elif pick["blend"]:
        print("  the best proxy run is outside the constraints: not blended with it")
    if pick["won_by"]:
        print(f"  the search's mixture is predicted at {pick['searched_loss']:.4f}, worse than the {pick['won_by']} mixture "
              f"({predicted[0]:.4f}) under the same regressor: that mixture is returned")
    outside = [k for k in compare if not pick["feasible"][k]]
    if outside:
        print(f"  outside the constraints (shown, never returned): {', '.join(outside)}")
    if result["warning"]:
        print(f"  warning: {result['warning']}")
    if pick["optimized"]:
        print(f"  optimised on the simplex within the caps (SLSQP from the simulated mixture): predicted "
              f"{predicted[0]:.4f}, simulated top-{search.top_k} mean {pick['optimized']['simulated_predicted_loss']:.4f}")
    cols = ["regmix"] + (["+/- (bootstrap)"] if conf else []) + list(compare)
    wide = max(20, 2 + max(len(d) for d in names))  # long names (Olmix's topics) keep the columns aligned
    print(f"{'domain':<{wide}}" + "".join(f"{c[:16]:>18}" for c in cols))
    table = np.vstack([pick["weights"]] + ([np.array(list(conf["weights_std"].values()))] if conf else [])
                      + list(compare.values()))
    for j, d in enumerate(names):
        print(f"{d:<{wide}}" + "".join(f"{table[i, j]:>18.4f}" for i in range(len(cols))))
    spread = [f"{conf['predicted_loss_std']:.4f}"] if conf else []
    print(f"{'predicted ' + result['target']:<{wide}}"[:wide] + "".join(f"{p:>18}" for p in [f"{predicted[0]:.4f}"] + spread
                                                                + [f"{p:.4f}" for p in predicted[1:]]))


# -----------------------------------------------------------------------------
# the search's pieces

def best(scores, k):
    """The indices of the k lowest scores, lowest first, ties to the earlier index: a stable
    argsort's first k, without sorting a million scores (0.15 s) to keep a hundred."""
    if k < len(scores):
        kth = np.partition(scores, k - 1)[k - 1]
        idx = np.flatnonzero(scores <= kth)  # every tie of the k-th too
        if len(idx) >= k:  # (fewer only where NaNs are among the k lowest)
            return idx[np.argsort(scores[idx], kind="stable")[:k]]
    return np.argsort(scores, kind="stable")[:k]


def top_k_mean(model, cand, k):
    return cand[best(model.predict(cand), k)].mean(0)


def optimize_on_simplex(model, start, cap):
    """A smooth regressor's minimum over {0 <= w <= cap, sum w = 1}, by SLSQP from `start` (the
    simulated mixture): the exact optimum of the fitted function rather than the mean of the
    best random candidates."""
    from scipy.optimize import minimize
    with regressors.one_blas_thread():
        r = minimize(lambda w: float(model.predict(w[None])[0]), start, method="SLSQP",
                     bounds=[(0.0, float(c)) for c in cap], constraints=[dict(type="eq", fun=lambda w: w.sum() - 1)],
                     options=dict(maxiter=500, ftol=1e-12))
    w = np.clip(r.x, 0, cap)
    return w / w.sum()


def bootstrap_refits(requested, name, n_metrics):
    """--bootstrap N, or by default 10 refits; fewer (at least 3) for per_metric_lightgbm, whose every
    refit fits a forest per metric and one more (14 forests on the paper's 13 losses: the refits were
    most of simulate's time there; bench/simulate_speed.py times the whole stage)."""
    if requested is not None:
        return requested
    return max(3, 40 // (n_metrics + 1)) if name == "per_metric_lightgbm" else 10


def resamples(n, refits, seed):
    """The bootstrap's `refits` resamplings of n runs (with replacement). Each refit's choice (the
    mean of the top of the candidates) shows how stable the simulated mixture is: with few runs
    they spread widely, the mixture is then a guess (docs/simulate.md: "Confidence")."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(refits)]


# -----------------------------------------------------------------------------
# plots

def plot_mixture(path, names, weights, prior, target, X=None, rounds=None):
    """The chosen mixture beside the prior; after a search in rounds, each run's weights as dots
    coloured by round, to show where the later rounds went."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names)), 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, prior, 0.4, label="natural (prior)")
    ax.bar(x + 0.2, weights, 0.4, label=f"RegMix ({target})")
    if rounds is not None and len(set(rounds)) > 1:
        for r in sorted(set(rounds)):
            ax.scatter(x[None, :] + 0.2 + 0.05 * (r - 1) + np.zeros((int((rounds == r).sum()), 1)), X[rounds == r],
                       s=6, alpha=0.5, color=round_color(r), label=f"round {r} runs")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


