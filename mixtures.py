"""
The mixtures the proxies train, written to OUT/mixtures.csv (run, round, weight.<domain> ...).

    round 1       N random mixtures around the prior (the official sampler; the paper's whole sweep)
    later rounds  --rounds R in --stage all, or --stage mixtures --next M by hand: mixtures the
                  last fit proposes (proposals.py), appended with new run ids

Any tool (or a hand) may write the file instead; check_mixtures checks it against the data.
"""
import csv
import os

import numpy as np

import presets
import regression
from data import DataError, check_finite_sum, check_header, read_csv, read_mixture, write_csv

DEFAULT_DATA = "data/default"  # regmix.py's --data default
MAX_USAGE = 15.0  # a domain's weight at most 15x its natural share (the official sampler's bound)


def sample_mixtures(prior, n, seed=42, temperature=0.5, min_strength=0.1, max_strength=5.0,
                    minimum=2e-4, multiplier=100):
    """The official sampler (sail-sg/regmix synthesize_mixture.py), vectorised.

    Candidates are Dirichlet draws around the tempered prior, each at a concentration picked at
    random from 15 log-spaced strengths (small: spiky mixtures; large: close to the prior).
    A candidate is rejected if it would use a domain more than 15 times as much as the natural
    prior does (availability, on the untempered prior): a small domain would repeat
    too often in the target run. Weights below `minimum` become 0, the rest is rounded to
    multiples of `minimum`; duplicates are dropped and n are kept."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior, dtype=np.float64) / np.sum(prior)
    tempered = prior ** temperature
    tempered /= tempered.sum()
    strengths = np.logspace(np.log10(min_strength), np.log10(max_strength), 15)
    w = dirichlet(tempered[None, :] * rng.choice(strengths, size=n * multiplier)[:, None], rng)
    w = w[(w <= availability(prior)).all(1)]
    w = np.unique(on_grid(w, minimum), axis=0)
    if len(w) < n:
        raise DataError(f"only {len(w)} distinct mixtures satisfy the availability bound; "
                        f"ask for fewer with --n-mixtures")
    return w[rng.choice(len(w), size=n, replace=False)]


def dirichlet(alpha, rng, n=None):
    """Dirichlet draws, a row each: normalised gammas of `alpha` (one row of alphas per draw, or
    one alpha for n draws). Rows whose gammas all underflow to 0 (tiny alphas) are dropped."""
    g = rng.standard_gamma(alpha if n is None else np.broadcast_to(alpha, (n, len(alpha))))
    total = g.sum(1, keepdims=True)
    if not (total > 0).all():
        g, total = g[total[:, 0] > 0], total[total[:, 0] > 0]
    g /= total  # in place: a million candidates over 17 domains are 136 MB of float64
    return g


def availability(prior):
    """The most a mixture may use each domain: MAX_USAGE x its share of the data's tokens. More
    would repeat a small domain too often in the target run (the mixtures stage draws within it)."""
    return np.minimum(MAX_USAGE * prior, 1.0)


def on_grid(w, minimum=2e-4):
    """Mixtures as the mixtures stage writes them: weights below `minimum` become 0, the rest
    rounded to multiples of it, then each row renormalised to sum to 1 (so a weight lies within a
    fraction of `minimum` of a multiple: propose tells a repeat of a run by a distance of 1e-4)."""
    w = np.where(w < minimum, 0.0, w)
    w = np.round(w / w.sum(-1, keepdims=True) / minimum) * minimum
    return w / w.sum(-1, keepdims=True)


def load_prior(path, meta, names, X=None, groups=None):
    """The prior over `names`: --prior (a JSON of domain -> share, or `uniform`), else the data's
    meta.json, else (no data: another tool's sweep) the runs' mean weights, said in one line.
    groups: reused virtual domains among `names` (reuse.py), whose share is their members' sum."""
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
    if groups:  # a virtual domain (reuse.py): its members' shares summed, where the source has them
        prior = dict(prior, **{g: sum(float(prior[m]) for m in ms) for g, ms in groups.items()
                               if g not in prior and all(m in prior for m in ms)})
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


def check_mixtures(path, domains):
    """The rows of a mixtures.csv, whoever wrote it (this stage, the paper, another tool, a hand),
    checked against the data: one weight.<domain> column per trainable domain, weights finite and
    >= 0 summing to 1 (within 1e-3), unique integer run ids."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is no column name
            reader = csv.DictReader(f)
            cols, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it ({e})") from None
    check_header(path, cols)
    have = [c[len("weight."):] for c in cols if c.startswith("weight.")]
    missing = [d for d in domains.trainable if d not in have]
    extra = [d for d in have if d not in domains.trainable]
    if "run" not in cols:
        raise DataError(f"{path}: no 'run' column (an integer id per mixture)")
    if missing:
        raise DataError(f"{path}: no column weight.{missing[0]} for the trainable domain '{missing[0]}' of the data")
    if extra:
        raise DataError(f"{path}: column weight.{extra[0]} is not a trainable domain of the data "
                        f"({', '.join(domains.trainable)})")
    if not rows:
        raise DataError(f"{path}: no mixtures in it")
    seen = set()
    for i, r in enumerate(rows):
        run = (r["run"] or "").strip()
        if not run.lstrip("-").isdigit():
            raise DataError(f"{path}: row {i + 1} has run id '{run}'; run ids must be integers")
        if int(run) in seen:
            raise DataError(f"{path}: run {run} appears twice; run ids must be unique")
        seen.add(int(run))
        try:
            w = np.array([float(r[f"weight.{d}"]) for d in domains.trainable])
        except (TypeError, ValueError):
            raise DataError(f"{path}: run {run} has a weight that is not a number") from None
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            d = domains.trainable[int(np.argmax(~np.isfinite(w) | (w < 0)))]
            raise DataError(f"{path}: run {run} gives '{d}' the weight {r[f'weight.{d}']}; weights must be finite and >= 0")
        if abs(w.sum() - 1) > 1e-3:
            raise DataError(f"{path}: the weights of run {run} sum to {w.sum():.6g}, not 1 (within 1e-3)")
    return rows


def round_sizes(n, rounds):
    """How --rounds R spends a budget of n proxies: half in the first round, drawn at random as the
    paper draws all of them, the other half evenly over the later rounds (bench/rounds.py compares
    splits: fewer random runs leave the first fit too poor to propose from)."""
    if rounds < 1:
        raise DataError(f"--rounds {rounds}: need at least one round")
    if rounds == 1:
        return [n]
    later = n - n // 2
    if n // 2 < regression.MIN_RUNS or later < rounds - 1:
        raise DataError(f"--rounds {rounds} with --n-mixtures {n}: the first round's {n // 2} runs must be enough to "
                        f"fit ({regression.MIN_RUNS}), and the other {later} at least one per later round")
    return [n // 2] + [later // (rounds - 1) + (i < later % (rounds - 1)) for i in range(rounds - 1)]


def n_mixtures(requested, model):
    """--n-mixtures, or the preset's recipe's (presets.py: the paper's 512; 64 for the CPU presets)."""
    return requested or presets.recipe(model)["n_mixtures"]


def mixture_columns(names):
    return ["run", "round"] + [f"weight.{d}" for d in names]


def mixture_rows(names, w, first_run, round_):
    """Rows of mixtures.csv for the mixtures w (one per row), numbered from first_run."""
    return [{"run": str(first_run + i), "round": str(round_), **{f"weight.{d}": f"{x:.6g}" for d, x in zip(names, wi)}}
            for i, wi in enumerate(w)]


def read_rounds(path):
    """The rows of a mixtures.csv, each with its round (1 where the file has no round column)."""
    rows = read_csv(path) if os.path.exists(path) else []
    return [dict(r, round=r.get("round") or "1") for r in rows]


def stage_mixtures(args, domains=None):
    """The paper's step 2: N random mixtures around the prior, written to OUT/mixtures.csv (or
    checked against the file already there). Works from --prior alone, without a --data folder."""
    if domains is not None:
        names = domains.trainable
    elif args.prior:
        names = list(read_mixture(args.prior))
    else:
        raise DataError(f"{args.data}: no meta.json; prepare the data, or pass --prior FILE (JSON domain -> share)")
    prior = load_prior(args.prior, domains.meta if domains is not None else None, names)
    if args.reuse:  # beyond the paper: a sweep over a reused mixture and the new domains (reuse.py)
        import reuse
        return reuse.stage_mixtures(args, names, prior)
    n = round_sizes(n_mixtures(args.n_mixtures, args.model), args.rounds)[0]
    rows = mixture_rows(names, sample_mixtures(prior, n, seed=args.seed), 0, 1)
    path = os.path.join(args.out, "mixtures.csv")
    write_first_round(path, rows, mixture_columns(names))
    print(f"{n} mixtures over {len(names)} domains -> {path}" + (f" (round 1 of {args.rounds})" if args.rounds > 1 else ""))
    return rows


def write_first_round(path, rows, cols):
    """mixtures.csv with these rows; where it exists (a rerun, a resumed sweep), its first round must
    be them."""
    if os.path.exists(path):
        first = [{c: r.get(c) for c in cols} for r in read_rounds(path) if r["round"] == "1"]
        if first != rows:
            raise DataError(f"{path} was made from other data or settings (--n-mixtures, --rounds, --seed, --prior, "
                            "--reuse); delete it or use another --out")
    else:
        write_csv(path, rows, cols)
