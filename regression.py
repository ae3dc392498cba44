"""
The regression half of RegMix: fit validation loss as a function of the mixture weights, then
search the fitted function for the mixture with the lowest predicted loss.

    fit       every regressor of regressors.py, judged on the same held-out runs (--test, or
              5-fold cross-validation); the one to trust chosen by cross-validation on the
              training runs; each refit on every run              -> out/fit.json, fit.png, regressors/
    simulate  score 1,000,000 Dirichlet(prior) mixtures with it, within the constraints, average
              the top 100; bootstrap refits say how stable that is -> out/mixture.json, mixture.png
    propose   in a search in rounds, the mixtures to train next (Thompson sampling over bootstrap
              refits; mixtures.py writes them)

The tables fitted are read by results.py (ours, and other tools' layouts).

The paper's released data converts to this project's results schema with

    python regression.py paper2csv MIXTURE_CSV LOSS_CSV OUT_CSV
    python regression.py paper2csv MIXTURE_CSV OUT_MIXTURES_CSV      # mixtures only, for --stage proxy
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import regressors
from data import DataError, atomic_write_json, mixture_vector, read_csv, read_json, read_mixture, usable_cores
from results import Results, paper2csv, target_weights

FOLDS = 5
MIN_RUNS = 10          # fewer runs than this are not fitted
LOW_RHO = 0.5          # a chosen fit below this cross-validated Spearman is reported as untrustworthy


# -----------------------------------------------------------------------------
# held-out evaluation and the choice of regressor

def ranks(a):
    """Ranks from 1, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    r[order] = np.arange(1, len(a) + 1)
    _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=r)
    return (sums / counts)[inv]


def metrics(y, pred):
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    mse = float(np.mean((y - pred) ** 2))
    return dict(spearman=float(np.corrcoef(ranks(y), ranks(pred))[0, 1]), pearson=float(np.corrcoef(y, pred)[0, 1]),
                mse=mse, r2=float(1 - mse / np.var(y)))


def needed(name, several=False):
    """The single regressors to fit for `name` (auto: all of them, and the per-metric ones where the
    target spans several metrics)."""
    if name in regressors.PER_METRIC and not several:
        raise DataError(f"--regressor {name} fits the target's metrics apart: it needs a --target over several "
                        "(a,b or all)")
    if name == "auto":
        return list(regressors.SINGLE) + (list(regressors.PER_METRIC) if several else [])
    return list(regressors.ensemble_names(several)) if name == "ensemble" else [name]


def predictions(singles, X, y, Xt=None, leaf=None, seed=42, members=regressors.ENSEMBLE, Y=None):
    """Held-out predictions {name: array} of each regressor and of the ensemble (the mean of its
    members' predictions, when all were fitted): on Xt, or out-of-fold by k-fold CV on (X, y).
    Y: the target's metric columns (metric_columns), for the per-metric regressors."""
    Y = y[:, None] if Y is None else Y  # (one column: the target itself)
    with regressors.one_blas_thread():
        if Xt is not None:
            pred = {n: regressors.fit(n, X, y, leaf, Y=Y).predict(Xt) for n in singles}
        else:
            idx = np.random.default_rng(seed).permutation(len(y))
            pred = {n: np.empty(len(y)) for n in singles}
            for k in range(FOLDS):
                test = idx[k::FOLDS]
                train = np.setdiff1d(idx, test)
                for n in singles:
                    pred[n][test] = regressors.fit(n, X[train], y[train], leaf, Y=Y[train]).predict(X[test])
    if members and all(m in pred for m in members):
        pred["ensemble"] = np.mean([pred[m] for m in members], axis=0)
    return pred


def ensemble_members(cv, y, names=regressors.ENSEMBLE):
    """The ensemble's members (of `names`), less any whose cross-validated R^2 is below 0 (worse
    than predicting the mean: the mixing law on a dozen runs can reach -1e8), which would drag it
    down. None left: no ensemble."""
    return [m for m in names if metrics(y, cv[m])["r2"] >= 0]


