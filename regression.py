"""
The regression half of RegMix: fit validation loss as a function of the mixture weights, then
search the fitted function for the mixture with the lowest predicted loss.

    fit       LightGBM (the paper's settings) and a linear baseline; held-out Spearman / Pearson /
              MSE / R^2 on --test or by 5-fold cross-validation      -> out/fit.json, fit.png
    simulate  score 1,000,000 Dirichlet(prior) mixtures, average the top 100 -> out/mixture.json

The paper's released data converts to this project's results schema with

    python regression.py paper2csv MIXTURE_CSV LOSS_CSV OUT_CSV
    python regression.py paper2csv MIXTURE_CSV OUT_MIXTURES_CSV      # mixtures only, for --stage proxy
"""
import csv
import json
import os
import sys

import numpy as np

from data import DataError, atomic_write_json, atomic_write_text, mixture_vector, read_mixture, write_csv

LGB_PARAMS = dict(objective="regression", boosting="gbdt", learning_rate=1e-2, seed=42, verbose=-1,
                  deterministic=True)  # the paper's settings; everything else LightGBM's default
LGB_ROUNDS = 1000


# -----------------------------------------------------------------------------
# results tables

class Results:
    """A results table: weight.<domain> columns (the mixture) and loss.<domain> columns."""

    def __init__(self, path):
        if not os.path.exists(path):
            raise DataError(f"{path}: no such results table; run --stage proxy first, or pass --results")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise DataError(f"{path}: the table has no rows")
        cols = list(rows[0])
        self.path = path
        self.domains = [c[len("weight."):] for c in cols if c.startswith("weight.")]
        self.loss_domains = [c[len("loss."):] for c in cols if c.startswith("loss.")]
        if not self.domains or not self.loss_domains:
            raise DataError(f"{path}: expected weight.<domain> and loss.<domain> columns "
                            "(the paper's layout converts with: python regression.py paper2csv ...)")
        self.rows = rows
        self.runs = [r.get("run", str(i)) for i, r in enumerate(rows)]
        self.X = self._floats("weight.", self.domains)
        bad = np.abs(self.X.sum(1) - 1) > 1e-2
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{path}: the weights of run {self.runs[i]} sum to {self.X[i].sum():.4f}, not 1")

    def _floats(self, prefix, names):
        try:
            return np.array([[float(r[prefix + d] or "nan") for d in names] for r in self.rows])
        except ValueError as e:
            raise DataError(f"{self.path}: a {prefix}* value is not a number ({e})") from None

    def target(self, domain):
        """(X, y, runs) of the usable rows: failed runs (NaN loss) are dropped with a warning."""
        if domain not in self.loss_domains:
            raise DataError(f"{self.path}: no column loss.{domain}; targets here: {', '.join(self.loss_domains)}")
        y = self._floats("loss.", [domain])[:, 0]
        failed = np.array([bool(r.get("failed")) for r in self.rows]) | ~np.isfinite(y)
        if failed.any():
            print(f"warning: {self.path}: {int(failed.sum())} failed run(s) left out", file=sys.stderr)
        return self.X[~failed], y[~failed], [r for r, f in zip(self.runs, failed) if not f]


def default_target(target, loss_domains, weight_domains):
    """--target; else pile_cc (the paper's); else the single eval-only domain (a loss without a
    weight); else None: the caller asks the user."""
    if target:
        return target
    if "pile_cc" in loss_domains:
        return "pile_cc"
    eval_only = [d for d in loss_domains if d not in weight_domains]
    return eval_only[0] if len(eval_only) == 1 else None


def paper2csv(mixture_csv, loss_csv, out_csv):
    """The paper's release (index, train_the_pile_<d> ...; index, metric/the_pile_<d>_val_loss ...)
    -> this project's schema (run, weight.<d> ..., loss.<d> ...), joined on index. Without a loss
    file: a mixtures.csv for --stage proxy, each row renormalised as the official loader does (the
    released weights are rounded to 0.001 and sum to 1 only within 0.004)."""
    def read(path):
        with open(path, newline="") as f:
            return {r["index"]: r for r in csv.DictReader(f)}
    mix = read(mixture_csv)
    loss = read(loss_csv) if loss_csv else {idx: {} for idx in mix}
    wcols = [c for c in next(iter(mix.values())) if c.startswith("train_the_pile_")]
    lcols = [c for c in next(iter(loss.values())) if c.startswith("metric/the_pile_") and c.endswith("_val_loss")]
    rows = []
    for idx in sorted(set(mix) & set(loss), key=int):
        row = {"run": idx}
        if loss_csv:
            row.update({"weight." + c[len("train_the_pile_"):]: mix[idx][c] for c in wcols})
        else:
            w = np.array([float(mix[idx][c]) for c in wcols])
            row.update({"weight." + c[len("train_the_pile_"):]: f"{x:.6g}" for c, x in zip(wcols, w / w.sum())})
        row.update({"loss." + c[len("metric/the_pile_"):-len("_val_loss")]: loss[idx][c] for c in lcols})
        rows.append(row)
    write_csv(out_csv, rows, list(rows[0]))
    return out_csv


