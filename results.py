"""
Results tables: each proxy run's mixture and what was measured, whoever made the sweep, and the
target to fit in them.

    ours        run, weight.<domain> ..., loss.<domain> ...     (regmix.py --stage proxy: results.csv)
    one table   train_the_<domain> weights, other numeric columns metrics   (CLIMB's sweeps)
    two tables  <domain> weight columns + --metrics FILE, joined on run      (Olmix's ratios / metrics)
    the paper   train_the_pile_<domain> + --metrics with metric/the_pile_<domain>_val_loss, joined on index
"""
import os
import sys
import warnings

import numpy as np

from data import DataError, read_csv, write_csv

# never a weight or a metric (step, epoch: where in training another tool measured)
META_COLUMNS = {"", "run", "name", "index", "seed", "tokens", "seconds", "failed", "step", "epoch",
                "startup_seconds", "train_tokens_per_s"}


def check_one_setting(path, rows, remedy="move the run files of one setting to an --out of their own, and delete "
                                          "this table (--stage collect rebuilds it from the run files)"):
    """results.csv holds runs of one setting: a sweep continued with other flags before they were
    checked (or shards of a job array given other ones) would be fitted as one. The finished runs
    are compared by their recorded settings (train.run_settings) where both have them, else by
    their tokens (a table of ours given to fit --results is checked the same way); failed runs
    stopped early and are left aside."""
    done = [r for r in rows if not r.get("failed")]
    for r in done[1:]:
        a, b = done[0].get("settings"), r.get("settings")
        differ = [k for k in a if k in b and a[k] != b[k]] if isinstance(a, dict) and isinstance(b, dict) else []
        tokens = [str(x.get("tokens", "")) for x in (done[0], r)]
        if differ or (all(t.isdigit() for t in tokens) and int(tokens[0]) != int(tokens[1])):
            k = differ[0] if differ else None
            what = ("other data" if k == "data" else f"--{k.replace('_', '-')} {a[k]} and {b[k]}" if k
                    else f"{int(tokens[0]):,} and {int(tokens[1]):,} tokens")
            raise DataError(f"{path}: runs {done[0]['run']} and {r['run']} were trained at other settings ({what}); a fit "
                            f"of both would mix them: {remedy}")


