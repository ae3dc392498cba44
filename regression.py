"""
The regression half of RegMix: fit validation loss as a function of the mixture weights (search.py
then searches the fitted function).

    fit       every regressor of regressors.py, judged on the same held-out runs (--test, or
              5-fold cross-validation); the one to trust chosen by cross-validation on the
              training runs (and how far it can be trusted); each refit on every run
                                                                   -> out/fit.json, fit.png, regressors/

The tables fitted are read by results.py (ours, and other tools' layouts).

The paper's released data converts to this project's results schema with

    python regression.py paper2csv MIXTURE_CSV LOSS_CSV OUT_CSV
    python regression.py paper2csv MIXTURE_CSV OUT_MIXTURES_CSV      # mixtures only, for --stage proxy
"""
import os
import sys
import time

import numpy as np

import regressors
import reuse
from data import DataError, atomic_write_json, read_csv, read_json
from results import Results, describe_all, paper2csv, target_weights

FOLDS = 5
MIN_RUNS = 10          # fewer runs than this are not fitted
LOW_RHO = 0.5          # a chosen fit below this cross-validated Spearman is reported as untrustworthy
LARGE_FIT = 200_000    # runs x domains from which fit says what it is doing as it goes (minutes of work)
CURVE_FITS = 5         # the learning curve's cost at most (its points' folds together), in regressors.FIT_BUDGETs


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


def predictions(singles, X, y, Xt=None, leaf=None, seed=42, members=regressors.ENSEMBLE, Y=None, verbose=False):
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
                if verbose:  # (a large fit's folds take minutes)
                    progress(f"cross-validation of {', '.join(singles)} on {len(y):,} runs: fold {k + 1} of "
                             f"{FOLDS} done", X)
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
    curve, spent = [], 0
    rng = np.random.default_rng([seed, 7])
    singles = list(members) if name == "ensemble" else [name]
    for frac in (0.25, 0.5, 0.75):
        n = int(round(frac * len(y)))
        if n < MIN_RUNS or any(regressors.max_runs(m, n, X.shape[1], Y.shape[1]) < n for m in singles):
            continue  # (a regressor at its cut of the runs: no news)
        spent += FOLDS * sum(regressors.fit_cost(m, n, X.shape[1], Y.shape[1]) for m in singles)
        if spent > CURVE_FITS * regressors.FIT_BUDGET:  # a large fit's curve: its smaller points only (say_budget)
            break
        sub = rng.permutation(len(y))[:n]
        leaf = regressors.leaf_size(n, min_data_in_leaf, X.shape[1])
        pred = predictions(singles, X[sub], y[sub], leaf=leaf, members=members if name == "ensemble" else [], Y=Y[sub])
        curve.append(dict(runs=n, spearman=metrics(y[sub], pred[name])["spearman"]))
    if rho_all is not None:
        curve.append(dict(runs=len(y), spearman=float(rho_all)))
    return curve


def progress(message, X):
    """A line of what a large fit (LARGE_FIT) is doing, with the time: it runs for minutes."""
    if X.size >= LARGE_FIT:
        print(f"  {time.strftime('%H:%M:%S')} {message}", flush=True)


def say_budget(singles, X, Y):
    """Before a large fit: what it will do, and which regressors train on a random subset of the runs
    (regressors.FIT_BUDGET: their cost grows faster than the runs, the gp's as runs^3), once."""
    n, D = X.shape
    cut = {s: regressors.max_runs(s, n, D, Y.shape[1]) for s in singles}
    cut = {s: m for s, m in cut.items() if m < n}
    if X.size < LARGE_FIT and not cut:
        return
    print(f"fit: {n:,} runs x {D} domains, {', '.join(singles)}: {FOLDS}-fold cross-validation, then each refit on "
          "every run" + (("; " + ", ".join(f"{s} on a random {m:,}" for s, m in cut.items()) + " of them (their cost "
                          "grows faster than the runs, the gp's as runs^3: on all, hours; regressors.FIT_BUDGET), and "
                          "no learning-curve point above that") if cut else "")
          + "; the learning curve only as far as regression.CURVE_FITS allows", flush=True)


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
    check_regressor_name(path, state, name)
    if target is not None and state.pop("fitted_for", None) != target:
        raise DataError(f"{path} was fitted for another target than fit.json's ({target['target']}); "
                        f"run --stage fit --regressor {name} (or auto) for this target, or fit again")
    state.pop("fitted_for", None)
    if name == "ensemble":
        return regressors.Ensemble([load_regressor(out, m, target) for m in state["members"]])
    return regressors.from_state(state)


def check_regressor_name(path, state, name):
    """A regressor's file holds its own name: lightgbm.json copied over gp.json must not be searched
    and labelled gp."""
    own = state.get("name") if isinstance(state, dict) else None
    if own != name:
        raise DataError(f"{path}: holds " + (f"a {own} regressor" if isinstance(own, str) else "no regressor of fit")
                        + f", not {name} (copied or renamed?); run --stage fit --regressor {name} (or auto) again")