# -----------------------------------------------------------------------------
# models and metrics

def fit_lightgbm(X, y, min_data_in_leaf=20):
    import lightgbm as lgb
    params = dict(LGB_PARAMS, min_data_in_leaf=min_data_in_leaf)  # 20 is LightGBM's default
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=LGB_ROUNDS)


def fit_linear(X, y):
    """Ordinary least squares on the raw weights, with an intercept: (coef, intercept)."""
    A = np.hstack([X, np.ones((len(X), 1))])
    sol = np.linalg.lstsq(A, y, rcond=None)[0]
    return sol[:-1], sol[-1]


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


def held_out(X, y, Xt=None, yt=None, folds=5, seed=42, min_data_in_leaf=20):
    """Held-out predictions of both models: on the test set, or out-of-fold by k-fold CV."""
    if Xt is not None:
        coef, b = fit_linear(X, y)
        return yt, fit_lightgbm(X, y, min_data_in_leaf).predict(Xt), Xt @ coef + b
    idx = np.random.default_rng(seed).permutation(len(y))
    p_lgb, p_lin = np.empty(len(y)), np.empty(len(y))
    for k in range(folds):
        test = idx[k::folds]
        train = np.setdiff1d(idx, test)
        coef, b = fit_linear(X[train], y[train])
        p_lgb[test] = fit_lightgbm(X[train], y[train], min_data_in_leaf).predict(X[test])
        p_lin[test] = X[test] @ coef + b
    return y, p_lgb, p_lin


def stage_fit(args, domains=None):
    out = args.out
    results = Results(args.results or os.path.join(out, "results.csv"))
    target = default_target(args.target, results.loss_domains, results.domains)
    if target is None:
        raise DataError(f"{results.path}: which loss to minimise? pass --target (one of {', '.join(results.loss_domains)})")
    X, y, _ = results.target(target)
    if len(y) < 10:
        raise DataError(f"{results.path}: {len(y)} usable runs; a fit needs at least 10 (run more proxies)")
    if np.ptp(y) == 0:
        raise DataError(f"{results.path}: loss.{target} is the same in every run; nothing to fit")
    leaf = args.min_data_in_leaf or (5 if args.model == "tiny" else 20)  # 20: LightGBM's default, the paper's
    if len(y) < 4 * leaf:  # a fold's trees then have room for a couple of leaves at most
        print(f"warning: {len(y)} runs for min_data_in_leaf {leaf}: LightGBM's trees can barely split; "
              "run more proxies or lower --min-data-in-leaf", file=sys.stderr)
    if args.test:
        test = Results(args.test)
        if test.domains != results.domains:
            raise DataError(f"--test {args.test}: its domains ({', '.join(test.domains)}) differ from "
                            f"{results.path}'s ({', '.join(results.domains)})")
        Xt, yt, _ = test.target(target)
        y_true, p_lgb, p_lin = held_out(X, y, Xt, yt, min_data_in_leaf=leaf)
        how = f"held-out table {args.test}"
    else:
        y_true, p_lgb, p_lin = held_out(X, y, min_data_in_leaf=leaf)
        how = "5-fold cross-validation"
    fit = dict(target=target, n_train=len(y), n_test=len(y_true), evaluation=how, domains=results.domains,
               min_data_in_leaf=leaf,
               lightgbm=metrics(y_true, p_lgb), linear=metrics(y_true, p_lin))

    # refit on every usable row: these are the models simulate searches
    booster = fit_lightgbm(X, y, leaf)
    atomic_write_text(os.path.join(out, "lightgbm.txt"), booster.model_to_string())
    coef, b = fit_linear(X, y)
    atomic_write_json(os.path.join(out, "linear.json"), dict(domains=results.domains, coef=coef.tolist(), intercept=b))
    fit["results"] = results.path
    atomic_write_json(os.path.join(out, "fit.json"), fit)

    print(f"fit: loss.{target} ~ {len(results.domains)} weights, {len(y)} runs; held out: {how} ({len(y_true)} runs)")
    print(f"{'model':<10}{'Spearman':>10}{'Pearson':>10}{'MSE':>12}{'R^2':>8}")
    for name in ("lightgbm", "linear"):
        m = fit[name]
        print(f"{name:<10}{m['spearman']:>10.4f}{m['pearson']:>10.4f}{m['mse']:>12.3g}{m['r2']:>8.3f}")
    plot_fit(os.path.join(out, "fit.png"), y_true, p_lgb, p_lin, target, fit)
    return fit