def metric_columns(L, tw, maximize):
    """The target's metrics as the per-metric regressors fit them (runs x metrics): weight x metric,
    or with --maximize weight x (the metric's ceiling - metric), so that each column is positive, as
    the mixing law's form needs, and the columns sum to the fitted target up to a constant."""
    if maximize:
        L = orient(L, ceiling_above(L, axis=0) + 1e-9)  # (+1e-9: a metric equal in every run stays positive)
    return L * np.array(list(tw.values()))


def choose(cv_rho):
    """auto: the candidate with the highest cross-validated Spearman (ties: the first of
    regressors.SINGLE's order, the ensemble last). Cross-validation on the training runs only:
    choosing on --test would leak the test set."""
    return max(cv_rho, key=lambda n: (round(cv_rho[n], 6), -list(cv_rho).index(n)))


def top1_regret(y, pred, seed=42):
    """Out-of-fold top-1 regret: in each fold of the cross-validation, the measured target of the run
    predicted best minus the best measured in that fold (fitted orientation, so 0 or more), averaged.
    What trusting the fit's favourite over the runs themselves would have cost."""
    idx = np.random.default_rng(seed).permutation(len(y))  # the folds of predictions()
    return float(np.mean([y[t[np.argmin(pred[t])]] - y[t].min() for t in (idx[k::FOLDS] for k in range(FOLDS))]))


def learning_curve(name, X, y, Y, min_data_in_leaf, members, rho_all, seed=42):
    """CV Spearman of regressor `name` on 25, 50 and 75% of the runs (a random subset each) and on
    all of them (rho_all): still rising at 100% means more proxies would likely help."""
    curve = []
    rng = np.random.default_rng([seed, 7])
    for frac in (0.25, 0.5, 0.75):
        n = int(round(frac * len(y)))
        if n < MIN_RUNS:
            continue
        sub = rng.permutation(len(y))[:n]
        leaf = regressors.leaf_size(n, min_data_in_leaf, X.shape[1])
        singles = list(members) if name == "ensemble" else [name]
        pred = predictions(singles, X[sub], y[sub], leaf=leaf, members=members if name == "ensemble" else [], Y=Y[sub])
        curve.append(dict(runs=n, spearman=metrics(y[sub], pred[name])["spearman"]))
    if rho_all is not None:
        curve.append(dict(runs=len(y), spearman=float(rho_all)))
    return curve


def trust_of(y, pred, seed, resamples=1000):
    """How far the chosen fit can be trusted: its cross-validated Spearman, a 95% bootstrap interval
    of it (the runs resampled), and a warning where it ranks little better than chance (below
    LOW_RHO, or an interval that reaches 0): a search of such a fit returns a guess."""
    rho = metrics(y, pred)["spearman"]
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if np.ptp(y[i]) > 0 and np.ptp(pred[i]) > 0:
            boot.append(np.corrcoef(ranks(y[i]), ranks(pred[i]))[0, 1])
    lo, hi = (np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan))
    warning = None
    if not rho >= LOW_RHO or not lo > 0:
        warning = (f"the fit ranks the runs little better than chance (cross-validated Spearman {rho:.3f}, 95% "
                   f"interval {lo:.2f}..{hi:.2f}): a mixture searched on it is a guess; run more proxies")
    return dict(cv_spearman=float(rho), interval=[float(lo), float(hi)], warning=warning)


def save_regressor(out, model, target):
    """OUT/regressors/NAME.json, with the target it was fitted for: a later fit of another target
    and --regressor leaves the others behind, and load_regressor must not search a stale one."""
    state = (dict(name="ensemble", members=[m.name for m in model.members]) if model.name == "ensemble"
             else regressors.state(model))
    atomic_write_json(os.path.join(out, "regressors", f"{model.name}.json"), dict(state, fitted_for=target))