def fitted_for(fit):
    """What a saved regressor records of the target it was fitted for."""
    return dict(target=fit["target"], target_weights=fit["target_weights"], maximize=bool(fit.get("maximize")),
                runs=len(fit["runs"]))


def stage_fit(args, domains=None):
    """The paper's step 4: regress the target's loss on the mixture weights. Every candidate
    regressor is judged on the same held-out runs (5-fold cross-validation, or --test), the one with
    the highest cross-validated Spearman is chosen (the paper's is LightGBM), and each is refitted on
    every run for simulate to search. Writes OUT/fit.json, fit.png and OUT/regressors/."""
    results, spec, tw = read_target(args)
    X, y, L, runs_used = results.target_metrics(tw)  # weights, the target's loss, its metrics, of every usable run
    check_runs(results, y, spec, args.out)
    ceiling = float(ceiling_above(y)) if args.maximize else None
    measured, y = y, orient(y, ceiling)  # what was measured; what is fitted (lower is better)
    leaf = regressors.leaf_size(len(y), args.min_data_in_leaf, len(results.domains))
    warn_small_leaf(args, y, leaf)
    Xt, y_true = test_table(args, results, tw)
    Y = metric_columns(L, tw, args.maximize)  # the target's metrics one column each, for the per-metric regressors
    singles = needed(args.regressor, len(tw) > 1)
    cv, members = cross_validate(args, singles, X, y, leaf, Y, len(tw) > 1)  # out-of-fold predictions
    if Xt is not None:
        held, how = predictions(singles, X, y, Xt, leaf=leaf, members=members, Y=Y), f"held-out table {args.test}"
    else:
        y_true, held, how = measured, cv, f"{FOLDS}-fold cross-validation"
    held = {n: orient(p, ceiling) for n, p in held.items()}  # predictions of the target as given
    scores = {n: metrics(y_true, p) for n, p in held.items()}
    cv_rho = {n: metrics(y, p)["spearman"] for n, p in cv.items()}
    chosen = choose(cv_rho) if args.regressor == "auto" else args.regressor
    fit = fit_record(args, results, spec, tw, y, measured, y_true, how, leaf, scores, cv_rho, chosen, cv, X, Y, members,
                     ceiling, "ensemble" in held)
    refit_all(args.out, singles, members if "ensemble" in held else None, X, y, leaf, Y, fit)  # what simulate searches
    atomic_write_json(os.path.join(args.out, "fit.json"), fit)
    report_fit(args, fit, scores, y_true, measured, how, ceiling)
    plot_fit(os.path.join(args.out, "fit.png"), y_true, held, spec, fit, None if args.test else run_rounds(args.out, runs_used))
    return fit


# -----------------------------------------------------------------------------
# the fit's pieces beyond the paper: the table and target, checks, the ensemble, trust, the report

def read_target(args):
    """The results table (results.py: ours, or another tool's) and --target as weights of its losses
    (pile_cc, else the one eval-only domain; results.py: target_weights); with mixture reuse, the
    reused domains' columns summed into their virtual domain's (reuse.py)."""
    results = Results(args.results or os.path.join(args.out, "results.csv"), args.metrics)
    spec, tw = target_weights(args.target, results.loss_domains, results.domains, results.path)
    if spec is None:
        raise DataError(f"{results.path}: which loss to minimise? pass --target (one of {', '.join(results.loss_domains)}, "
                        "several as a,b or a=0.7,b=0.3, or all)")
    if spec.split(",")[0] == "all":  # say what "all" averaged: every metric of the table, each named
        describe_all(spec, tw, results)
    grouping = reuse.of_sweep(args, results.domains)  # a reuse sweep's columns (reuse.py), or None
    if grouping is not None:
        results.collapse(grouping)
        print(f"reuse: fitted on {len(results.domains)} columns ({', '.join(grouping.groups)} for the reused domains, "
              f"at their old ratios)")
    return results, spec, tw


def check_runs(results, y, spec, out):
    """Enough runs, a target that varies, and a folder for the regressors."""
    regs = os.path.join(out, "regressors")
    if os.path.exists(regs) and not os.path.isdir(regs):
        raise DataError(f"{regs}: a file where fit keeps its regressors (a folder); move it away")
    os.makedirs(regs, exist_ok=True)
    if len(y) < MIN_RUNS:
        raise DataError(f"{results.path}: {len(y)} usable runs; a fit needs at least {MIN_RUNS} (run more proxies)")
    if np.ptp(y) == 0:
        raise DataError(f"{results.path}: loss.{spec} is the same in every run; nothing to fit")


def warn_small_leaf(args, y, leaf):
    if len(y) < 4 * leaf and args.regressor in ("auto", "lightgbm", "ensemble"):
        print(f"warning: {len(y)} runs for min_data_in_leaf {leaf}: LightGBM's trees can barely split; "
              "run more proxies or lower --min-data-in-leaf", file=sys.stderr)