# -----------------------------------------------------------------------------
# scoring a million mixtures: LightGBM's forest, evaluated exactly, fast

class Forest:
    """LightGBM's trees as QuickScorer-style bit masks, scored by a small numba kernel.

    Each tree's leaves are numbered left to right; a split (feature f, threshold t) that sends x
    right rules out the leaves of its left subtree. Because only a few distinct thresholds exist
    per feature, x_f falls into one of a few bins, and for each (feature, bin) we precompute, per
    tree, the mask of leaves still possible. A row's exit leaf in every tree is then the lowest set
    bit of the AND of its features' masks: no branches, no pointer chasing. The sum runs over the
    trees in LightGBM's order, so scores equal Booster.predict (tested). Models this scheme does
    not cover (categorical splits, missing-value routing, > 64 leaves) fall back to Booster.predict."""

    def __init__(self, booster):
        self.booster = booster
        self.kernel_args = self._compile(booster.dump_model()) if _score is not None else None

    @staticmethod
    def _compile(dump):
        if dump.get("objective", "").split()[0] != "regression" or dump.get("average_output"):
            return None
        F, trees = dump["max_feature_idx"] + 1, dump["tree_info"]
        thresholds = [set() for _ in range(F)]
        splits, leaves = [], np.zeros((len(trees), 64))
        for t, info in enumerate(trees):
            nodes, values = [], []

            def walk(n):  # returns the bit mask of this subtree's leaves
                if "leaf_value" in n:
                    values.append(n["leaf_value"])
                    return 1 << (len(values) - 1)
                if n["decision_type"] != "<=" or n["missing_type"] == "Zero":
                    raise NotImplementedError
                left = walk(n["left_child"])
                right = walk(n["right_child"])
                nodes.append((n["split_feature"], n["threshold"], left))
                thresholds[n["split_feature"]].add(n["threshold"])
                return left | right
            try:
                walk(info["tree_structure"])
            except NotImplementedError:
                return None
            if len(values) > 64:
                return None
            splits.append(nodes)
            leaves[t, :len(values)] = values
        edges = [np.array(sorted(s), dtype=np.float64) for s in thresholds]
        edge_off = np.cumsum([0] + [len(e) for e in edges])
        table_off = np.cumsum([0] + [len(e) + 1 for e in edges])
        table = np.full((table_off[-1], len(trees)), np.iinfo(np.uint64).max, dtype=np.uint64)
        for t, nodes in enumerate(splits):
            for f, thr, left in nodes:
                k = int(np.searchsorted(edges[f], thr))
                # bin b counts the thresholds below x: for b > k, x > thr and the left leaves are out
                table[table_off[f] + k + 1:table_off[f + 1], t] &= ~np.uint64(left)
        used = np.array([f for f in range(F) if len(edges[f])], dtype=np.int64)
        return (np.concatenate(edges), edge_off, table, table_off, used, leaves)

    def predict(self, X, chunk=100_000, progress=False):
        from tqdm import tqdm
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty(len(X))
        for i in tqdm(range(0, len(X), chunk), desc="scoring", unit_scale=chunk, disable=not progress):
            if self.kernel_args is None:
                out[i:i + chunk] = self.booster.predict(X[i:i + chunk])
            else:
                _score(X[i:i + chunk], *self.kernel_args, _DEBRUIJN, out[i:i + chunk])
        return out


# lowest set bit -> its index, via a de Bruijn sequence (numba has no count-trailing-zeros)
_DEBRUIJN_MAGIC = 0x03F79D71B4CB0A89
_DEBRUIJN = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _DEBRUIJN[((1 << _i) * _DEBRUIJN_MAGIC & (2**64 - 1)) >> 58] = _i


