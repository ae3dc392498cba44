"""
How far do the proxies speak for the target? RegMix assumes that mixtures rank the same for a
small proxy as for the large model. The ladder measures it: K of the sweep's mixtures, and the
chosen, natural and uniform mixtures, trained again at a second scale, and the rank correlation
between the two scales, for the target and for every domain.

    python regmix.py --stage ladder [--ladder-runs 16] [--ladder-model PRESET] [--ladder-steps N]
        after a sweep, fit and simulate: trains OUT/ladder/ (the second scale) and OUT/ladder/base/
        (the chosen, natural and uniform mixtures at the sweep's own scale), with the proxy
        stage's machinery (run files, resume, --shard, torchrun, workers)
    python regmix.py --stage ladder --results SMALL.csv --ladder-results BIG.csv
        the same report for any two tables that share mixtures (joined on run)

Writes OUT/ladder.json and OUT/ladder.png.
"""
import argparse
import os

import numpy as np

from data import DataError, atomic_write_json, read_csv, read_mixture
from mixtures import mixture_columns
from regression import fitted_results, metrics, orient, read_fit, target_weights, trust_of
from results import Results

EXTRAS = ("chosen", "natural", "uniform")  # trained at both scales beside the sweep's mixtures
MIN_VERDICT = 8  # fewer mixtures at both scales get no verdict: 3 in the same order happen by chance 1 time in 6


def spread(y, k):
    """Indices of k runs spread evenly over the ranks of y (the lowest and the highest included)."""
    order = np.argsort(y, kind="stable")
    return order[np.unique(np.round(np.linspace(0, len(y) - 1, min(k, len(y)))).astype(int))]


def ladder_mixtures(args, domains):
    """The rows of OUT/ladder/mixtures.csv: K sweep runs spread over the measured target (their own
    run ids), then the chosen, natural and uniform mixtures (new ids); and {id: extra's name}."""
    fit = read_fit(args.out)
    res = fitted_results(fit, args.out)
    X, measured, _, runs = res.target_metrics(fit["target_weights"])  # (failed runs left out, as fit left them)
    y = orient(measured, fit.get("ceiling"))  # lower is better
    names = domains.trainable
    if sorted(res.domains) != sorted(names):
        raise DataError(f"{args.out}/fit.json was fitted on domains {', '.join(res.domains)}, not on {args.data}'s")
    picked = spread(y, args.ladder_runs)
    chosen_path = os.path.join(args.out, "mixture.json")
    if not os.path.exists(chosen_path):
        raise DataError(f"{chosen_path}: not found; run --stage simulate first (the ladder also trains its mixture)")
    chosen = read_mixture(chosen_path)
    prior = domains.meta["prior"]
    extras = {"chosen": [chosen.get(d, 0.0) for d in names], "natural": [prior[d] for d in names],
              "uniform": [1.0] * len(names)}
    rows = [{"run": runs[i], "round": "1", **{f"weight.{d}": f"{X[i, res.domains.index(d)]:.6g}" for d in names}}
            for i in picked]
    ids = [int(r) for r in res.runs if r.lstrip("-").isdigit()]
    first = max(ids, default=-1) + 1
    named = {}
    for j, (name, w) in enumerate(extras.items()):
        w = np.array(w, float) / np.sum(w)
        rows.append({"run": str(first + j), "round": "1", **{f"weight.{d}": f"{x:.6g}" for d, x in zip(names, w)}})
        named[str(first + j)] = name
    return rows, named


def stage_ladder(args, domains, train_proxies):
    """Train the ladder (train_proxies: regmix.stage_proxy), then report it."""
    from data import write_csv
    if args.ladder_model is None and args.ladder_steps is None:
        raise DataError("--stage ladder: say what the second scale is: --ladder-model PRESET and/or --ladder-steps N")
    if args.ladder_runs < 3:
        raise DataError(f"--ladder-runs {args.ladder_runs}: at least 3 mixtures to rank")
    rows, named = ladder_mixtures(args, domains)
    ladder, base = os.path.join(args.out, "ladder"), os.path.join(args.out, "ladder", "base")
    cols = mixture_columns(domains.trainable)
    for folder, keep in ((ladder, rows), (base, [r for r in rows if r["run"] in named])):
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "mixtures.csv")
        if not os.path.exists(path):  # an existing one is a killed ladder's: it resumes as written
            write_csv(path, keep, cols)
        check_ladder_mixtures(path, keep, cols, ladder)
    big = dict(model=args.ladder_model or args.model, steps=args.ladder_steps or args.steps)
    print(f"ladder: {len(rows) - len(named)} of the sweep's mixtures and the {', '.join(EXTRAS)} mixtures at "
          f"model {big['model']}" + (f", {big['steps']} steps" if big["steps"] else "") + f" -> {ladder}/")
    train_proxies(sub_args(args, base, {}, same_as=args.out), domains)  # the extras at the sweep's own scale
    train_proxies(sub_args(args, ladder, big), domains)
    fit = read_fit(args.out)
    small = fitted_results(fit, args.out)
    extra_small = Results(os.path.join(base, "results.csv"))
    return report(args.out, small, Results(os.path.join(ladder, "results.csv")), fit["target"], named, extra_small,
                  maximize=bool(fit.get("maximize")), labels=(args.model, big["model"] + (f" x {big['steps']} steps"
                                                                                        if big["steps"] else "")))