def test_table(args, results, tw):
    """--test: a held-out table's weights and target (None, None without it)."""
    if not args.test:
        return None, None
    test = Results(args.test, flags=("--test", None))
    if test.domains != results.domains:
        raise DataError(f"--test {args.test}: its domains ({', '.join(test.domains)}) differ from "
                        f"{results.path}'s ({', '.join(results.domains)})")
    Xt, y_true, _ = test.target(tw)
    return Xt, y_true


def cross_validate(args, singles, X, y, leaf, Y, several):
    """Out-of-fold predictions of every candidate, and the ensemble's members: those whose
    cross-validated R^2 is at least 0 (ensemble_members); the ensemble's prediction is their mean."""
    candidates = regressors.ensemble_names(several)
    say_budget(singles, X, Y)
    cv = predictions(singles, X, y, leaf=leaf, members=candidates, Y=Y, verbose=True)
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
    return cv, members


def fit_record(args, results, spec, tw, y, measured, y_true, how, leaf, scores, cv_rho, chosen, cv, X, Y, members,
               ceiling, ensemble):
    """fit.json (docs/stages.md lists its fields): the scores, the choice, and how far it can be
    trusted (trust_of), whether more proxies would help (learning_curve, top1_regret)."""
    trust = trust_of(y, cv[chosen], args.seed)
    # would more proxies help? (one forest per metric is costly to refit: past 16 metrics the curve is LightGBM's)
    curve_of = chosen if chosen != "per_metric_lightgbm" or Y.shape[1] <= 16 else "lightgbm"
    progress(f"learning curve of {curve_of} (25, 50, 75% of the runs)", X)
    curve = dict(top1_regret=top1_regret(y, cv[chosen]), learning_curve_of=curve_of,
                 learning_curve=learning_curve(curve_of, X, y, Y, args.min_data_in_leaf, members, cv_rho.get(curve_of)))
    # R^2 and MSE compare levels: on a held-out table of another scale (1M proxies -> 60M models) the
    # losses sit elsewhere (mean shifted by more than 2 sd of the training runs') and only ranks compare
    levels = not args.test or abs(y_true.mean() - measured.mean()) <= 2 * measured.std()
    fit = dict(target=spec, target_weights=tw, n_train=len(y), n_test=len(y_true), evaluation=how,
               cv_rmse=float(np.sqrt(np.mean((y - cv[chosen]) ** 2))),  # the fit's own error, out of fold
               cv_predictions=[float(v) for v in cv[chosen]],  # each run's, out of fold: simulate's local errors
               domains=results.domains, min_data_in_leaf=leaf, regressors=scores, cv_spearman=cv_rho, chosen=chosen,
               results=results.path, metrics=args.metrics, runs=results.runs,
               tables=table_paths(args.out, results.path, args.metrics), maximize=bool(args.maximize), ceiling=ceiling,
               trust=trust, levels_comparable=bool(levels), **curve)
    if ensemble:
        fit["ensemble_members"] = members
    if getattr(results, "reuse", None) is not None:  # the grouping of a reuse sweep, for simulate
        fit["reuse"] = results.reuse.record()
    fit.update({n: scores[n] for n in ("lightgbm", "linear") if n in scores})  # the keys fit.json always had
    return fit


def refit_all(out, singles, members, X, y, leaf, Y, fit):
    """Every regressor refitted on every usable run and saved (and the ensemble of `members`)."""
    progress(f"refitting {', '.join(singles)} on every run", X)
    with regressors.one_blas_thread():
        models = {n: regressors.fit(n, X, y, leaf, Y=Y) for n in singles}
    for m in models.values():
        save_regressor(out, m, fitted_for(fit))
    if members is not None:
        save_regressor(out, regressors.Ensemble([models[m] for m in members]), fitted_for(fit))


def report_fit(args, fit, scores, y_true, measured, how, ceiling):
    spec, chosen, cv_rho, levels = fit["target"], fit["chosen"], fit["cv_spearman"], fit["levels_comparable"]
    print(f"fit: {spec} ({'higher' if args.maximize else 'lower'} is better) ~ {len(fit['domains'])} weights, "
          f"{fit['n_train']} runs; held out: {how} ({len(y_true)} runs)")
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
    print(f"{chosen}: out-of-fold top-1 regret {fit['top1_regret']:.4g} (the measured {spec} of each fold's predicted "
          f"best run minus its best); CV rho by runs ({fit['learning_curve_of']}): "
          + ", ".join(f"{c['runs']} {c['spearman']:.3f}" for c in fit["learning_curve"]))
    if fit["trust"]["warning"]:
        print(f"warning: {fit['trust']['warning']}")


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
    results = Results(path(tables.get("results"), fit["results"]), path(tables.get("metrics"), fit.get("metrics")))
    return results.collapse(reuse.Reuse(**fit["reuse"])) if fit.get("reuse") else results


def read_fit(out):
    path = os.path.join(out, "fit.json")
    if not os.path.exists(path):
        raise DataError(f"{path}: not found; run --stage fit first")
    return read_json(path, "run --stage fit again")


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
