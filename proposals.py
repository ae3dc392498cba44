"""
Search in rounds (beyond the paper, which spends its whole budget at once): after a fit, the
mixtures to train next, appended to OUT/mixtures.csv as a new round.

    python regmix.py --stage all --rounds 4              # the budget in rounds
    python regmix.py --stage mixtures --next M           # by hand: M more, proposed by OUT/fit.json

How they are chosen (Thompson sampling over bootstrap refits) and what it measured: docs/rounds.md.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import regression
import regressors
import reuse
from constraints import Constraints, concentration, search_space
from data import DataError, usable_cores, write_csv
from mixtures import DEFAULT_DATA, dirichlet, mixture_columns, mixture_rows, on_grid, read_rounds

PROPOSAL_CANDIDATES = 100_000  # Dirichlet draws, before the constraints, that proposals are picked from
MAX_NEXT = 256  # mixtures one --next may propose (each takes a refit of the regressor)


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


def stage_next(args, domains=None, m=None):
    """Append the next round: m mixtures proposed by the last fit (propose) to
    OUT/mixtures.csv, with new run ids, for --stage proxy (or a job array) to train."""
    m = m or args.next
    if m < 1:
        raise DataError(f"--next {m}: the number of mixtures to propose must be at least 1")
    if m > MAX_NEXT:  # each proposal refits the regressor once: 100,000 would run for days
        raise DataError(f"--next {m}: at most {MAX_NEXT} mixtures a round (each is proposed by its own "
                        "refit of the regressor); train them, fit, and ask for more")
    fit = regression.read_fit(args.out)
    names = fit["domains"]  # (with mixture reuse: the columns, a virtual domain among them; reuse.py)
    grouping = reuse.of_fit(fit, Constraints.from_args(args))
    leaves = grouping.leaves(names) if grouping is not None else names  # what mixtures.csv weighs
    if domains is not None and sorted(leaves) != sorted(domains.trainable):
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
    prior, _, cap = search_space(names, X, domains.meta if domains is not None else None,
                                 Constraints.from_args(args), proxy_range=False, grouping=grouping)
    c, _ = concentration(prior, cap, np.random.default_rng([args.seed, r, 2]))  # as simulate draws them
    cand = dirichlet(c * prior, np.random.default_rng([args.seed, r]), PROPOSAL_CANDIDATES)
    cand = cand[(cand <= cap + 1e-12).all(1)]
    if len(cand) < m:
        raise DataError(f"only {len(cand)} candidates within the constraints for --next {m}; relax them "
                        "(--no-bound, --extrapolate, --max-epochs)")
    written = np.array([[float(x.get(f"weight.{d}") or 0) for d in leaves] for x in rows]).reshape(-1, len(leaves))
    if grouping is not None:
        written = grouping.collapse(written, leaves, names)
    taken = np.vstack([X, written])  # every run with a result, and every mixture of the file
    name = fit["chosen"] if args.regressor == "auto" else args.regressor
    w = propose(name, X, y, fit["min_data_in_leaf"], cand, m, [args.seed, r, 1], taken, Y, fit.get("ensemble_members"))
    ids = [int(x) for x in results.runs + [x["run"] for x in rows] if x.lstrip("-").isdigit()]
    start = max(max(ids, default=-1) + 1, len(results.runs))  # beyond every run id, numeric or not
    new = mixture_rows(leaves, w if grouping is None else reuse.to_leaves(grouping, w, names, leaves), start, r)
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
        write_csv(path, rows + new, mixture_columns(leaves))
    finally:
        os.close(fd)
        os.remove(claim)
    print(f"round {r}: {m} mixtures proposed by {name} fitted on {len(y)} runs (runs {start}-{start + m - 1}) -> {path}")
    return new
