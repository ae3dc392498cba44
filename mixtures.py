"""
The mixtures the proxies train, written to OUT/mixtures.csv (run, round, weight.<domain> ...).

    round 1       N random mixtures around the prior (the official sampler; the paper's whole sweep)
    later rounds  --rounds R in --stage all, or --stage mixtures --next M by hand: mixtures the
                  last fit proposes (search.propose), appended with new run ids

Any tool (or a hand) may write the file instead; check_mixtures checks it against the data.
"""
import csv
import os

import numpy as np

import regression
import search
from data import DataError, check_header, read_csv, read_mixture, write_csv

N_MIXTURES = {"paper": 512, "tiny": 64}  # the paper's sweep; tiny: sized for the demo on 2 CPU cores
DEFAULT_DATA = "data/default"  # regmix.py's --data default
MAX_NEXT = 256  # mixtures one --next may propose (each takes a refit of the regressor)


def sample_mixtures(prior, n, seed=42, temperature=0.5, min_strength=0.1, max_strength=5.0,
                    minimum=2e-4, multiplier=100):
    """The official sampler (sail-sg/regmix synthesize_mixture.py), vectorised.

    Candidates are Dirichlet draws around the tempered prior, each at a concentration picked at
    random from 15 log-spaced strengths (small: spiky mixtures; large: close to the prior).
    A candidate is rejected if it would use a domain more than 15 times as much as the natural
    prior does (search.availability, on the untempered prior): a small domain would repeat
    too often in the target run. Weights below `minimum` become 0, the rest is rounded to
    multiples of `minimum`; duplicates are dropped and n are kept."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior, dtype=np.float64) / np.sum(prior)
    tempered = prior ** temperature
    tempered /= tempered.sum()
    strengths = np.logspace(np.log10(min_strength), np.log10(max_strength), 15)
    w = search.dirichlet(tempered[None, :] * rng.choice(strengths, size=n * multiplier)[:, None], rng)
    w = w[(w <= search.availability(prior)).all(1)]
    w = np.unique(search.on_grid(w, minimum), axis=0)
    if len(w) < n:
        raise DataError(f"only {len(w)} distinct mixtures satisfy the availability bound; "
                        f"ask for fewer with --n-mixtures")
    return w[rng.choice(len(w), size=n, replace=False)]


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
    """--n-mixtures, or the paper's 512 (64 for the tiny demo)."""
    return requested or N_MIXTURES["tiny" if model == "tiny" else "paper"]


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
    """The first round: write OUT/mixtures.csv, or check that the one already there begins with the
    mixtures these settings make. Works from --prior alone, without a --data folder."""
    if args.next is not None:
        if args.next < 1:
            raise DataError(f"--next {args.next}: the number of mixtures to propose must be at least 1")
        if args.next > MAX_NEXT:  # each proposal refits the regressor once: 100,000 would run for days
            raise DataError(f"--next {args.next}: at most {MAX_NEXT} mixtures a round (each is proposed by its own "
                            "refit of the regressor); train them, fit, and ask for more")
        return stage_next(args, domains)
    if domains is not None:
        names = domains.trainable
    elif args.prior:
        names = list(read_mixture(args.prior))
    else:
        raise DataError(f"{args.data}: no meta.json; prepare the data, or pass --prior FILE (JSON domain -> share)")
    prior = search.load_prior(args.prior, domains.meta if domains is not None else None, names)
    n = round_sizes(n_mixtures(args.n_mixtures, args.model), args.rounds)[0]
    w = sample_mixtures(prior, n, seed=args.seed)
    cols = mixture_columns(names)
    rows = mixture_rows(names, w, 0, 1)
    path = os.path.join(args.out, "mixtures.csv")
    if os.path.exists(path):
        first = [{c: r.get(c) for c in cols} for r in read_rounds(path) if r["round"] == "1"]
        if first != rows:
            raise DataError(f"{path} was made from other data or settings (--n-mixtures, --rounds, --seed, --prior); "
                            "delete it or use another --out")
    else:
        write_csv(path, rows, cols)
    print(f"{n} mixtures over {len(names)} domains -> {path}" + (f" (round 1 of {args.rounds})" if args.rounds > 1 else ""))
    return rows