def load_regressor(out, name, target=None):
    """A saved regressor; with `target` (fit.json's target_weights and orientation), an error if it
    was fitted for another one."""
    path = os.path.join(out, "regressors", f"{name}.json")
    if not os.path.exists(path):
        raise DataError(f"{path}: not found; run --stage fit (with --regressor auto or {name}) first")
    state = read_json(path, f"run --stage fit (with --regressor auto or {name}) again")
    if target is not None and state.pop("fitted_for", None) != target:
        raise DataError(f"{path} was fitted for another target than fit.json's ({target['target']}); "
                        f"run --stage fit --regressor {name} (or auto) for this target, or fit again")
    state.pop("fitted_for", None)
    if name == "ensemble":
        return regressors.Ensemble([load_regressor(out, m, target) for m in state["members"]])
    return regressors.from_state(state)


def fitted_for(fit):
    """What a saved regressor records of the target it was fitted for."""
    return dict(target=fit["target"], target_weights=fit["target_weights"], maximize=bool(fit.get("maximize")),
                runs=len(fit["runs"]))


def stage_fit(args, domains=None):
    out = args.out
    results = Results(args.results or os.path.join(out, "results.csv"), args.metrics)
    spec, tw = target_weights(args.target, results.loss_domains, results.domains, results.path)
    if spec is None:
        raise DataError(f"{results.path}: which loss to minimise? pass --target (one of {', '.join(results.loss_domains)}, "
                        "several as a,b or a=0.7,b=0.3, or all)")
    regs = os.path.join(out, "regressors")
    if os.path.exists(regs) and not os.path.isdir(regs):
        raise DataError(f"{regs}: a file where fit keeps its regressors (a folder); move it away")
    os.makedirs(regs, exist_ok=True)
    if spec == "all":  # say what "all" averaged: every metric of the table
        shown = ", ".join(list(tw)[:12]) + (f", ... ({len(tw)} in all)" if len(tw) > 12 else "")
        print(f"target all: the mean of {len(tw)} metric(s): {shown}")
    X, y, L, runs_used = results.target_metrics(tw)
    runs = results.runs  # every run of the table, failed ones too: what --stage mixtures --next checks it against
    if len(y) < MIN_RUNS:
        raise DataError(f"{results.path}: {len(y)} usable runs; a fit needs at least {MIN_RUNS} (run more proxies)")
    if np.ptp(y) == 0:
        raise DataError(f"{results.path}: loss.{spec} is the same in every run; nothing to fit")
    ceiling = float(ceiling_above(y)) if args.maximize else None
    measured, y = y, orient(y, ceiling)  # what was measured; what is fitted (lower is better)
    leaf = regressors.leaf_size(len(y), args.min_data_in_leaf, len(results.domains))
    if len(y) < 4 * leaf and args.regressor in ("auto", "lightgbm", "ensemble"):
        print(f"warning: {len(y)} runs for min_data_in_leaf {leaf}: LightGBM's trees can barely split; "
              "run more proxies or lower --min-data-in-leaf", file=sys.stderr)
    if args.test:
        test = Results(args.test)
        if test.domains != results.domains:
            raise DataError(f"--test {args.test}: its domains ({', '.join(test.domains)}) differ from "
                            f"{results.path}'s ({', '.join(results.domains)})")
        Xt, y_true, _ = test.target(tw)
    several = len(tw) > 1
    singles, candidates = needed(args.regressor, several), regressors.ensemble_names(several)
    Y = metric_columns(L, tw, args.maximize)
    cv = predictions(singles, X, y, leaf=leaf, members=candidates, Y=Y)
    members = list(candidates)
    if "ensemble" in cv:
        members = ensemble_members(cv, y, candidates)
        for m in (m for m in candidates if m not in members):
            print(f"ensemble: {m} left out (cross-validated R^2 {metrics(y, cv[m])['r2']:.3g} < 0: worse than "
                  "predicting the mean loss)")
        if members:
            cv["ensemble"] = np.mean([cv[m] for m in members], axis=0)
        else:
            del cv["ensemble"]
            print("ensemble: none left (every member's cross-validated R^2 < 0): no ensemble")
            if args.regressor == "ensemble":
                raise DataError("--regressor ensemble: every member predicts worse than the mean loss (cross-validated "
                                "R^2 < 0): no ensemble to fit; run more proxies, or pass --regressor auto")
    if args.test:
        held = predictions(singles, X, y, Xt, leaf=leaf, members=members, Y=Y)
        how = f"held-out table {args.test}"
    else:
        y_true, held, how = measured, cv, f"{FOLDS}-fold cross-validation"
    held = {n: orient(p, ceiling) for n, p in held.items()}  # predictions of the target as given
    scores = {n: metrics(y_true, p) for n, p in held.items()}
    cv_rho = {n: metrics(y, p)["spearman"] for n, p in cv.items()}
    chosen = choose(cv_rho) if args.regressor == "auto" else args.regressor
    trust = trust_of(y, cv[chosen], args.seed)
    # would more proxies help? (one forest per metric is costly to refit: past 16 metrics the curve is LightGBM's)
    curve_of = chosen if chosen != "per_metric_lightgbm" or Y.shape[1] <= 16 else "lightgbm"
    curve = dict(top1_regret=top1_regret(y, cv[chosen]), learning_curve_of=curve_of,
                 learning_curve=learning_curve(curve_of, X, y, Y, args.min_data_in_leaf, members, cv_rho.get(curve_of)))
    # R^2 and MSE compare levels: on a held-out table of another scale (1M proxies -> 60M models) the
    # losses sit elsewhere (mean shifted by more than 2 sd of the training runs') and only ranks compare
    levels = not args.test or abs(y_true.mean() - measured.mean()) <= 2 * measured.std()

    fit = dict(target=spec, target_weights=tw, n_train=len(y), n_test=len(y_true), evaluation=how,
               domains=results.domains, min_data_in_leaf=leaf, regressors=scores, cv_spearman=cv_rho, chosen=chosen,
               results=results.path, metrics=args.metrics, runs=runs, tables=table_paths(out, results.path, args.metrics), maximize=bool(args.maximize), ceiling=ceiling,
               trust=trust, levels_comparable=bool(levels), **curve)
    if "ensemble" in held:
        fit["ensemble_members"] = members
    fit.update({n: scores[n] for n in ("lightgbm", "linear") if n in scores})  # the keys fit.json always had
    # refit on every usable run: these are the models simulate searches
    with regressors.one_blas_thread():
        models = {n: regressors.fit(n, X, y, leaf, Y=Y) for n in singles}
    for m in models.values():
        save_regressor(out, m, fitted_for(fit))
    if "ensemble" in held:
        save_regressor(out, regressors.Ensemble([models[m] for m in members]), fitted_for(fit))
    atomic_write_json(os.path.join(out, "fit.json"), fit)

    print(f"fit: {spec} ({'higher' if args.maximize else 'lower'} is better) ~ {len(results.domains)} weights, {len(y)} runs; "
          f"held out: {how} ({len(y_true)} runs)")
    if args.maximize:
        print(f"  fitted as {ceiling:.4g} - {spec} (a ceiling just above the best run): lower is better and positive, "
              "as every regressor and the search expect; predictions are turned back")
    wide = max(12, 2 + max(len(n) for n in scores))
    print(f"{'regressor':<{wide}}{'Spearman':>10}{'Pearson':>10}" + (f"{'MSE':>11}{'R^2':>11}" if levels else "")
          + f"{'CV rho':>9}")
    for n, m in scores.items():
        print(f"{n:<{wide}}{m['spearman']:>10.4f}{m['pearson']:>10.4f}"
              + (f" {m['mse']:>10.3g} {m['r2']:>10.3g}" if levels else "") + f"{cv_rho[n]:>9.4f}"
              + ("   <- chosen" if n == chosen else ""))
    if not levels:
        print(f"(no MSE or R^2: the held-out runs' mean {y_true.mean():.4g} lies more than 2 sd from the training "
              f"runs' {measured.mean():.4g} +/- {measured.std():.3g}, another scale; only the ranking compares)")
    if args.regressor == "auto":
        print(f"chosen by {FOLDS}-fold cross-validated Spearman on the training runs: {chosen} (the highest)")
    print(f"{chosen}: out-of-fold top-1 regret {curve['top1_regret']:.4g} (the measured {spec} of each fold's predicted "
          f"best run minus its best); CV rho by runs ({curve_of}): "
          + ", ".join(f"{c['runs']} {c['spearman']:.3f}" for c in curve["learning_curve"]))
    if trust["warning"]:
        print(f"warning: {trust['warning']}")
    plot_fit(os.path.join(out, "fit.png"), y_true, held, spec, fit, None if args.test else run_rounds(out, runs_used))
    return fit


