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

import baselines
import regressors
import reuse
from constraints import Constraints, concentration, domain_tokens, nearest_run, search_space, trust_radius
from data import DataError, atomic_write_json, mixture_vector, read_mixture, usable_cores
from mixtures import dirichlet
from regression import (_plt, fitted_for, fitted_results, fitted_target, load_regressor, orient, read_fit,
                        round_color, run_rounds)


@dataclass
class Search:
    """simulate's own options (its flags): which regressor (auto: fit's choice), how many
    candidates, the top k averaged, the seed, bootstrap refits (None: 10; 5 for per_metric_lightgbm),
    mixtures to compare (NAME=FILE), --optimize, --blend-best-run (None: on when the runs came
    in rounds), --kl (how far toward the prior) and the target run's tokens (UniMax's budget)."""
    regressor: str = "auto"
    samples: int = 1_000_000
    top_k: int = 100
    seed: int = 42
    bootstrap: int = None
    compare: list = field(default_factory=list)
    optimize: bool = False
    blend_best_run: bool = None
    kl: float = 0.0
    pick: str = "vouched"  # vouched: the answer must be vouched for by the runs; paper: the paper's pick
    target_tokens: int = None  # UniMax's budget: the target run's tokens (None: no UniMax baseline)
    max_epochs: float = 4.0  # UniMax's cap on each domain's epochs

    @classmethod
    def from_args(cls, args):
        return cls(args.regressor, args.samples, args.top_k, args.seed, args.bootstrap, list(args.compare), args.optimize,
                   args.blend_best_run, args.kl, args.pick, args.target_tokens or target_run_tokens(args.model),
                   args.max_epochs)


def stage_simulate(args, domains=None):
    if args.reuse and reuse.removal_only(args, domains):  # nothing new to search: the old mixture, renormalised
        return None
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
    grouping = reuse.of_fit(fit, constraints)  # (mixture reuse: a virtual domain among the columns, or None)
    prior, limits, cap = search_space(names, X, meta, constraints, grouping=grouping)
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
    kept, radius = cand[ok], constraints.radius(X)  # radius: the trust region's (constraints.py)
    top = best(scores[ok], search.top_k, kept, X, radius)  # (and within the trust region)
    weights = kept[top].mean(0)  # the paper's answer: the mean of the top k
    free = cand[best(scores, search.top_k)].mean(0)  # what the search would pick unconstrained
    pick = final_pick(weights, model, search, fit, names, prior, X, measured, y, runs, cap, out, radius,
                      domain_tokens(names, meta, constraints.tokens, groups=grouping and grouping.groups))
    binding = [dict(domain=d, constraint=src, cap=float(v[j]), unconstrained=float(free[j]))
               for src, v in limits.items() for j, d in enumerate(names)  # where the search wanted more and
               if free[j] > v[j] + 1e-9 and pick["weights"][j] >= 0.9 * v[j]]  # the answer sits at the cap
    # the plot waits in the pool's queue behind the refits, and is drawn beside their scoring
    plotting = pool.submit(plot_mixture, os.path.join(out, "mixture.png"), names, pick["weights"], prior,
                           f"{'max' if fit.get('ceiling') is not None else 'min'} {fit['target']}", X, pick["rounds"])
    conf = confidence(refits, kept, search.top_k, pick["simulated"], names, X, radius)
    result = record(fit, name, search, pick, binding, conf, limits, c, len(kept), names, len(top), grouping)
    atomic_write_json(os.path.join(out, "mixture.json"), result)
    report(result, pick, search, limits, c, share, len(cand), out, names)
    plotting.result()
    return result


def target_run_tokens(model):
    """The tokens of a target run by --model's recipe (presets.py): UniMax's default budget."""
    from presets import recipe
    r = recipe(model)["train"]
    return r["steps"] * r["batch_size"] * r["block_size"]


