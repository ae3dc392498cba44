"""
What limits a search, beyond the paper's own bound (mixtures.availability): simulate's and --next's
constraints, and where the candidates are drawn so that enough of them respect them.

    availability  w <= 15 x prior (--bound, on by default), as the mixtures stage draws them
    token budget  w <= E x the domain's training tokens / N (--target-tokens N --max-epochs E)
    trust region  within the runs' typical spacing of some run (--pick vouched, the default), where
                  the proxies can vouch for the fit; or the paper's per-domain proxy range (--pick
                  paper: w <= the largest weight any run gave it); --extrapolate drops both

Skippable on a first read: with the defaults on the paper's 17 domains they change little.
"""
from dataclasses import dataclass

import numpy as np

from data import DataError, read_mixture
from mixtures import MAX_USAGE, availability, dirichlet, load_prior


def caps(prior, X, bound=True, target_tokens=None, max_epochs=4.0, train_tokens=None, proxy_range=False):
    """Per-domain upper bounds on the weight, and where each comes from:
    availability  w <= 15 x prior (--bound, on by default), as the mixtures stage draws them;
    token budget  w <= E x the domain's training tokens / N (--target-tokens N --max-epochs E);
    proxy range   w <= the largest weight any proxy run gave it (--pick paper): a smooth law must
                  not run to a corner it never saw (the trust region, trust_radius, says it better)."""
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
    if proxy_range:
        limits["proxy range"] = X.max(0)
    return limits


@dataclass
class Constraints:
    """What limits a search (simulate's and --next's flags): the prior (--prior: a file, `uniform`,
    or None: the data's, else the runs' mean), the availability bound (--bound), a token budget
    (--target-tokens, --max-epochs, --tokens) and where the proxies vouch for the fit (vouch: region, the
    trust region, from --pick vouched; range, each domain's range over the runs, from --pick paper;
    --extrapolate: neither)."""
    prior: str = None
    bound: bool = True
    target_tokens: int = None
    max_epochs: float = 4.0
    tokens: str = None
    extrapolate: bool = False
    vouch: str = "region"
    reuse: str = None  # --reuse FILE (reuse.py): the grouping of a swarm over a virtual domain
    unfreeze: str = None

    @classmethod
    def from_args(cls, args):
        vouch = "region" if getattr(args, "pick", "vouched") == "vouched" else "range"
        return cls(args.prior, args.bound, args.target_tokens, args.max_epochs, args.tokens, args.extrapolate, vouch,
                   getattr(args, "reuse", None), getattr(args, "unfreeze", None))

    def radius(self, X):
        """The trust region's radius around the runs X, or None where the search may go anywhere."""
        return trust_radius(X) if self.vouch == "region" and not self.extrapolate else None


def search_space(names, X, meta, limits, proxy_range=True, grouping=None):
    """(prior, caps by constraint, cap) of a search over `names` (simulate's, and --stage mixtures
    --next's): the prior, each constraint of caps() from `limits` (Constraints), and the per-domain
    cap they make together; an error if no mixture at all satisfies them. meta: the data's
    meta.json, or None. Proposals for the next round search beyond the proxy range
    (proxy_range=False): a run there measures what a fit could only extrapolate. grouping: the
    virtual domains among `names` (reuse.py), each capped by its tightest member."""
    c = limits
    if c.tokens and c.target_tokens is None:
        raise DataError(f"--tokens {c.tokens} is read only with --target-tokens N (the target run's tokens, "
                        "which it caps each domain for); add it, or leave --tokens out")
    groups = grouping.groups if grouping is not None else None
    prior = load_prior(c.prior, meta, names, X, groups)
    train_tokens = (domain_tokens(names, meta, c.tokens, "--target-tokens", groups) if c.target_tokens is not None
                    else None)
    by_constraint = caps(prior, X, c.bound, c.target_tokens, c.max_epochs, train_tokens,
                         proxy_range and c.vouch == "range" and not c.extrapolate)
    if grouping is not None:
        by_constraint = member_caps(by_constraint, grouping, names, meta, c)
    cap = np.min(list(by_constraint.values()), axis=0) if by_constraint else np.ones(len(names))
    if cap.sum() < 1:  # no mixture at all satisfies them, however many candidates are drawn
        raise DataError(f"the constraints together ({', '.join(by_constraint)}) allow at most {cap.sum():.3f} of the "
                        "mixture; relax them (--no-bound, --extrapolate, --max-epochs, --target-tokens)")
    return prior, by_constraint, cap


