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

from data import DataError, atomic_write_json, read_mixture
from mixtures import mixture_columns
from regression import fitted_results, metrics, orient, read_fit, target_weights
from results import Results

EXTRAS = ("chosen", "natural", "uniform")  # trained at both scales beside the sweep's mixtures


def spread(y, k):
    """Indices of k runs spread evenly over the ranks of y (the lowest and the highest included)."""
    order = np.argsort(y, kind="stable")
    return order[np.unique(np.round(np.linspace(0, len(y) - 1, min(k, len(y)))).astype(int))]


def ladder_mixtures(args, domains):
    """The rows of OUT/ladder/mixtures.csv: K sweep runs spread over the measured target (their own
    run ids), then the chosen, natural and uniform mixtures (new ids); and {id: extra's name}."""
    fit = read_fit(args.out)
    res = fitted_results(fit, args.out)
    X, measured, _, _ = res.target_metrics(fit["target_weights"])
    runs = [r for r in res.runs if r in set(fit["runs"])]
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
    big = dict(model=args.ladder_model or args.model, steps=args.ladder_steps or args.steps)
    print(f"ladder: {len(rows) - len(named)} of the sweep's mixtures and the {', '.join(EXTRAS)} mixtures at "
          f"model {big['model']}" + (f", {big['steps']} steps" if big["steps"] else "") + f" -> {ladder}/")
    train_proxies(sub_args(args, base, {}), domains)  # the extras at the sweep's own scale
    train_proxies(sub_args(args, ladder, big), domains)
    fit = read_fit(args.out)
    small = fitted_results(fit, args.out)
    extra_small = Results(os.path.join(base, "results.csv"))
    return report(args.out, small, Results(os.path.join(ladder, "results.csv")), fit["target"], named, extra_small,
                  maximize=bool(fit.get("maximize")), labels=(args.model, big["model"] + (f" x {big['steps']} steps"
                                                                                        if big["steps"] else "")))


def sub_args(args, out, changes):
    """The proxy stage's arguments for one rung: another --out (and model and steps); worker
    processes get them too, appended to the command line (the last of a flag wins)."""
    sub = argparse.Namespace(**vars(args))
    sub.out = out
    extra = ["--out", out]
    for flag, value in changes.items():
        if value is not None:
            setattr(sub, flag, value)
            extra += [f"--{flag}", str(value)]
    sub.argv = list(args.argv) + extra
    return sub


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
    ys, yb = Ls @ w, Lb @ w
    ok = np.isfinite(ys) & np.isfinite(yb)
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
    result["verdict"] = (
        f"the {labels[0]} proxies rank mixtures as {labels[1]} does (Spearman {r:.2f} over {result['runs']} mixtures): "
        "the search on them can be trusted for this target" if r >= 0.9 else
        f"the {labels[0]} proxies rank mixtures only roughly as {labels[1]} does (Spearman {r:.2f}): the best few "
        "mixtures of the search may be in another order at the larger scale" if r >= 0.7 else
        f"the {labels[0]} proxies rank mixtures differently from {labels[1]} (Spearman {r:.2f}): a mixture searched on "
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


def stage_ladder_offline(args):
    """--stage ladder --results SMALL --ladder-results BIG: the report alone."""
    small = Results(args.results or os.path.join(args.out, "results.csv"), args.metrics)
    big = Results(args.ladder_results, args.ladder_metrics)
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