def stage_next(args, domains=None, m=None):
    """Append the next round: m mixtures proposed by the last fit (search.propose) to
    OUT/mixtures.csv, with new run ids, for --stage proxy (or a job array) to train."""
    m = m or args.next
    fit = regression.read_fit(args.out)
    names = fit["domains"]
    if domains is not None and sorted(names) != sorted(domains.trainable):
        if args.data != DEFAULT_DATA:
            raise DataError(f"{args.out}/fit.json was fitted on domains {', '.join(names)}, but {args.data} trains "
                            f"{', '.join(domains.trainable)}: use the --data of that fit, or fit again")
        # the default folder (the demo's corpus) belongs to another sweep: work without data, as for any
        # sweep from elsewhere
        print(f"note: {args.data} (the default --data) holds other domains than this fit's: proposing without it")
        domains = None
    results = regression.fitted_results(fit, args.out)
    X, _, y, Y, _ = regression.fitted_target(fit, results)  # y lower is better, as fitted
    if sorted(fit.get("runs", [])) != sorted(results.runs):
        raise DataError(f"{args.out}/fit.json predates {results.path} (other runs); run --stage fit first, "
                        "so that the proposals use every result")
    path = os.path.join(args.out, "mixtures.csv")
    rows = read_rounds(path)
    pending = [r["run"] for r in rows if r["run"] not in set(results.runs)]
    if pending:
        raise DataError(f"{path}: {len(pending)} mixture(s) have no result yet (run {', '.join(pending[:5])}"
                        f"{', ...' if len(pending) > 5 else ''}): train them (--stage proxy), then fit, then ask for more")
    r = max((int(x["round"]) for x in rows), default=1) + 1
    prior, _, cap = search.search_space(names, X, domains.meta if domains is not None else None,
                                            search.Constraints.from_args(args), proxy_range=False)
    c, _ = search.concentration(prior, cap, np.random.default_rng([args.seed, r, 2]))  # as simulate draws them
    cand = search.dirichlet(c * prior, np.random.default_rng([args.seed, r]), search.PROPOSAL_CANDIDATES)
    cand = cand[(cand <= cap + 1e-12).all(1)]
    if len(cand) < m:
        raise DataError(f"only {len(cand)} candidates within the constraints for --next {m}; relax them "
                        "(--no-bound, --extrapolate, --max-epochs)")
    written = np.array([[float(x.get(f"weight.{d}") or 0) for d in names] for x in rows]).reshape(-1, len(names))
    taken = np.vstack([X, written])  # every run with a result, and every mixture of the file
    name = fit["chosen"] if args.regressor == "auto" else args.regressor
    w = search.propose(name, X, y, fit["min_data_in_leaf"], cand, m, [args.seed, r, 1], taken, Y,
                           fit.get("ensemble_members"))
    ids = [int(x) for x in results.runs + [x["run"] for x in rows] if x.lstrip("-").isdigit()]
    start = max(max(ids, default=-1) + 1, len(results.runs))  # beyond every run id, numeric or not
    new = mixture_rows(names, w, start, r)
    # no lock (they fail on parallel file systems): a claim on the round, made atomically, and the
    # file read again under it, so that two --next at once never give one run id two mixtures
    claim = os.path.join(args.out, f".next_round_{r}")
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise DataError(f"{claim}: another --stage mixtures --next is writing round {r} on this --out now (or one was "
                        "stopped while writing): let it finish, then run again; if none is running, delete that file") from None
    try:
        if read_rounds(path) != rows:
            raise DataError(f"{path}: another --stage mixtures --next wrote round {r} meanwhile; nothing of this one "
                            "was written: train that round, fit, then ask again")
        write_csv(path, rows + new, mixture_columns(names))
    finally:
        os.close(fd)
        os.remove(claim)
    print(f"round {r}: {m} mixtures proposed by {name} fitted on {len(y)} runs (runs {start}-{start + m - 1}) -> {path}")
    return new