def domain_tokens(names, meta, tokens=None, flag=None, groups=None):
    """Each domain's training tokens: --tokens FILE (JSON domain -> tokens, or an Olmix fit config:
    counts from elsewhere, no data needed), else the data's meta.json; None where neither is at
    hand (and `flag`, the option that needs them, is None). groups: virtual domains (reuse.py),
    counted as their members' sum where the counts have them."""
    if groups and (tokens or meta is not None):
        counts = (read_mixture(tokens, olmix_key="token_counts") if tokens else
                  {d: m["train_tokens"] for d, m in meta["domains"].items()})
        counts = dict(counts, **{g: sum(counts[m] for m in ms) for g, ms in groups.items()
                                 if g not in counts and all(m in counts for m in ms)})
        if all(d in counts for d in names):
            return np.array([counts[d] for d in names], dtype=float)
    if tokens:
        counts = read_mixture(tokens, olmix_key="token_counts")
        unknown = [d for d in names if d not in counts]
        if unknown:
            raise DataError(f"--tokens {tokens}: no token count for '{unknown[0]}' (a domain of the fitted results)")
        train_tokens = np.array([counts[d] for d in names], dtype=float)
        if not (train_tokens > 0).all():
            raise DataError(f"--tokens {tokens}: every domain's token count must be positive")
        return train_tokens
    if meta is not None:
        unknown = [d for d in names if d not in meta["domains"]]
        if unknown:
            if flag is None:
                return None
            raise DataError(f"{flag}: the data has no domain '{unknown[0]}' of the fitted results")
        return np.array([meta["domains"][d]["train_tokens"] for d in names], dtype=float)
    return None


def member_caps(by_constraint, grouping, names, meta, c):
    """With reused virtual domains among `names`: each virtual domain's caps tightened to
    min over its members of (member's cap / its ratio), wherever each leaf's prior or tokens are
    known (the data's meta.json, or a --prior / --tokens file that names every leaf), so that after
    expansion every leaf meets its own cap; where they are not (Olmix's swarm gives the virtual
    domain's prior alone), its cap stays the virtual domain's own."""
    leaves = grouping.leaves(names)
    shares = read_mixture(c.prior) if c.prior and c.prior != "uniform" else meta["prior"] if meta is not None else {}
    leaf_caps = {}
    if c.bound and all(d in shares for d in leaves):
        p = np.array([float(shares[d]) for d in leaves])
        leaf_caps[f"availability ({MAX_USAGE:g} x prior)"] = availability(p / p.sum())
    known = (read_mixture(c.tokens, olmix_key="token_counts") if c.tokens else meta["domains"] if meta is not None
             else {})
    tokens = (domain_tokens(leaves, meta, c.tokens) if c.target_tokens is not None and all(d in known for d in leaves)
              else None)
    if tokens is not None:
        leaf_caps[next(k for k in by_constraint if k.startswith("token budget"))] = np.minimum(
            c.max_epochs * tokens / c.target_tokens, 1.0)
    out = dict(by_constraint)
    for src, leaf_cap in leaf_caps.items():
        tight = dict(zip(grouping.columns(leaves), grouping.column_caps(leaf_cap, leaves)))
        out[src] = np.minimum(by_constraint[src], [tight[d] for d in names])
    return out


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


# -----------------------------------------------------------------------------
# the trust region: where the proxies can vouch for the fit

def nearest_run(cand, X, chunk=65_536):
    """Each candidate's Euclidean distance (over the weights) to the nearest run of X, by
    |a|^2 + |b|^2 - 2 a.b in chunks: one matrix product, not a (candidates x runs x domains) array."""
    sq = (X ** 2).sum(1)
    out = np.empty(len(cand))
    for i in range(0, len(cand), chunk):
        c = cand[i:i + chunk]
        d2 = (c ** 2).sum(1)[:, None] + sq[None, :] - 2 * (c @ X.T)
        out[i:i + chunk] = np.sqrt(np.maximum(d2.min(1), 0))
    return out


def trust_radius(X, chunk=4096, quantile=90):
    """How far from the runs the fit is trusted: the distance within which nine runs in ten have
    another run (the 90th percentile of each run's distance to its nearest other), i.e. the gaps
    the sweep itself leaves between its runs. A mixture within it of some run lies no farther from
    a measurement than the runs lie from each other: the fit interpolates there. Beyond, it
    extrapolates, and a smooth law can promise a corner no proxy was near (issue 33: a mixture
    predicted 0.33 below every run trained worst of all). (The median spacing, tried first, held
    the search back on bench/rounds.py's surfaces, where the optimum lies a little beyond the runs:
    docs/simulate.md.)"""
    if len(X) < 2:
        return float("inf")
    sq = (X ** 2).sum(1)
    nearest = np.empty(len(X))
    for i in range(0, len(X), chunk):
        d2 = sq[i:i + chunk, None] + sq[None, :] - 2 * (X[i:i + chunk] @ X.T)
        d2[np.arange(len(d2)), np.arange(i, i + len(d2))] = np.inf  # not the run itself
        nearest[i:i + chunk] = np.sqrt(np.maximum(d2.min(1), 0))
    return float(np.percentile(nearest, quantile))