# -----------------------------------------------------------------------------
# simulate: search the fitted function, within what the data can supply

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
        print("prior: none given (no --data folder, no --prior): the runs' mean weights serve as one; "
              "--prior uniform or --prior FILE chooses another")
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


def ceiling_above(v, axis=None):
    """--maximize's ceiling: just above the best run (by 5% of the runs' range)."""
    return np.max(v, axis=axis) + 0.05 * np.ptp(v, axis=axis)


def orient(v, ceiling):
    """A target to maximise is fitted and searched as ceiling - target (--maximize; ceiling just above
    the best run, so it stays positive, as the mixing law's form needs); the same map turns
    predictions back. None: a loss, as it is."""
    return v if ceiling is None else ceiling - np.asarray(v, dtype=float)


def fitted_target(fit, results):
    """What fit.json was fitted on, from its results table: (X, measured, y, Y, runs), y as fitted
    (lower is better) and Y its metric columns, for the refits of simulate and --next."""
    tw, ceiling = fit["target_weights"], fit.get("ceiling")
    X, measured, L, runs = results.target_metrics(tw)
    return X, measured, orient(measured, ceiling), metric_columns(L, tw, ceiling is not None), runs


def table_paths(out, results, metrics):
    """Where fit's tables are, as fit.json records them: inside --out relative to it (a copied or
    renamed --out still finds them), elsewhere absolute (another working directory still does)."""
    def where(path):
        if path is None:
            return None
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out))
        return dict(in_out=rel) if not rel.startswith(os.pardir) else dict(absolute=os.path.abspath(path))
    return dict(results=where(results), metrics=where(metrics))