def check_optimize(search, name):
    if not search.kl >= 0 or not np.isfinite(search.kl):
        raise DataError(f"--kl {search.kl}: must be a number, 0 or more (0: the search's own answer; Olmix ships 0.05)")
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
    cores that the search's single-threaded parts and the plot leave idle. A forest per metric
    (per_metric_lightgbm) is refitted as its screen, one forest of the whole target, 5 times: the
    same kind of model, and a refit of every metric's forest (14 on the paper's 13 losses, 111 on
    Olmix's) was most of simulate's time (bench/simulate_speed.py)."""
    per_metric = name == "per_metric_lightgbm"
    n_boot = (5 if per_metric else 10) if search.bootstrap is None else search.bootstrap
    refit_as = "lightgbm" if per_metric else name
    return [pool.submit(regressors.fit, refit_as, X[idx], y[idx], fit["min_data_in_leaf"], to_score=True, Y=Y[idx],
                        members=fit.get("ensemble_members")) for idx in resamples(len(y), n_boot, search.seed)]


# -----------------------------------------------------------------------------
# beyond the paper: the answer's rivals

def final_pick(weights, model, search, fit, names, prior, X, measured, y, runs, cap, out, radius, tokens):
    """What simulate returns, and what it is compared with. The rivals a user would try first
    (baselines.py: natural, uniform, UniMax, the best run, the target alone; and --compare files)
    are predicted beside the search's mixture; within the constraints they are candidates too, so
    the search never returns, silently, a mixture predicted worse than one it could have taken.
    After rounds (or --blend-best-run) the answer is instead the mean of the search's mixture and
    the best run (docs/rounds.md says why). --optimize first refines the search's mixture on the
    simplex; --kl then moves the answer toward the prior."""
    ceiling = fit.get("ceiling")
    best_run = int(np.argmin(y))
    unimax = (baselines.unimax(tokens, search.target_tokens, search.max_epochs)
              if tokens is not None and search.target_tokens else None)
    rivals = baselines.rivals(names, prior, X[best_run], fit["target_weights"], unimax)
    compare = dict(rivals)
    for item in search.compare:
        cname, _, path = item.partition("=")
        if not path:
            raise DataError(f"--compare {item}: expected NAME=FILE.json")
        compare[cname] = mixture_vector(read_mixture(path), names, source=f"--compare {item}")
    optimized, simulated = None, weights
    if search.optimize:
        weights = optimize_on_simplex(model, simulated, cap, X, radius)
        optimized = dict(simulated_weights={d: float(w) for d, w in zip(names, simulated)},
                         simulated_predicted_loss=float(orient(model.predict(simulated[None]), ceiling)[0]))
    predicted = orient(model.predict(np.vstack([weights] + list(compare.values()))), ceiling)
    distance = nearest_run(np.vstack([weights] + list(compare.values())), X)
    within = {k: bool((v <= cap + 1e-9).all()) for k, v in compare.items()}
    vouched = {k: bool(radius is None or dist <= radius) for k, dist in zip(compare, distance[1:])}
    feasible = {k: within[k] and vouched[k] for k in compare}  # what may be returned
    fitted = orient(predicted, ceiling)  # lower is better
    searched_loss = float(predicted[0])
    known = fitted.copy()  # each as far as it is known: the fit, corrected near the runs
    if search.pick == "vouched":
        known = fitted + local_errors(fit, X, y, np.vstack([weights] + list(compare.values())),
                                      [-1] + [best_run if k == "best proxy run" else -1 for k in compare])
    winner = min((k for k in rivals if feasible[k]), key=lambda k: known[1 + list(compare).index(k)], default=None)
    won_by, source = None, "search"
    rounds = run_rounds(out, runs)
    blend = (rounds.max() > 1) if search.blend_best_run is None else search.blend_best_run
    blended = bool(blend and feasible["best proxy run"])
    untrusted = bool((fit.get("trust") or {}).get("warning")) and search.pick == "vouched" and feasible["best proxy run"]
    if untrusted:
        # the fit ranks the runs little better than chance (fit.json's trust): its favourite is a guess,
        # the best run a measurement (Olmix's update-5 swarm, CV rho 0.35: docs/reuse.md)
        weights, source, blended = X[best_run], "best proxy run: the fit is not trusted", False
        predicted[0] = predicted[1 + list(compare).index("best proxy run")]
    elif blended:
        # after rounds, the runs gather where the optimum may be: the search's pick (which the fit
        # flatters, having chosen it) and the best run measured there (which noise flatters) each
        # err, and their mean erred less on the surfaces of bench/rounds.py (docs/rounds.md). The
        # mean of two mixtures within the caps is within them.
        weights, source = (weights + X[best_run]) / 2, "blend of the search and the best proxy run"
        predicted[0] = orient(model.predict(weights[None]), ceiling)[0]
    elif winner is not None and known[1 + list(compare).index(winner)] < known[0]:
        won_by = source = winner
        weights = compare[winner]
        predicted[0] = predicted[1 + list(compare).index(winner)]
    if search.kl:
        weights = toward_prior(model, weights, prior, cap, X, radius, search.kl)
        predicted[0] = orient(model.predict(weights[None]), ceiling)[0]
    return dict(weights=weights, predicted=predicted, compare=compare, feasible=feasible, within=within, vouched=vouched,
                won_by=won_by, blend=blend,
                blended=blended, searched_loss=searched_loss, optimized=optimized, simulated=simulated, rounds=rounds,
                best_run=best_run, best_run_name=runs[best_run], best_run_measured=float(measured[best_run]),
                source=source, radius=radius, distance=float(nearest_run(weights[None], X)[0]),
                warnings=answer_warnings(fit, weights, predicted[0], measured, ceiling, X, radius))


def local_errors(fit, X, y, W, own, k=3):
    """The fit's error near each mixture of W: the mean out-of-fold error (measured - predicted, as
    fitted) of the k runs nearest it, leaving out a mixture's own run (own: its index, or -1). A
    smooth fit errs alike on neighbouring runs where it underrates a corner the runs found, and
    the correction shows it; the best run's own error is left out, for it was chosen for its
    luck as much as for its mixture (issue 33: its measurement alone won on bench/e2e.py and lost
    on bench/rounds.py's noisy surfaces). A run whose out-of-fold prediction missed by more than
    the whole spread of the measured losses is left out too: its fold broke there (a mixing law's
    exponential beyond its runs: 1e5 on bench/rounds.py's pile_cc), which says nothing of the fit
    near it. Zero where fit.json predates cv_predictions."""
    if not fit.get("cv_predictions") or len(fit["cv_predictions"]) != len(y):
        return np.zeros(len(W))
    errors = y - np.asarray(fit["cv_predictions"])
    broken = ~(np.abs(errors) <= np.ptp(y))  # (NaN too)
    out = []
    for w, skip in zip(W, own):
        order = [i for i in np.argsort(((X - w) ** 2).sum(1), kind="stable") if i != skip and not broken[i]][:k]
        out.append(errors[order].mean() if order else 0.0)
    return np.array(out)


def answer_warnings(fit, weights, predicted, measured, ceiling, X, radius):
    """Lines that must go with an answer the runs cannot vouch for: one predicted better than every
    measured run by more than the fit's own error (the RMSE of its cross-validated predictions), or
    one far from every run (only with --extrapolate: the trust region keeps the search near them)."""
    warnings = []
    error = fit.get("cv_rmse") or np.sqrt(fit["regressors"][fit["chosen"]]["mse"])
    fitted, best_measured = orient(predicted, ceiling), orient(measured, ceiling).min()
    verify = ("train it beside its rivals to see (python regmix.py --stage compare), or add a round of proxies "
              "near it (--stage mixtures --next 8, then proxy, fit, simulate)")
    if best_measured - fitted > error:
        warnings.append(f"the answer is predicted {best_measured - fitted:.4f} better than every measured run, more than "
                        f"the fit's own error ({error:.4f}, its cross-validated RMSE): a promise, not a measurement; "
                        + verify)
    if radius is None:  # (within the trust region nothing is far; its radius costs runs^2 to measure)
        spacing, far = trust_radius(X), float(nearest_run(weights[None], X)[0])
        if far > spacing:
            warnings.append(f"the answer lies {far:.3f} from the nearest run, beyond the runs' typical spacing "
                            f"({spacing:.3f}): the fit extrapolates there; " + verify)
    return warnings


def toward_prior(model, weights, prior, cap, X, radius, lam, steps=200):
    """--kl LAMBDA: the answer moved along the straight line to the prior, to the point that
    minimises the predicted loss plus LAMBDA x KL(w || prior), among the points within the caps
    (and the trust region). Olmix and Marin minimise that objective over the whole simplex. On the
    line from the answer the search would give without it, the KL only falls, and the point chosen
    is never farther along for a smaller LAMBDA: a larger LAMBDA never raises the answer's KL
    (tests/test_pick.py), and LAMBDA 0 is the search's own answer."""
    t = np.linspace(0, 1, steps + 1)[:, None]
    line = (1 - t) * weights + t * prior
    ok = (line <= cap + 1e-9).all(1) & (True if radius is None else nearest_run(line, X) <= radius)
    ok[0] = True  # the search's own answer is within them
    objective = model.predict(line) + lam * baselines.kl(line, prior)
    objective[~ok] = np.inf
    return line[int(np.argmin(objective))]


def confidence(refits, kept, top_k, simulated, names, X, radius):
    """The bootstrap's verdict on the answer: each refit searches again (the first 100,000 candidates
    within the constraints and the trust region, the same top fraction of them); the spread of their
    mixtures, and their mean total variation to the search's own (0: the same, 1: disjoint). None
    without refits."""
    if not refits:
        return None
    sub = kept[:100_000]
    k = max(1, round(top_k * len(sub) / len(kept)))  # the same top fraction of them as the search took
    if radius is not None:
        sub = sub[nearest_run(sub, X) <= radius]
    ws = np.array([top_k_mean(r.result(), sub, k) for r in refits])  # each scored while later ones fit
    losses = np.array([r.result().predict(w[None])[0] for r, w in zip(refits, ws)])
    return dict(bootstrap=len(refits), candidates=int(len(sub)), top_k=int(k),
                weights_std={d: float(s) for d, s in zip(names, ws.std(0))},
                weights_mean={d: float(s) for d, s in zip(names, ws.mean(0))},
                predicted_loss_std=float(np.std(losses)),
                mean_abs_change=float(np.abs(ws - simulated).sum(1).mean() / 2))  # total variation to it


# -----------------------------------------------------------------------------
# beyond the paper: the file and the printed table

def record(fit, name, search, pick, binding, conf, limits, c, n_kept, names, averaged, grouping=None):
    """mixture.json (docs/stages.md lists its fields). With mixture reuse, `weights` are every leaf's
    (what the target trains on: a virtual domain's weight times each member's ratio), `columns` the
    weights the search chose among."""
    predicted, compare = pick["predicted"], pick["compare"]
    result = dict(weights={d: float(w) for d, w in zip(names, pick["weights"])}, predicted_loss=float(predicted[0]),
                  maximize=fit.get("ceiling") is not None, n_samples=n_kept, concentration=c, top_k=search.top_k,
                  target=fit["target"], target_weights=fit["target_weights"], regressor=name,
                  constraints={src: {d: float(x) for d, x in zip(names, v)} for src, v in limits.items()},
                  binding=binding, confidence=conf, optimized=pick["optimized"],
                  baselines={k: dict(predicted_loss=float(p), weights={d: float(x) for d, x in zip(names, v)},
                                     within_constraints=pick["within"][k], within_trust_region=pick["vouched"][k])
                             for (k, v), p in zip(compare.items(), predicted[1:])},
                  search_predicted_loss=pick["searched_loss"], baseline_chosen=pick["won_by"],
                  blended_with_best_run=pick["blended"], source=pick["source"], kl=search.kl,
                  trust_region=dict(radius=pick["radius"], distance_to_nearest_run=pick["distance"], averaged=averaged),
                  warnings=pick["warnings"],
                  warning=(fit.get("trust") or {}).get("warning"))
    result["baselines"]["best proxy run"].update(run=pick["best_run_name"], measured_loss=pick["best_run_measured"])
    if grouping is not None:
        leaves = grouping.leaves(names)
        for entry in [result] + list(result["baselines"].values()):
            w = reuse.to_leaves(grouping, [list(entry["weights"].values())], names, leaves)[0]
            entry["columns"], entry["weights"] = entry["weights"], dict(zip(leaves, map(float, w)))
        result["reuse"] = grouping.record()
    return result


def report(result, pick, search, limits, c, share, n_cand, out, names):
    """simulate's printed lines and table."""
    predicted, compare, conf = pick["predicted"], pick["compare"], result["confidence"]
    print(f"\nsimulate with {result['regressor']}: {result['n_samples']:,} of {n_cand:,} Dirichlet({'' if c == 1 else f'{c} x '}prior) "
          f"candidates within the constraints ({', '.join(limits) or 'none'}), mean of the top {search.top_k} -> "
          f"{out}/mixture.json" + (f" (Dirichlet(prior) put only {share:.0%} within them)" if c > 1 else ""))
    if pick["radius"] is not None:
        print(f"  trust region: within {pick['radius']:.3f} of a run (nine runs in ten have another within it); the answer lies "
              f"{pick['distance']:.3f} from the nearest one (--extrapolate: anywhere)")
    for b in result["binding"]:
        print(f"  binds: {b['domain']} <= {b['cap']:.4f} ({b['constraint']}); unconstrained it would get {b['unconstrained']:.4f}")
    if pick["blended"]:
        print(f"  returned: the mean of the search's mixture (predicted {pick['searched_loss']:.4f}) and the best proxy run "
              f"({pick['best_run_name']}, measured {pick['best_run_measured']:.4f}), as after rounds (--no-blend-best-run: the search's)")
    elif pick["blend"]:
        print("  the best proxy run is outside the constraints: not blended with it")
    if pick["won_by"] and search.pick == "vouched":
        print(f"  returned: the {pick['won_by']} mixture" + (f" ({pick['best_run_name']}, measured "
              f"{pick['best_run_measured']:.4f})" if pick["won_by"] == "best proxy run" else "") + ", not the search's "
              f"(predicted {pick['searched_loss']:.4f}): with the fit's errors on the runs near each, it is the "
              "better (--pick paper: by prediction alone)")
    elif pick["won_by"]:
        print(f"  the search's mixture is predicted at {pick['searched_loss']:.4f}, worse than the {pick['won_by']} mixture "
              f"({predicted[0]:.4f}) under the same regressor: that mixture is returned")
    if pick["source"].startswith("best proxy run: "):
        print(f"  returned: the best proxy run ({pick['best_run_name']}, measured {pick['best_run_measured']:.4f}), not the "
              "search's mixture: the fit ranks the runs little better than chance, so its favourite is a guess "
              "(--pick paper returns it anyway); more proxies are the remedy")
    outside = [k for k in compare if not pick["feasible"][k]]
    if outside:
        print(f"  outside the constraints{'' if pick['radius'] is None else ' or the trust region'} (shown, never "
              f"returned): {', '.join(outside)}")
    if result["warning"]:
        print(f"  warning: {result['warning']}")
    for w in pick["warnings"]:
        print(f"  warning: {w}")
    if result.get("reuse"):
        print(f"  reuse: the search chose among {len(names)} columns; mixture.json's weights are the "
              f"{len(result['weights'])} domains', each reused one at its old ratio within "
              f"{', '.join(result['reuse']['groups'])} (the table below shows the columns)")
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

def best(scores, k, cand=None, X=None, radius=None):
    """The indices of the k lowest scores, lowest first, ties to the earlier index: a stable
    argsort's first k, without sorting a million scores to keep a hundred. With a trust
    region (cand, the runs X, radius), only candidates within `radius` of a run count: the best
    4k, 16k, ... are measured against the runs until k of them lie within it."""
    if radius is not None:
        m = min(4 * k, len(scores))
        while True:
            idx = best(scores, m)
            idx = idx[nearest_run(cand[idx], X) <= radius]
            if len(idx) >= k or m == len(scores):
                break
            m = min(4 * m, len(scores))
        if not len(idx):
            raise DataError("no candidate lies within the trust region (near a proxy run); raise --samples, "
                            "or --extrapolate to search anywhere")
        return idx[:k]
    if k < len(scores):
        kth = np.partition(scores, k - 1)[k - 1]
        idx = np.flatnonzero(scores <= kth)  # every tie of the k-th too
        if len(idx) >= k:  # (fewer only where NaNs are among the k lowest)
            return idx[np.argsort(scores[idx], kind="stable")[:k]]
    return np.argsort(scores, kind="stable")[:k]


def top_k_mean(model, cand, k):
    return cand[best(model.predict(cand), k)].mean(0)


def optimize_on_simplex(model, start, cap, X=None, radius=None, steps=100):
    """A smooth regressor's minimum over {0 <= w <= cap, sum w = 1}, by SLSQP from `start` (the
    simulated mixture): the exact optimum of the fitted function rather than the mean of the
    best random candidates. Where it leaves the trust region (radius around the runs X), the
    answer is the farthest point toward it, on the line from `start`, that stays within."""
    from scipy.optimize import minimize
    with regressors.one_blas_thread():
        r = minimize(lambda w: float(model.predict(w[None])[0]), start, method="SLSQP",
                     bounds=[(0.0, float(c)) for c in cap], constraints=[dict(type="eq", fun=lambda w: w.sum() - 1)],
                     options=dict(maxiter=500, ftol=1e-12))
    w = np.clip(r.x, 0, cap)
    w = w / w.sum()
    if radius is not None:
        t = np.linspace(0, 1, steps + 1)[:, None]
        line = (1 - t) * start + t * w
        w = line[np.flatnonzero(nearest_run(line, X) <= radius).max(initial=0)]
    return w


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