class Results:
    """A table of proxy runs: each run's mixture and what was measured. Three layouts are read:

    ours         run, weight.<domain> ..., loss.<domain> ... (results.csv)
    one table    train_the_<domain> weights, every other numeric column a metric (CLIMB's sweeps,
                 the paper's mixture files)
    two tables   <domain> weight columns (Olmix's ratios.csv; the paper's train_the_pile_<domain>
                 mixture files) and --metrics FILE with the metrics (Olmix's metrics.csv; the
                 paper's loss files), joined on run, else on index; columns run, name, index and an
                 unnamed index are metadata

    Metrics keep their names as the file spells them (arc_easy:rc::olmes, valid_avg); inside they
    are loss.<metric> like our validation losses. Weights are renormalised where a row sums to 1
    within 0.02 (rounded shares), an error otherwise."""

    def __init__(self, path, metrics=None, flags=("--results", "--metrics")):
        rows = self._read(path, flags[0])
        cols = list(rows[0])
        self.path = path
        if any(c.startswith("weight.") for c in cols):
            if metrics:
                raise DataError(f"{flags[1]} {metrics}: {path} already holds loss.<domain> columns; leave {flags[1]} out")
            check_one_setting(path, rows, "keep the rows of one setting (one value in its tokens column), or fit the runs "
                                          "of each in a sweep folder of their own")
        else:
            found = self._read(metrics, flags[1]) if metrics else None
            if found is None and not any(c.startswith("train_the_") for c in cols):
                raise DataError(f"{path}: no weight.<domain> or train_the_<domain> columns. If it holds one weight "
                                "column per domain (as Olmix's ratios.csv), pass the measurements with --metrics FILE "
                                "(joined on a 'run' or 'index' column); our own layout is run, weight.<domain>..., "
                                "loss.<domain>...")
            rows = self._other_layout(path, rows, metrics, found, flags)
        cols = list(rows[0])
        self.domains = [c[len("weight."):] for c in cols if c.startswith("weight.")]
        self.loss_domains = [c[len("loss."):] for c in cols if c.startswith("loss.")]
        if not self.domains or not self.loss_domains:
            raise DataError(f"{path}: expected weight.<domain> and loss.<domain> columns (or another tool's layout, "
                            "see docs/fit.md); the paper's release converts with: python regression.py paper2csv ...")
        self.rows = rows
        self.runs = [r.get("run", str(i)) for i, r in enumerate(rows)]
        seen = {}
        for i, run in enumerate(self.runs):
            if run in seen:  # fitted twice, it would count double (and with two losses, contradict itself)
                raise DataError(f"{path}: run {run} appears twice (rows {seen[run] + 1} and {i + 1}); keep one row per run")
            seen[run] = i
        self.X = self._floats("weight.", self.domains)
        if not np.isfinite(self.X).all():
            i, j = np.argwhere(~np.isfinite(self.X))[0]
            raise DataError(f"{path}: run {self.runs[i]} has no weight for '{self.domains[j]}'; every run needs one per domain")
        if (self.X < 0).any():
            i, j = np.argwhere(self.X < 0)[0]
            raise DataError(f"{path}: run {self.runs[i]} has a negative weight for '{self.domains[j]}' "
                            f"({self.X[i, j]:g}); weights are shares of the tokens, 0 or more")
        sums = self.X.sum(1)
        bad = np.abs(sums - 1) > 0.02
        if bad.any():
            i = int(np.argmax(bad))
            percent = " (percentages? divide the weights by 100)" if abs(sums[i] - 100) <= 2 else ""
            raise DataError(f"{path}: the weights of run {self.runs[i]} sum to {sums[i]:.4f}{percent}, not 1 (within 0.02)")
        self.X /= sums[:, None]

    def _other_layout(self, path, rows, metrics, found, flags=("--results", "--metrics")):
        """Another tool's table (and --metrics FILE) as our rows. Weights: the train_the_<domain>
        columns (the paper's train_the_pile_<domain>), else every numeric column of `path`; metrics:
        the other numeric columns, of --metrics where given; the paper's metric/the_pile_<d>_val_loss
        is loss.<d>, so that its targets keep their domain names (pile_cc)."""
        cols = [c for c in rows[0] if c not in META_COLUMNS]
        if found is not None:
            key = next((k for k in ("run", "index") if k in rows[0] and k in found[0]), None)
            if key is None:
                raise DataError(f"--metrics {metrics}: no 'run' or 'index' column shared with {path} to join them on")
            by_key = {}
            for r in found:
                if r[key] in by_key:
                    raise DataError(f"--metrics {metrics}: {key} {r[key]} appears twice; keep one row per run")
                by_key[r[key]] = r
            missing = [r[key] for r in rows if r[key] not in by_key]
            if missing:
                raise DataError(f"--metrics {metrics}: no row for {key} {missing[0]} of {path} ({len(missing)} runs lack one)")
            names = self._numeric(metrics, found, [c for c in found[0] if c not in META_COLUMNS])
            weights = self._numeric(path, rows, [c for c in cols if c.startswith("train_the_")] or cols)
            rows = [dict(r, **{f"metric:{c}": by_key[r[key]][c] for c in names}) for r in rows]
            names = [f"metric:{c}" for c in names]
        else:
            numeric = self._numeric(path, rows, cols)
            weights = [c for c in numeric if c.startswith("train_the_")]
            names = [c for c in numeric if not c.startswith("train_the_")]
        prefix = "train_the_pile_" if weights and all(c.startswith("train_the_pile_") for c in weights) else "train_the_"
        weight_name = {c: c[len(prefix):] if c.startswith(prefix) else c for c in weights}
        metric_name = {c: paper_metric(c.removeprefix("metric:")) for c in names}
        check_collisions(f"{flags[1]} {metrics}" if found is not None else path,
                         {c.removeprefix("metric:"): n for c, n in metric_name.items()})
        key = "run" if "run" in rows[0] else "index" if "index" in rows[0] else None
        return [dict(run=r[key] if key else str(i), **{f"weight.{weight_name[c]}": r[c] for c in weights},
                     **{f"loss.{metric_name[c]}": r[c] for c in names}) for i, r in enumerate(rows)]

    @staticmethod
    def _read(path, flag=None):
        if not os.path.exists(path) and flag in TABLE_REMEDIES:
            raise DataError(f"{flag} {path}: no such file; {TABLE_REMEDIES[flag]}")
        if not os.path.exists(path):
            raise DataError(f"{path}: no such results table; run --stage proxy first, or pass --results")
        rows = read_csv(path)
        if not rows:
            raise DataError(f"{path}: the table has no rows")
        return rows

    @staticmethod
    def _numeric(path, rows, cols):
        """The columns whose every non-empty value is a number (text columns are labels, not data)."""
        def number(v):
            try:
                float(v)
                return True
            except (TypeError, ValueError):
                return v in ("", None)
        keep = [c for c in cols if all(number(r[c]) for r in rows)]
        if not keep:
            raise DataError(f"{path}: no numeric columns")
        return keep

    def _floats(self, prefix, names):
        try:
            return np.array([[float(r[prefix + d] or "nan") for d in names] for r in self.rows])
        except ValueError as e:
            raise DataError(f"{self.path}: a {prefix}* value is not a number ({e})") from None

    def collapse(self, grouping):
        """Mixture reuse (reuse.py): each virtual domain's members summed into its one column, where
        the table has them one by one (a reuse sweep of ours); a table that has the virtual column
        already (Olmix's swarm) stays as it is."""
        self.reuse = grouping
        if all(g in self.domains for g in grouping.groups):
            return self
        missing = [m for g in grouping.groups.values() for m in g if m not in self.domains]
        if missing:
            raise DataError(f"{self.path}: no weight for '{missing[0]}', a domain of the reused mixture "
                            f"({grouping.source}); the table is not of that reuse sweep")
        self.X, self.domains = grouping.collapse(self.X, self.domains), grouping.columns(self.domains)
        return self

    def target(self, weights):
        """(X, y, runs) of the usable rows, y the weighted mean of the target losses ({domain: weight}
        from target_weights); failed runs (a NaN loss) are dropped with a warning."""
        X, y, _, runs = self.target_metrics(weights)
        return X, y, runs

    def target_metrics(self, weights):
        """(X, y, L, runs): as target(), and the target's losses one column each (runs x metrics)."""
        L = self._floats("loss.", list(weights))
        huge = too_large(self.path, L, self.runs, list(weights))
        with np.errstate(over="ignore", invalid="ignore"):
            y = L @ np.array(list(weights.values()))
        failed = (np.array([bool(r.get("failed")) for r in self.rows]) | ~np.isfinite(y)) & ~huge
        if failed.any():
            print(f"warning: {self.path}: {int(failed.sum())} failed run(s) left out", file=sys.stderr)
        failed |= huge
        return self.X[~failed], y[~failed], L[~failed], [r for r, f in zip(self.runs, failed) if not f]


