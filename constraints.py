"""
What limits a search, beyond the paper's own bound (mixtures.availability): simulate's and --next's
constraints, and where the candidates are drawn so that enough of them respect them.

    availability  w <= 15 x prior (--bound, on by default), as the mixtures stage draws them
    token budget  w <= E x the domain's training tokens / N (--target-tokens N --max-epochs E)
    proxy range   w <= the largest weight any proxy run gave it (unless --extrapolate)

Skippable on a first read: with the defaults on the paper's 17 domains they change little.
"""
from dataclasses import dataclass

import numpy as np

from data import DataError, read_mixture
from mixtures import MAX_USAGE, availability, dirichlet, load_prior


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