def _score_kernel(X, edges, edge_off, table, table_off, used, leaves, debruijn, out):
    for i in numba.prange(X.shape[0]):
        mask = np.full(table.shape[1], np.uint64(0xFFFFFFFFFFFFFFFF))
        for f in used:
            lo, hi = edge_off[f], edge_off[f + 1]
            x = X[i, f]
            while lo < hi:  # how many of this feature's thresholds lie below x
                mid = (lo + hi) // 2
                if edges[mid] < x:
                    lo = mid + 1
                else:
                    hi = mid
            row = table[table_off[f] + lo - edge_off[f]]
            for t in range(mask.shape[0]):
                mask[t] &= row[t]
        s = 0.0
        for t in range(mask.shape[0]):  # in tree order, as LightGBM sums
            low = mask[t] & (~mask[t] + np.uint64(1))
            s += leaves[t, debruijn[(low * np.uint64(_DEBRUIJN_MAGIC)) >> np.uint64(58)]]
        out[i] = s


try:
    import numba
    _score = numba.njit(parallel=True, cache=True)(_score_kernel)
except ImportError:  # numba is in requirements.txt; without it we score with Booster.predict (slower)
    _score = None


def dirichlet(alpha, n, rng):
    g = rng.standard_gamma(np.broadcast_to(alpha, (n, len(alpha))))
    g = g[g.sum(1) > 0]
    return g / g.sum(1, keepdims=True)


def load_prior(args, domains, names):
    if args.prior:
        prior = read_mixture(args.prior)  # the same format: a JSON of domain -> share
    elif domains is not None:
        prior = domains.meta["prior"]
    else:
        raise DataError("no prior: pass --prior FILE (JSON domain -> share) or a --data folder with meta.json")
    missing = [d for d in names if d not in prior]
    if missing:
        raise DataError(f"the prior has no share for '{missing[0]}' (a domain of the fitted results)")
    p = np.array([float(prior[d]) for d in names])
    if not np.all(p > 0):
        raise DataError(f"the prior's share of '{names[int(np.argmin(p))]}' is not positive")
    return p / p.sum()


def stage_simulate(args, domains=None):
    import lightgbm as lgb
    out = args.out
    fit_path = os.path.join(out, "fit.json")
    if not os.path.exists(fit_path):
        raise DataError(f"{fit_path}: not found; run --stage fit first")
    with open(fit_path) as f:
        fit = json.load(f)
    names, target = fit["domains"], fit["target"]
    forest = Forest(lgb.Booster(model_file=os.path.join(out, "lightgbm.txt")))
    prior = load_prior(args, domains, names)
    rng = np.random.default_rng(args.seed)
    # candidates as in the authors' notebook: Dirichlet with alpha = the prior
    cand = dirichlet(prior, args.samples, rng)
    if args.bound:  # the availability bound of --stage mixtures: no domain beyond 15x its prior
        ok = (cand <= np.minimum(15 * prior, 1)).all(1)
        cand = cand[ok]
        print(f"bound: kept {len(cand):,} of {args.samples:,} candidates")
    if len(cand) < args.top_k:
        raise DataError(f"only {len(cand)} candidates for --top-k {args.top_k}; raise --samples")
    scores = forest.predict(cand, progress=True)
    best = np.argsort(scores, kind="stable")[:args.top_k]
    weights = cand[best].mean(0)

    results = Results(fit["results"])
    X, y, runs = results.target(target)
    best_run = int(np.argmin(y))
    compare = {"natural (prior)": prior, "uniform": np.full(len(names), 1 / len(names)), "best proxy run": X[best_run]}
    for item in args.compare:
        name, _, path = item.partition("=")
        if not path:
            raise DataError(f"--compare {item}: expected NAME=FILE.json")
        compare[name] = mixture_vector(read_mixture(path), names)
    predicted = forest.predict(np.vstack([weights] + list(compare.values())))
    result = dict(weights={d: float(w) for d, w in zip(names, weights)}, predicted_loss=float(predicted[0]),
                  n_samples=int(len(cand)), top_k=args.top_k, target=target,
                  baselines={k: dict(predicted_loss=float(p), weights={d: float(x) for d, x in zip(names, v)})
                             for (k, v), p in zip(compare.items(), predicted[1:])})
    result["baselines"]["best proxy run"].update(run=runs[best_run], measured_loss=float(y[best_run]))
    atomic_write_json(os.path.join(out, "mixture.json"), result)

    print(f"\nsimulate: {len(cand):,} Dirichlet(prior) candidates, mean of the top {args.top_k} -> {out}/mixture.json")
    cols = ["regmix"] + list(compare)
    print(f"{'domain':<20}" + "".join(f"{c[:16]:>18}" for c in cols))
    table = np.vstack([weights] + list(compare.values()))
    for j, d in enumerate(names):
        print(f"{d:<20}" + "".join(f"{table[i, j]:>18.4f}" for i in range(len(cols))))
    print(f"{'predicted ' + target:<20}"[:20] + "".join(f"{p:>18.4f}" for p in predicted))
    plot_mixture(os.path.join(out, "mixture.png"), names, weights, prior, target)
    return result