# where a table passed by another flag than --results is missing: what to do (each flag its own)
TABLE_REMEDIES = {
    "--metrics": "pass the table of each run's measurements (joined on run or index), or leave --metrics out",
    "--test": "pass a held-out results table, or leave --test out for cross-validation",
    "--ladder-results": "pass the large scale's results table (the same mixtures as --results, joined on run)",
    "--ladder-metrics": "pass the large scale's measurements (as --metrics), or leave --ladder-metrics out",
}

# a loss beyond this is no measurement (a diverged run, a placeholder): its square overflows, and
# with it every fit's variance and error (the gp's, cross-validation's MSE)
MAX_LOSS = 1e150


def too_large(path, L, runs, names):
    """The runs (a mask) with a loss of the target beyond MAX_LOSS, said in one line: they are left
    out, as failed runs are."""
    with np.errstate(invalid="ignore"):
        big = np.abs(L) > MAX_LOSS
    rows = big.any(1)
    if rows.any():
        i, j = np.argwhere(big)[0]
        print(f"warning: {path}: {int(rows.sum())} run(s) with a loss beyond {MAX_LOSS:g} left out (run {runs[i]}: "
              f"{names[j]} {L[i, j]:g}); a diverged run or a placeholder, not a measurement", file=sys.stderr)
    return rows


def check_collisions(source, names):
    """Two columns that become one name ({column: name}: the paper's metric/the_pile_pile_cc_val_loss
    and a plain pile_cc) would leave one of them unused without a word."""
    seen = {}
    for col, name in names.items():
        if name in seen:
            raise DataError(f"{source}: columns '{seen[name]}' and '{col}' both name the metric '{name}'; keep one "
                            "of them (or rename the other)")
        seen[name] = col


def paper_metric(name):
    """The paper's metric/the_pile_<domain>_val_loss is <domain>; other names stay as they are."""
    if name.startswith("metric/the_pile_") and name.endswith("_val_loss"):
        return name[len("metric/the_pile_"):-len("_val_loss")]
    return name


def target_weights(spec, loss_domains, weight_domains, source):
    """--target as {domain: weight} summing to 1, and its canonical name: 'a' (one domain), 'a,b'
    (their mean), 'a=0.7,b=0.3' (weighted), 'all' (the mean over every domain with a loss; 'all,-c':
    all but c). A metric's name may hold ',' (lm-eval's acc,none=0.7,other=0.3: target_parts).
    Without --target: pile_cc (the paper's), else the single eval-only domain (a loss without a
    weight); else None, and the caller asks the user."""
    if spec is not None and not spec.strip():
        raise DataError("--target '': empty; name a domain (or several: a,b; weighted: a=0.7,b=0.3; or all)")
    if not spec:
        eval_only = [d for d in loss_domains if d not in weight_domains]
        spec = "pile_cc" if "pile_cc" in loss_domains else eval_only[0] if len(eval_only) == 1 else None
        if spec is None:
            return None, None
    if spec == "all":
        return spec, {d: 1 / len(loss_domains) for d in loss_domains}
    if spec.startswith("all,"):
        return spec, all_except(spec, loss_domains, source)
    if spec in loss_domains:  # one metric, whose name may hold ',' or '=' (lm-eval's acc,none)
        return spec, {spec: 1.0}
    weights = {}
    for part in target_parts(spec, loss_domains):
        name, _, w = part.strip().partition("=")
        if name in weights:
            raise DataError(f"--target {spec}: '{name}' is named twice; name each domain once")
        if name not in loss_domains:
            raise DataError(f"--target {spec}: no such domain '{name}' in {source} (domains with a loss: "
                            f"{', '.join(loss_domains)})")
        try:
            weights[name] = float(w) if w else 1.0
        except ValueError:
            raise DataError(f"--target {spec}: '{w}' is not a number (use a=0.7,b=0.3)") from None
        if not np.isfinite(weights[name]) or weights[name] < 0:
            raise DataError(f"--target {spec}: the weight of '{name}' must be finite and >= 0")
    total = sum(weights.values())
    if total <= 0:
        raise DataError(f"--target {spec}: the weights are all zero")
    return spec, {d: w / total for d, w in weights.items()}