def fitted_results(fit, out):
    """The results table fit.json was fitted on (older fit.json files: their path as written)."""
    def path(entry, fallback):
        if not entry:
            return fallback
        return os.path.join(out, entry["in_out"]) if "in_out" in entry else entry["absolute"]
    tables = fit.get("tables") or {}
    return Results(path(tables.get("results"), fit["results"]), path(tables.get("metrics"), fit.get("metrics")))


def read_fit(out):
    path = os.path.join(out, "fit.json")
    if not os.path.exists(path):
        raise DataError(f"{path}: not found; run --stage fit first")
    return read_json(path, "run --stage fit again")


@dataclass
class Search:
    """simulate's own options (its flags): which regressor (auto: fit's choice), how many
    candidates, the top k averaged, the seed, bootstrap refits (None: bootstrap_refits' default),
    mixtures to compare (NAME=FILE), and --optimize."""
    regressor: str = "auto"
    samples: int = 1_000_000
    top_k: int = 100
    seed: int = 42
    bootstrap: int = None
    compare: list = field(default_factory=list)
    optimize: bool = False

    @classmethod
    def from_args(cls, args):
        return cls(args.regressor, args.samples, args.top_k, args.seed, args.bootstrap, list(args.compare), args.optimize)


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
    if winner is not None and fitted[1 + list(compare).index(winner)] < fitted[0]:
        won_by = winner
        weights = compare[winner]
        predicted[0] = predicted[1 + list(compare).index(winner)]
    # a cap binds where the search wanted more and the returned mixture sits at it (within 10%)
    binding = [b for b in binding if weights[names.index(b["domain"])] >= 0.9 * b["cap"]]
    # the plot waits in the pool's queue behind the refits, and is drawn beside their scoring
    plotting = pool.submit(plot_mixture, os.path.join(out, "mixture.png"), names, weights, prior,
                           f"{'max' if ceiling is not None else 'min'} {target}", X, run_rounds(out, runs))
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
                  warning=(fit.get("trust") or {}).get("warning"))
    result["baselines"]["best proxy run"].update(run=runs[best_run], measured_loss=float(measured[best_run]))
    atomic_write_json(os.path.join(out, "mixture.json"), result)

    print(f"\nsimulate with {name}: {len(kept):,} of {len(cand):,} Dirichlet({'' if c == 1 else f'{c} x '}prior) "
          f"candidates within the constraints ({', '.join(limits) or 'none'}), mean of the top {search.top_k} -> "
          f"{out}/mixture.json" + (f" (Dirichlet(prior) put only {share:.0%} within them)" if c > 1 else ""))
    for b in binding:
        print(f"  binds: {b['domain']} <= {b['cap']:.4f} ({b['constraint']}); unconstrained it would get {b['unconstrained']:.4f}")
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
# plots (matplotlib, headless)

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def run_rounds(out, runs):
    """The round of each run (OUT/mixtures.csv's round column; 1 where it says none), for the plots."""
    path = os.path.join(out, "mixtures.csv")
    rounds = {r["run"]: int(r.get("round") or 1) for r in read_csv(path)} if os.path.exists(path) else {}
    return np.array([rounds.get(run, 1) for run in runs])