def sub_args(args, out, changes, same_as=None):
    """The proxy stage's arguments for one rung: another --out (and model and steps); worker
    processes get them too, appended to the command line (the last of a flag wins). A rerun with
    other settings is refused naming the ladder's own flags (sweep.check_finished); same_as: the
    sweep whose runs this rung must match (the extras at the sweep's scale)."""
    sub = argparse.Namespace(**vars(args))
    sub.out = out
    extra = ["--out", out]
    for flag, value in changes.items():
        if value is not None:
            setattr(sub, flag, value)
            extra += [f"--{flag}", str(value)]
    sub.argv = list(args.argv) + extra
    sub.setting_flags = {flag: f"--ladder-{flag}" for flag, value in changes.items() if value is not None}
    sub.rerun_remedy = f"pass {{flag}} {{old}} to continue the ladder, or delete {out} to train it again at these settings"
    sub.same_as = same_as
    return sub


def check_ladder_mixtures(path, rows, cols, folder):
    """A ladder/mixtures.csv already there is a killed ladder's, resumed as written, only if it holds
    the mixtures this fit and simulate give: after a new simulate (or fit) the old file would train
    the previous mixture and report it as the chosen one."""
    have = [{c: r.get(c) for c in cols} for r in read_csv(path)]
    if have != [{c: r.get(c) for c in cols} for r in rows]:
        raise DataError(f"{path}: made for another fit.json, mixture.json or --ladder-runs (a fit or simulate since "
                        f"the ladder began?); delete {folder} to train the ladder for the current ones, or use another "
                        "--out")