def target_parts(spec, loss_domains):
    """--target's parts: split on ',' except inside a metric's own name (lm-eval's acc,none), so that
    'acc,none=0.7,other=0.3' is acc,none and other. At each place the longest run of ','-pieces
    that names a metric (alone, or before =WEIGHT) is one part; a piece that names none stays
    alone, for target_weights to say so."""
    pieces, parts, i = spec.split(","), [], 0
    while i < len(pieces):
        for j in range(len(pieces), i, -1):
            part = ",".join(pieces[i:j])
            name, eq, w = part.strip().rpartition("=")
            if part.strip() in loss_domains or (eq and name in loss_domains and is_number(w)) or j == i + 1:
                parts.append(part)
                i = j
                break
    return parts


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def all_except(spec, loss_domains, source):
    """--target all,-a,-b: the mean over every metric but a and b (a column that is no metric:
    fit prints what `all` averages)."""
    rest = spec[len("all,"):]
    names = rest[1:].split(",-") if rest.startswith("-") else []
    if not names or not all(names):
        raise DataError(f"--target {spec}: after all, name the metrics to leave out as all,-NAME,-NAME")
    unknown = [n for n in names if n not in loss_domains]
    if unknown:
        raise DataError(f"--target {spec}: no such metric '{unknown[0]}' in {source} to leave out (metrics: "
                        f"{', '.join(loss_domains)})")
    kept = [d for d in loss_domains if d not in names]
    if not kept:
        raise DataError(f"--target {spec}: every metric is left out; keep at least one")
    return {d: 1 / len(kept) for d in kept}


def describe_all(spec, tw, results):
    """What --target all (or all,-NAME) averages, every name of it, and the columns whose values
    sit far from the others' (a wall time, a count beside losses): a numeric column that is no
    metric is averaged too unless it is left out."""
    names = list(tw)
    print(f"target {spec}: the mean of {len(names)} metric(s): {', '.join(names)}")
    if len(names) < 3:
        return
    L = results._floats("loss.", names)
    with warnings.catch_warnings():  # (an all-empty column's median is NaN, not news)
        warnings.simplefilter("ignore")
        size = np.nanmedian(np.abs(L), axis=0)
    typical = np.nanmedian(size)
    odd = [n for n, v in zip(names, size) if typical > 0 and (v > 100 * typical or v < typical / 100)]
    if odd:
        print(f"  note: {', '.join(odd)} sit(s) far from the others' values (around {typical:.3g}); if not a metric, "
              f"leave it out: --target all,-{odd[0]}")


def paper2csv(mixture_csv, loss_csv, out_csv):
    """The paper's release (index, train_the_pile_<d> ...; index, metric/the_pile_<d>_val_loss ...)
    -> this project's schema (run, weight.<d> ..., loss.<d> ...), joined on index. Without a loss
    file: a mixtures.csv for --stage proxy, each row renormalised as the official loader does (the
    released weights are rounded to 0.001 and sum to 1 only within 0.004)."""
    def read(path):
        rows = read_csv(path)  # (a column named twice is refused: it would convert as its last copy)
        if not rows or "index" not in rows[0]:
            raise DataError(f"{path}: not the paper's release (no 'index' column). Other tools' sweeps need no "
                            "conversion: python regmix.py --stage fit --results FILE [--metrics FILE] (docs/fit.md)")
        return {r["index"]: r for r in rows}
    mix = read(mixture_csv)
    loss = read(loss_csv) if loss_csv else {idx: {} for idx in mix}
    wcols = [c for c in next(iter(mix.values())) if c.startswith("train_the_pile_")]
    if not wcols:
        raise DataError(f"{mixture_csv}: no train_the_pile_<domain> columns: not the paper's release. Other tools' "
                        "sweeps need no conversion: python regmix.py --stage fit --results FILE [--metrics FILE]")
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