def round_color(r):
    return f"C{(r + 1) % 10}"  # C0 and C1 are the mixture plot's bars


def plot_fit(path, y, held, target, fit, rounds=None):
    """Predicted against measured held-out loss, one panel per regressor; runs coloured by round
    when the sweep was searched in rounds."""
    plt = _plt()
    curve = fit.get("learning_curve") or []
    n = len(held) + bool(curve)  # and a panel for the learning curve
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
    lo = min(y.min(), min(p.min() for p in held.values()))
    hi = max(y.max(), max(p.max() for p in held.values()))
    by_round = rounds is not None and len(set(rounds)) > 1
    for ax, (name, p) in zip(axes.flat, held.items()):
        if by_round:
            for r in sorted(set(rounds)):
                ax.scatter(y[rounds == r], p[rounds == r], s=8, alpha=0.7, color=round_color(r), label=f"round {r}")
        else:
            ax.scatter(y, p, s=8, alpha=0.7, color="C1" if name == fit["chosen"] else "C0")
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_title(f"{name}{' (chosen)' if name == fit['chosen'] else ''}: rho {fit['regressors'][name]['spearman']:.3f}",
                     fontsize=9)
        ax.set_xlabel(f"measured {target} loss", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
    if by_round:
        axes.flat[0].legend(fontsize=7)
    if curve:  # would more proxies help? still rising at the right: likely
        ax = axes.flat[len(held)]
        ax.plot([c["runs"] for c in curve], [c["spearman"] for c in curve], "o-", color="C1")
        ax.set_title(f"{fit['learning_curve_of']}: CV rho by runs; top-1 regret {fit['top1_regret']:.3g}", fontsize=9)
        ax.set_xlabel("runs fitted", fontsize=8)
        ax.set_ylabel("CV Spearman", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"RegMix fit, {fit['evaluation']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


if __name__ == "__main__":
    try:
        if len(sys.argv) == 5 and sys.argv[1] == "paper2csv":
            print(paper2csv(*sys.argv[2:]))
        elif len(sys.argv) == 4 and sys.argv[1] == "paper2csv":  # mixtures only
            print(paper2csv(sys.argv[2], None, sys.argv[3]))
        else:
            sys.exit(__doc__)
    except DataError as e:
        sys.exit(f"error: {e}")