# -----------------------------------------------------------------------------
# the newcomer's summary, and the proof: train on the chosen and on the natural mixture

def summary(args, domains):
    with open(os.path.join(args.out, "fit.json")) as f:
        fit = json.load(f)
    with open(os.path.join(args.out, "mixture.json")) as f:
        mix = json.load(f)
    nat, uni = mix["baselines"]["natural (prior)"], mix["baselines"]["uniform"]
    print(f"\n=== RegMix on {args.data}: minimise {mix['target']} validation loss ===")
    print(f"{'domain':<14}{'regmix':>9}{'natural':>9}{'uniform':>9}")
    for d, w in mix["weights"].items():
        print(f"{d:<14}{w:>9.3f}{nat['weights'][d]:>9.3f}{uni['weights'][d]:>9.3f}")
    print(f"{'predicted loss':<14}{mix['predicted_loss']:>9.4f}{nat['predicted_loss']:>9.4f}{uni['predicted_loss']:>9.4f}")
    print(f"held-out Spearman rho ({fit['evaluation']}, {fit['n_test']} runs): "
          f"LightGBM {fit['lightgbm']['spearman']:.3f}, linear {fit['linear']['spearman']:.3f}")
    print(f"files: {args.out}/results.csv, fit.json, fit.png, mixture.json, mixture.png")
    print(f"next: python regmix.py --stage compare --model {args.model} --out {args.out}  "
          "(trains on the chosen and the natural mixture and measures both)")


def stage_compare(args, domains, train):
    """Train the same model for the same tokens on the chosen, natural and uniform mixtures."""
    path = os.path.join(args.out, "mixture.json")
    if not os.path.exists(path):
        raise DataError(f"{path}: not found; run --stage all (or fit and simulate) first")
    with open(path) as f:
        mix = json.load(f)
    target = mix["target"]
    runs = {"regmix": mix["weights"], "natural": domains.meta["prior"],
            "uniform": {d: 1.0 for d in domains.trainable}}
    measured = {}
    for name, w in runs.items():
        eval_path = os.path.join(args.out, f"compare_{name}", "eval.json")
        if not os.path.exists(eval_path):  # each finished run is kept; a rerun skips it
            args.resume = os.path.exists(os.path.join(args.out, f"compare_{name}", "ckpt.pt"))
            train(args, domains, weights=w, name=f"compare_{name}")
        with open(eval_path) as f:
            ev = json.load(f)
        if ev["weights"] != w:
            raise DataError(f"{eval_path} was trained on another mixture (an older simulate?); "
                            f"delete {os.path.dirname(eval_path)} to retrain it")
        measured[name] = ev["losses"]
    res = {n: dict(target_loss=m[target], mean_loss=float(np.mean(list(m.values())))) for n, m in measured.items()}
    atomic_write_json(os.path.join(args.out, "compare.json"), dict(target=target, runs=res))
    print(f"\nmeasured {target} validation loss after the same training ({args.out}/compare.json):")
    for n, r in res.items():
        print(f"  {n:<8} {r['target_loss']:.4f}")
    return res


# -----------------------------------------------------------------------------
# plots (matplotlib, headless)

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_fit(path, y, p_lgb, p_lin, target, fit):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, p_lin, s=10, alpha=0.6, label=f"linear (rho {fit['linear']['spearman']:.3f})")
    ax.scatter(y, p_lgb, s=10, alpha=0.8, label=f"LightGBM (rho {fit['lightgbm']['spearman']:.3f})")
    lo, hi = min(y.min(), p_lgb.min()), max(y.max(), p_lgb.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"measured {target} loss (held out)")
    ax.set_ylabel("predicted")
    ax.set_title(f"RegMix fit, {fit['evaluation']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_mixture(path, names, weights, prior, target):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names)), 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, prior, 0.4, label="natural (prior)")
    ax.bar(x + 0.2, weights, 0.4, label=f"RegMix (min {target} loss)")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("weight")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "paper2csv":
        print(paper2csv(*sys.argv[2:]))
    elif len(sys.argv) == 4 and sys.argv[1] == "paper2csv":  # mixtures only
        print(paper2csv(sys.argv[2], None, sys.argv[3]))
    else:
        sys.exit(__doc__)