def report(out, small, big, target, named=None, extra_small=None, maximize=False, labels=("small", "large")):
    """Rank correlations between two tables of the same mixtures (joined on run), ladder.json and
    ladder.png. named: {run: 'chosen' | 'natural' | 'uniform'}, measured at the small scale in
    extra_small."""
    named = named or {}
    rows_small = dict(zip(small.runs, range(len(small.runs))))
    rows_extra = dict(zip(extra_small.runs, range(len(extra_small.runs)))) if extra_small else {}
    common = [r for r in big.runs if r in rows_small or r in rows_extra]
    if len(common) < 3:
        raise DataError(f"{big.path} shares {len(common)} run(s) with {small.path}: at least 3 are needed (joined on run)")
    domains = [d for d in small.loss_domains if d in big.loss_domains]
    spec, tw = target_weights(target, domains, small.domains, small.path)
    if spec is None:
        raise DataError(f"which loss to compare? pass --target (one of {', '.join(domains)}, or all)")

    def table(res, runs, other=None):
        """Each run's losses (runs x domains) and weights, from res (or other, for the extras)."""
        L, W = [], []
        for r in runs:
            src = res if r in res.runs else other
            i = src.runs.index(r)
            L.append([float(src.rows[i][f"loss.{d}"] or "nan") for d in domains])
            W.append([src.X[i][src.domains.index(d)] if d in src.domains else np.nan for d in big.domains])
        return np.array(L), np.array(W)

    Ls, Ws = table(small, common, extra_small)
    Lb, Wb = table(big, common)
    off = np.nanmax(np.abs(Ws - Wb), axis=1)
    if (off > 2e-3).any():
        r = common[int(np.argmax(off))]
        raise DataError(f"run {r}: its weights differ between {small.path} and {big.path} (by up to {off.max():.3g}): "
                        "not the same mixture; the tables must share run ids and mixtures")
    w = np.array([tw.get(d, 0.0) for d in domains])
    with np.errstate(over="ignore", invalid="ignore"):
        ys, yb = Ls @ w, Lb @ w
    ok = np.isfinite(ys) & np.isfinite(yb)
    check_rankable(ys, yb, ok, spec, small.path, big.path)
    rho = {"target": metrics(ys[ok], yb[ok])["spearman"]}
    for j, d in enumerate(domains):
        good = np.isfinite(Ls[:, j]) & np.isfinite(Lb[:, j])
        if good.sum() >= 3 and np.ptp(Ls[good, j]) > 0 and np.ptp(Lb[good, j]) > 0:
            rho[d] = metrics(Ls[good, j], Lb[good, j])["spearman"]
    result = dict(runs=int(ok.sum()), target=spec, scales=list(labels), spearman=rho, maximize=maximize)
    sign = -1 if maximize else 1  # rank 1 is the best: the lowest loss, or the highest score

    def rank(v, i):
        return int(1 + np.sum(sign * v[ok] < sign * v[i]))

    ids = {name: common.index(r) for r, name in named.items() if r in common}
    if {"chosen", "natural"} <= set(ids):
        c, n = ids["chosen"], ids["natural"]
        result["chosen"] = {labels[0]: dict(rank=rank(ys, c), gain_over_natural=float(sign * (ys[n] - ys[c]))),
                            labels[1]: dict(rank=rank(yb, c), gain_over_natural=float(sign * (yb[n] - yb[c])))}
    r = rho["target"]
    lo, hi = result["interval"] = trust_of(ys[ok], yb[ok], seed=0)["interval"]  # the runs resampled
    how = f"Spearman {r:.2f}, 95% interval {lo:.2f}..{hi:.2f}, over {result['runs']} mixtures"
    result["verdict"] = (
        f"{result['runs']} mixtures at both scales are too few to judge ({how}): at least {MIN_VERDICT}; train more "
        "(--ladder-runs) or share more runs between the tables" if result["runs"] < MIN_VERDICT else
        f"the {labels[0]} proxies rank mixtures as {labels[1]} does ({how}): "
        "the search on them can be trusted for this target" if r >= 0.9 and lo >= 0.7 else
        f"the {labels[0]} proxies rank mixtures only roughly as {labels[1]} does ({how}): the best few "
        "mixtures of the search may be in another order at the larger scale" if r >= 0.7 else
        f"the {labels[0]} proxies rank mixtures differently from {labels[1]} ({how}): a mixture searched on "
        "them is a guess for the larger scale; try a larger or deeper proxy (--model 1m-deep)")
    atomic_write_json(os.path.join(out, "ladder.json"), result)
    plot(os.path.join(out, "ladder.png"), ys[ok], yb[ok], [named.get(common[i], "") for i in np.flatnonzero(ok)],
         spec, labels, r)
    print(f"ladder: {spec}, {result['runs']} mixtures at both scales ({labels[0]} -> {labels[1]})")
    print(f"{'':<22}{'Spearman':>9}")
    for d, v in rho.items():
        print(f"{d:<22}{v:>9.3f}")
    if "chosen" in result:
        for label, v in result["chosen"].items():
            print(f"chosen mixture at {label}: rank {v['rank']} of {result['runs']}, {v['gain_over_natural']:+.4f} over natural")
    print(f"verdict: {result['verdict']}")
    print(f"-> {os.path.join(out, 'ladder.json')}, ladder.png")
    return result


def check_rankable(ys, yb, ok, spec, small, big):
    """Spearman needs 3 mixtures with the target at both scales, and values that differ: an all-NaN
    or constant table (failed runs, a placeholder column) has no ranking to compare (it would print
    'Spearman nan' and advise a deeper proxy)."""
    if ok.sum() < 3:
        path, n = (big, int(np.isfinite(yb).sum())) if np.isfinite(yb).sum() < np.isfinite(ys).sum() else \
            (small, int(np.isfinite(ys).sum()))
        raise DataError(f"{path}: only {n} of the {len(ys)} shared mixtures have a {spec} (the others are empty or "
                        "not finite: failed runs?); at least 3 at both scales are needed to rank them")
    for path, v in ((big, yb[ok]), (small, ys[ok])):
        if np.ptp(v) == 0:
            raise DataError(f"{path}: {spec} is {v[0]:g} for every shared mixture: nothing to rank (runs that "
                            "failed alike, or a placeholder column)")


def stage_ladder_offline(args):
    """--stage ladder --results SMALL --ladder-results BIG: the report alone."""
    small = Results(args.results or os.path.join(args.out, "results.csv"), args.metrics)
    big = Results(args.ladder_results, args.ladder_metrics, flags=("--ladder-results", "--ladder-metrics"))
    return report(args.out, small, big, args.target, maximize=args.maximize,
                  labels=(os.path.basename(small.path), os.path.basename(big.path)))


def plot(path, ys, yb, names, target, labels, rho):
    from regression import _plt
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    plain = [i for i, n in enumerate(names) if not n]
    ax.scatter(ys[plain], yb[plain], s=14, color="0.5", label="sweep mixtures")
    for name, color in zip(EXTRAS, ("C3", "C0", "C2")):
        idx = [i for i, n in enumerate(names) if n == name]
        if idx:
            ax.scatter(ys[idx], yb[idx], s=40, color=color, label=name)
    ax.set_xlabel(f"{target} at {labels[0]}")
    ax.set_ylabel(f"{target} at {labels[1]}")
    ax.set_title(f"Spearman {rho:.3f}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
