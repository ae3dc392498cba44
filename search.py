"""
The search half of RegMix: find the mixture the fitted function predicts best, within what the
data can supply (regression.py fits it).

    simulate  score 1,000,000 Dirichlet(prior) mixtures with the fitted regressor, within the
              constraints (Constraints: the prior, 15x availability, the proxies' range, a token
              budget), average the top 100; the natural, uniform and best-run mixtures compete;
              bootstrap refits say how stable the answer is    -> out/mixture.json, mixture.png
    propose   in a search in rounds, the mixtures to train next (Thompson sampling over bootstrap
              refits; mixtures.py writes them)

Every piece takes values (Search and Constraints are simulate's flags as dataclasses), so a
notebook can call it without argparse.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import regressors
from data import DataError, atomic_write_json, check_finite_sum, mixture_vector, read_mixture, usable_cores
from regression import (_plt, fitted_for, fitted_results, fitted_target, load_regressor, orient, read_fit,
                        round_color, run_rounds)

MAX_USAGE = 15.0  # a domain's weight at most 15x its natural share (the official sampler's bound)


def dirichlet(alpha, rng, n=None):
    """Dirichlet draws, a row each: normalised gammas of `alpha` (one row of alphas per draw, or
    one alpha for n draws). Rows whose gammas all underflow to 0 (tiny alphas) are dropped."""
    g = rng.standard_gamma(alpha if n is None else np.broadcast_to(alpha, (n, len(alpha))))
    total = g.sum(1, keepdims=True)
    if not (total > 0).all():
        g, total = g[total[:, 0] > 0], total[total[:, 0] > 0]
    g /= total  # in place: a million candidates are 136 MB
    return g


def availability(prior):
    """The most a mixture may use each domain: MAX_USAGE x its share of the data's tokens. More
    would repeat a small domain too often in the target run (the mixtures stage draws within it)."""
    return np.minimum(MAX_USAGE * prior, 1.0)


def load_prior(path, meta, names, X=None):
    """The prior over `names`: --prior (a JSON of domain -> share, or `uniform`), else the data's
    meta.json, else (no data: another tool's sweep) the runs' mean weights, said in one line."""
    if path == "uniform":
        return np.full(len(names), 1 / len(names))
    if path:
        prior = read_mixture(path)  # the same format as a mixture
        source = f"--prior {path}"
    elif meta is not None:
        prior, source = meta["prior"], "the data's meta.json"
    elif X is not None:
        p = np.maximum(X.mean(0), 1e-6)  # (a domain no run trained on keeps a sliver)
        print("prior: none given (no --prior, no --data folder of the fitted domains): the runs' mean weights serve "
              "as one; --prior uniform or --prior FILE chooses another")
        return p / p.sum()
    else:
        raise DataError("no prior: pass --prior FILE (JSON domain -> share), --prior uniform, or a --data folder "
                        "with meta.json")
    missing = [d for d in names if d not in prior]
    if missing:
        raise DataError(f"{source}: no share for '{missing[0]}' (a domain of the fitted results): pass --prior FILE "
                        "(JSON domain -> share), --prior uniform, or the --data folder of that sweep")
    try:
        p = np.array([float(prior[d]) for d in names])
    except (TypeError, ValueError):
        raise DataError(f"{source}: every share must be a number") from None
    if not np.all(p > 0) or not np.all(np.isfinite(p)):
        raise DataError(f"{source}: the share of '{names[int(np.argmin(np.nan_to_num(p, nan=-1)))]}' is not a "
                        "positive number")
    check_finite_sum(p, names, source, "share")
    return p / p.sum()


def caps(prior, X, bound=True, target_tokens=None, max_epochs=4.0, train_tokens=None, extrapolate=False):
    """Per-domain upper bounds on the weight, and where each comes from:
    availability  w <= 15 x prior (--bound, on by default), as the mixtures stage draws them;
    token budget  w <= E x the domain's training tokens / N (--target-tokens N --max-epochs E);
    proxy range   w <= the largest weight any proxy run gave it (unless --extrapolate): a smooth
                  law must not run to a corner it never saw."""
    limits = {}
    if bound:
        limits[f"availability ({MAX_USAGE:g} x prior)"] = availability(prior)
    if target_tokens is not None:
        if target_tokens <= 0:
            raise DataError(f"--target-tokens {target_tokens}: the target run's tokens must be positive")
        if not max_epochs > 0:
            raise DataError(f"--max-epochs {max_epochs:g}: must be positive (how often a domain may repeat)")
        if train_tokens is None:
            raise DataError("--target-tokens needs each domain's training tokens: a --data folder, or --tokens FILE "
                            "(JSON domain -> tokens)")
        cap = np.minimum(max_epochs * train_tokens / target_tokens, 1.0)
        if cap.sum() < 1:
            raise DataError(f"--target-tokens {target_tokens:,}: the data holds {int(train_tokens.sum()):,} training "
                            f"tokens, {max_epochs:g} epochs of which is {max_epochs * train_tokens.sum():,.0f}; "
                            "lower --target-tokens or raise --max-epochs")
        limits[f"token budget ({max_epochs:g} epochs of {target_tokens:,} tokens)"] = cap
    if not extrapolate:
        limits["proxy range"] = X.max(0)
    return limits


@dataclass
class Constraints:
    """What limits a search (simulate's and --next's flags): the prior (--prior: a file, `uniform`,
    or None: the data's, else the runs' mean), the availability bound (--bound), a token budget
    (--target-tokens, --max-epochs, --tokens) and the proxies' range (unless --extrapolate)."""
    prior: str = None
    bound: bool = True
    target_tokens: int = None
    max_epochs: float = 4.0
    tokens: str = None
    extrapolate: bool = False

    @classmethod
    def from_args(cls, args):
        return cls(args.prior, args.bound, args.target_tokens, args.max_epochs, args.tokens, args.extrapolate)


def search_space(names, X, meta, limits, proxy_range=True):
    """(prior, caps by constraint, cap) of a search over `names` (simulate's, and --stage mixtures
    --next's): the prior, each constraint of caps() from `limits` (Constraints), and the per-domain
    cap they make together; an error if no mixture at all satisfies them. meta: the data's
    meta.json, or None. Proposals for the next round search beyond the proxy range
    (proxy_range=False): a run there measures what a fit could only extrapolate."""
    c = limits
    if c.tokens and c.target_tokens is None:
        raise DataError(f"--tokens {c.tokens} is read only with --target-tokens N (the target run's tokens, "
                        "which it caps each domain for); add it, or leave --tokens out")
    prior = load_prior(c.prior, meta, names, X)
    train_tokens = None
    if c.target_tokens is not None and c.tokens:  # counts from elsewhere (Olmix's tokens.json), no data needed
        counts = read_mixture(c.tokens, olmix_key="token_counts")
        unknown = [d for d in names if d not in counts]
        if unknown:
            raise DataError(f"--tokens {c.tokens}: no token count for '{unknown[0]}' (a domain of the fitted results)")
        train_tokens = np.array([counts[d] for d in names], dtype=float)
        if not (train_tokens > 0).all():
            raise DataError(f"--tokens {c.tokens}: every domain's token count must be positive")
    elif c.target_tokens is not None and meta is not None:
        unknown = [d for d in names if d not in meta["domains"]]
        if unknown:
            raise DataError(f"--target-tokens: the data has no domain '{unknown[0]}' of the fitted results")
        train_tokens = np.array([meta["domains"][d]["train_tokens"] for d in names], dtype=float)
    by_constraint = caps(prior, X, c.bound, c.target_tokens, c.max_epochs, train_tokens, c.extrapolate or not proxy_range)
    cap = np.min(list(by_constraint.values()), axis=0) if by_constraint else np.ones(len(names))
    if cap.sum() < 1:  # no mixture at all satisfies them, however many candidates are drawn
        raise DataError(f"the constraints together ({', '.join(by_constraint)}) allow at most {cap.sum():.3f} of the "
                        "mixture; relax them (--no-bound, --extrapolate, --max-epochs, --target-tokens)")
    return prior, by_constraint, cap


def concentration(prior, cap, rng, pilot=20_000):
    """The smallest c in 1, 2, 4, ... 1024 for which at least half of Dirichlet(c x prior) draws
    respect the caps (a pilot of 20,000; where none reaches half, the c with the largest share), and
    the share within them at c = 1. Dirichlet(prior) itself puts most of a draw on one domain: with
    17 domains 79% of the paper's candidates respect its caps (c stays 1, the notebook's search),
    with Olmix's 64 only 6%. A larger c draws closer to the prior, which need not respect the caps
    itself: the share can fall again, and the search stops there."""
    shares = {}
    for c in 2 ** np.arange(11):
        shares[int(c)] = float((dirichlet(c * prior, rng, pilot) <= cap + 1e-12).all(1).mean())
        if shares[int(c)] >= 0.5 or shares[int(c)] < max(shares.values()):
            break
    best = next((c for c, s in shares.items() if s >= 0.5), max(shares, key=shares.get))
    return best, shares[1]


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
    names, target, tw = fit["domains"], fit["target"], fit["target_weights"]
    name = fit["chosen"] if search.regressor == "auto" else search.regressor
    if search.optimize and name in ("lightgbm", "component_lightgbm", "ensemble"):
        raise DataError(f"--optimize needs a smooth regressor (linear, mixing_law, quadratic, gp, per_metric_mixing_law), "
                        f"not {name}: trees are flat between thresholds; pass --regressor too")
    X, measured, y, Y, runs = fitted_target(fit, fitted_results(fit, out))
    ceiling = fit.get("ceiling")
    prior, limits, cap = search_space(names, X, meta, constraints)
    # candidates as in the authors' notebook: Dirichlet with alpha = the prior (times a concentration
    # where the caps would reject most of them), drawn in a thread while the regressor loads (numpy's
    # gamma draws release the GIL; importing LightGBM takes seconds)
    c, share = concentration(prior, cap, np.random.default_rng([search.seed, 1]))
    drawing = pool.submit(dirichlet, c * prior, np.random.default_rng(search.seed), search.samples)
    model = load_regressor(out, name, fitted_for(fit))
    # the bootstrap's refits need only the runs: they start now, and fill the cores that the
    # search's single-threaded parts and the plot leave idle
    n_boot = bootstrap_refits(search.bootstrap, name, Y.shape[1])
    refits = [pool.submit(regressors.fit, name, X[idx], y[idx], fit["min_data_in_leaf"], to_score=True, Y=Y[idx],
                          members=fit.get("ensemble_members")) for idx in resamples(len(y), n_boot, search.seed)]
    cand = drawing.result()
    ok = (cand <= cap + 1e-12).all(1)
    if ok.sum() < search.top_k:
        raise DataError(f"only {int(ok.sum())} of {len(cand):,} candidates within the constraints for --top-k "
                        f"{search.top_k}; raise --samples, or relax them (--no-bound, --extrapolate, --max-epochs)")
    scores = model.predict(cand)
    free = cand[best(scores, search.top_k)].mean(0)  # what the search would pick unconstrained
    kept, kept_scores = cand[ok], scores[ok]
    weights = kept[best(kept_scores, search.top_k)].mean(0)
    binding = [dict(domain=d, constraint=src, cap=float(c[j]), unconstrained=float(free[j]))
               for src, c in limits.items() for j, d in enumerate(names) if free[j] > c[j] + 1e-9]

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
    # the search must not return, silently, a mixture predicted worse than one it could have taken:
    # the baselines within the constraints are candidates too
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
    # a cap binds where the search wanted more and the returned mixture sits at it (within 10%)
    binding = [b for b in binding if weights[names.index(b["domain"])] >= 0.9 * b["cap"]]
    # the plot waits in the pool's queue behind the refits, and is drawn beside their scoring
    plotting = pool.submit(plot_mixture, os.path.join(out, "mixture.png"), names, weights, prior,
                           f"{'max' if ceiling is not None else 'min'} {target}", X, rounds)
    confidence = None
    if n_boot:
        # the first 100,000 candidates within the constraints, and the same top fraction of them
        sub = kept[:100_000]
        k = max(1, round(search.top_k * len(sub) / len(kept)))
        ws = np.array([top_k_mean(r.result(), sub, k) for r in refits])  # each scored while later ones fit
        losses = np.array([r.result().predict(w[None])[0] for r, w in zip(refits, ws)])
        confidence = dict(bootstrap=n_boot, candidates=int(len(sub)), top_k=int(k),
                          weights_std={d: float(s) for d, s in zip(names, ws.std(0))},
                          weights_mean={d: float(s) for d, s in zip(names, ws.mean(0))},
                          predicted_loss_std=float(np.std(losses)),
                          mean_abs_change=float(np.abs(ws - simulated).sum(1).mean() / 2))  # total variation to it
    result = dict(weights={d: float(w) for d, w in zip(names, weights)}, predicted_loss=float(predicted[0]),
                  maximize=ceiling is not None, n_samples=int(len(kept)), concentration=c, top_k=search.top_k, target=target,
                  target_weights=tw, regressor=name,
                  constraints={src: {d: float(x) for d, x in zip(names, c)} for src, c in limits.items()},
                  binding=binding, confidence=confidence, optimized=optimized,
                  baselines={k: dict(predicted_loss=float(p), weights={d: float(x) for d, x in zip(names, v)},
                                     within_constraints=feasible[k])
                             for (k, v), p in zip(compare.items(), predicted[1:])},
                  search_predicted_loss=searched_loss, baseline_chosen=won_by,
                  blended_with_best_run=blended,
                  warning=(fit.get("trust") or {}).get("warning"))
    result["baselines"]["best proxy run"].update(run=runs[best_run], measured_loss=float(measured[best_run]))
    atomic_write_json(os.path.join(out, "mixture.json"), result)

    print(f"\nsimulate with {name}: {len(kept):,} of {len(cand):,} Dirichlet({'' if c == 1 else f'{c} x '}prior) "
          f"candidates within the constraints ({', '.join(limits) or 'none'}), mean of the top {search.top_k} -> "
          f"{out}/mixture.json" + (f" (Dirichlet(prior) put only {share:.0%} within them)" if c > 1 else ""))
    for b in binding:
        print(f"  binds: {b['domain']} <= {b['cap']:.4f} ({b['constraint']}); unconstrained it would get {b['unconstrained']:.4f}")
    if blended:
        print(f"  returned: the mean of the search's mixture (predicted {searched_loss:.4f}) and the best proxy run "
              f"({runs[best_run]}, measured {measured[best_run]:.4f}), as after rounds (--no-blend-best-run: the search's)")
    elif blend:
        print("  the best proxy run is outside the constraints: not blended with it")
    if won_by:
        print(f"  the search's mixture is predicted at {searched_loss:.4f}, worse than the {won_by} mixture "
              f"({predicted[0]:.4f}) under the same regressor: that mixture is returned")
    outside = [k for k in compare if not feasible[k]]
    if outside:
        print(f"  outside the constraints (shown, never returned): {', '.join(outside)}")
    if result["warning"]:
        print(f"  warning: {result['warning']}")
    if optimized:
        print(f"  optimised on the simplex within the caps (SLSQP from the simulated mixture): predicted "
              f"{predicted[0]:.4f}, simulated top-{search.top_k} mean {optimized['simulated_predicted_loss']:.4f}")
    cols = ["regmix"] + (["+/- (bootstrap)"] if confidence else []) + list(compare)
    wide = max(20, 2 + max(len(d) for d in names))  # long names (Olmix's topics) keep the columns aligned
    print(f"{'domain':<{wide}}" + "".join(f"{c[:16]:>18}" for c in cols))
    table = np.vstack([weights] + ([np.array(list(confidence["weights_std"].values()))] if confidence else [])
                      + list(compare.values()))
    for j, d in enumerate(names):
        print(f"{d:<{wide}}" + "".join(f"{table[i, j]:>18.4f}" for i in range(len(cols))))
    spread = [f"{confidence['predicted_loss_std']:.4f}"] if confidence else []
    print(f"{'predicted ' + target:<{wide}}"[:wide] + "".join(f"{p:>18}" for p in [f"{predicted[0]:.4f}"] + spread
                                                       + [f"{p:.4f}" for p in predicted[1:]]))
    plotting.result()
    return result


def bootstrap_refits(requested, name, n_metrics):
    """--bootstrap N, or by default 10 refits; fewer (at least 3) for per_metric_lightgbm, whose every
    refit fits a forest per metric and one more (14 forests on the paper's 13 losses: 10 refits took
    27 of simulate's 32 s there, README)."""
    if requested is not None:
        return requested
    return max(3, 40 // (n_metrics + 1)) if name == "per_metric_lightgbm" else 10


def resamples(n, refits, seed):
    """The bootstrap's `refits` resamplings of n runs (with replacement). Each refit's choice (the
    mean of the top of the candidates) shows how stable the simulated mixture is: with few runs
    they spread widely, the mixture is then a guess, and the README says so."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(refits)]


# -----------------------------------------------------------------------------
# rounds: which mixtures to train next (--rounds, --stage mixtures --next)

PROPOSAL_CANDIDATES = 100_000  # Dirichlet draws, before the constraints, that proposals are picked from


def on_grid(w, minimum=2e-4):
    """Mixtures as the mixtures stage writes them: weights below `minimum` become 0, the rest
    rounded to multiples of it, then each row renormalised to sum to 1 (so a weight lies within a
    fraction of `minimum` of a multiple: propose tells a repeat of a run by a distance of 1e-4)."""
    w = np.where(w < minimum, 0.0, w)
    w = np.round(w / w.sum(-1, keepdims=True) / minimum) * minimum
    return w / w.sum(-1, keepdims=True)


def propose(name, X, y, leaf, cand, m, seed, taken, Y=None, members=None):
    """m mixtures to train next, by Thompson sampling: each the best candidate of its own refit on
    the runs resampled with replacement. Where the refits agree about the optimum the proposals
    gather there; where they disagree they spread over what may be best, which is where another
    run teaches the fit most (bench/rounds.py: the strategies compared). A proposal never repeats
    a row of `taken` (the runs so far) or another proposal: a refit's next best is taken instead."""
    Y = y[:, None] if Y is None else Y  # (one column: the target itself)
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(y), len(y)) for _ in range(m)]
    seen = np.asarray(taken, float).reshape(-1, X.shape[1])
    proposals = []
    with regressors.one_blas_thread(), ThreadPoolExecutor(max(1, min(usable_cores(), m))) as pool:
        models = pool.map(lambda idx: regressors.fit(name, X[idx], y[idx], leaf, to_score=True, Y=Y[idx], members=members),
                          samples)
        for model in models:
            for i in np.argsort(model.predict(cand), kind="stable"):
                w = on_grid(cand[i])
                if not len(seen) or np.abs(seen - w).max(1).min() >= 1e-4:  # not on a run's grid point
                    break
            else:
                raise DataError(f"every one of the {len(cand):,} candidates repeats a run or a proposal: the "
                                "constraints leave too few mixtures; relax them (--no-bound, --max-epochs)")
            seen = np.vstack([seen, w])
            proposals.append(w)
    return np.array(proposals)


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


