"""
Mixture reuse (Olmix, 2026; beyond the paper): when the domain set changes, the domains that stay
keep their earlier relative ratios as one virtual domain, and a small sweep runs over it and the
changed domains only.

    python regmix.py --stage all --reuse out_old/mixture.json --data data/new --out out_new

--reuse FILE is an earlier run's mixture.json (its weights), or Olmix's {virtual: {member: ratio}}.
Against the new set of trainable domains (the leaves): the old domains still there become the
virtual domain (Olmix's name, `existing`, for a mixture.json), their old weights renormalised;
removed ones are dropped (said); new ones, and any --unfreeze'd, are free. The sweep, the fit and
the search work on the columns (virtual domains, then free leaves); mixtures.csv and mixture.json
hold every leaf's weight (a virtual domain's weight times each member's ratio), so the trainer
needs no change. docs/reuse.md says when to reuse and when to recompute.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np

from data import DataError, atomic_write_json

VIRTUAL = "existing"  # a reused mixture.json's virtual domain, as Olmix names it
RUNS_PER_COLUMN = 3  # Olmix's reuse swarms: 64 runs for 22 columns, 16 for 7
MIN_REUSE_RUNS = 16  # and at least this many: a 5-fold cross-validation needs a dozen or more


@dataclass
class Reuse:
    """The grouping: each virtual domain's members and their ratios (summing to 1)."""
    groups: dict
    source: str = None
    dropped: list = field(default_factory=list)

    def columns(self, leaves):
        """The columns a sweep over `leaves` varies: the virtual domains, then the free leaves."""
        members = {m for g in self.groups.values() for m in g}
        return list(self.groups) + [d for d in leaves if d not in members]

    def leaves(self, columns):
        """The leaves behind `columns`: each virtual domain's members, each free column itself."""
        return [m for c in columns for m in (self.groups[c] if c in self.groups else [c])]

    def collapse(self, W, leaves, columns=None):
        """Leaf weights (rows x leaves) -> column weights (rows x columns; by default columns(leaves)):
        a virtual domain's weight is the sum of its members'."""
        W = np.atleast_2d(np.asarray(W, float))
        index = {d: j for j, d in enumerate(leaves)}
        cols = [W[:, [index[m] for m in self.groups[c]]].sum(1) if c in self.groups else W[:, index[c]]
                for c in (columns or self.columns(leaves))]
        return np.column_stack(cols)

    def expand(self, C, columns):
        """Column weights (rows x columns) -> leaf weights (rows x leaves(columns)): each member gets
        its virtual domain's weight times its ratio."""
        C = np.atleast_2d(np.asarray(C, float))
        parts = [C[:, [j]] * np.array(list(self.groups[c].values()))[None, :] if c in self.groups else C[:, [j]]
                 for j, c in enumerate(columns)]
        return np.hstack(parts)

    def column_caps(self, leaf_caps, leaves):
        """Per-column caps from per-leaf ones: a virtual domain may take at most the tightest of
        min(cap_m / ratio_m) over its members, so that after expansion every member meets its own cap
        (a cap on the members' summed tokens, as Olmix's config has, would be looser)."""
        index = {d: j for j, d in enumerate(leaves)}
        return np.array([min(leaf_caps[index[m]] / r for m, r in self.groups[c].items() if r > 0)
                         if c in self.groups else leaf_caps[index[c]] for c in self.columns(leaves)])

    def record(self):
        return dict(groups=self.groups, source=self.source, dropped=list(self.dropped))


def read_reuse(path, leaves, unfreeze=(), table=False, say=True):
    """--reuse FILE against the new set of trainable domains `leaves`: the grouping, the dropped old
    domains said in one line (say=False: not here, the caller says it). Errors name the file and
    what to do. table: `leaves` are the weight
    columns of a results table, where a virtual domain may stand as one column already (Olmix's
    swarm): its members are then kept as the file gives them."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except OSError as e:
        raise DataError(f"--reuse {path}: cannot read it ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"--reuse {path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("weights"), dict):  # this project's mixture.json
        obj = {VIRTUAL: obj["weights"]}
    elif isinstance(obj, dict) and obj and all(isinstance(v, (int, float)) for v in obj.values()):  # a plain mixture
        obj = {VIRTUAL: obj}
    if not (isinstance(obj, dict) and obj and all(isinstance(g, dict) and g for g in obj.values())):
        raise DataError(f"--reuse {path}: expected an earlier mixture.json, or {{virtual_name: {{domain: ratio, ...}}}} "
                        "(Olmix's form)")
    groups, dropped = {}, []
    for name, members in obj.items():
        try:
            ratios = {m: float(r) for m, r in members.items()}
        except (TypeError, ValueError):
            raise DataError(f"--reuse {path}: the ratios of '{name}' must be numbers") from None
        if not all(np.isfinite(r) and r >= 0 for r in ratios.values()):
            raise DataError(f"--reuse {path}: a ratio of '{name}' is negative or not finite")
        if name in leaves and table:  # the swarm varied the virtual domain as one column
            total = sum(ratios.values())
            groups[name] = {m: r / total for m, r in ratios.items() if r > 0}
            continue
        if name in leaves:
            raise DataError(f"--reuse {path}: the virtual domain '{name}' has the name of a domain of the data; "
                            "rename it in the file")
        dropped += [m for m in ratios if m not in leaves]
        kept = {m: r for m, r in ratios.items() if m in leaves and m not in unfreeze and r > 0}
        if kept:
            total = sum(kept.values())
            groups[name] = {m: r / total for m, r in kept.items()}
    members = [m for g in obj.values() for m in g]
    unknown = [u for u in unfreeze if u not in members]
    if unknown:
        raise DataError(f"--unfreeze {unknown[0]}: not a domain of --reuse {path} ({', '.join(members[:8])}"
                        f"{', ...' if len(members) > 8 else ''})")
    if not groups:
        raise DataError(f"--reuse {path}: none of its domains ({', '.join(members[:8])}"
                        f"{', ...' if len(members) > 8 else ''}) is a trainable domain here ({', '.join(leaves)}): "
                        "is --data the new domain set? Without any shared domain there is nothing to reuse")
    if dropped and say:
        print(f"reuse: {len(dropped)} domain(s) of {path} are not in the new set and are dropped, the others' weights "
              f"renormalised: {', '.join(dropped[:10])}{', ...' if len(dropped) > 10 else ''}")
    return Reuse(groups, path, dropped)


def save(out, reuse):
    """OUT/reuse.json beside mixtures.csv: the grouping fit and simulate read."""
    atomic_write_json(os.path.join(out, "reuse.json"), reuse.record())


def load(out):
    """OUT/reuse.json, or None where the sweep reused nothing."""
    path = os.path.join(out, "reuse.json")
    if not os.path.exists(path):
        return None
    from data import read_json
    r = read_json(path, "it was written by --stage mixtures --reuse: run that again")
    return Reuse(r["groups"], r.get("source"), r.get("dropped", []))


def sweep_size(args, columns):
    """--n-mixtures, or the reuse sweep's default for this many columns."""
    return args.n_mixtures or n_mixtures(columns)


def n_mixtures(columns):
    """A reuse sweep's default size: Olmix's RUNS_PER_COLUMN per column it varies (its swarms: 64 runs
    for 22 columns, 16 for 7; the fit has as many weights to learn), at least MIN_REUSE_RUNS."""
    return max(MIN_REUSE_RUNS, RUNS_PER_COLUMN * columns)


# -----------------------------------------------------------------------------
# the stages' reuse: the sweep, and the answer back on the leaves

def stage_mixtures(args, leaves, leaf_prior):
    """--stage mixtures --reuse FILE: the first round's mixtures drawn over the columns (the virtual
    domains and the free leaves) by the paper's sampler, each written with every leaf's weight,
    and the grouping beside them (OUT/reuse.json) for fit and simulate."""
    from mixtures import mixture_columns, mixture_rows, round_sizes, sample_mixtures, write_first_round
    grouping = read_reuse(args.reuse, leaves, unfreeze_list(args))
    columns = grouping.columns(leaves)
    if len(columns) == 1:
        raise DataError(f"--reuse {args.reuse}: every domain here is in the reused mixture and none is new: nothing to "
                        "sweep. A removal alone needs no proxies: python regmix.py --stage simulate --reuse "
                        f"{args.reuse} --data {args.data} writes the renormalised mixture")
    prior = grouping.collapse(leaf_prior, leaves)[0]  # a virtual domain's prior: its members' share of the tokens
    n = round_sizes(sweep_size(args, len(columns)), args.rounds)[0]
    W = to_leaves(grouping, sample_mixtures(prior, n, seed=args.seed), columns, leaves)
    rows = mixture_rows(leaves, W, 0, 1)
    path = os.path.join(args.out, "mixtures.csv")
    write_first_round(path, rows, mixture_columns(leaves))
    save(args.out, grouping)
    members = sum(len(g) for g in grouping.groups.values())
    print(f"{n} mixtures over {len(columns)} columns: {', '.join(grouping.groups)} (the reused mixture's {members} "
          f"domains at their old ratios) and {len(columns) - len(grouping.groups)} free domain(s) -> {path}; the "
          f"grouping in {args.out}/reuse.json" + ("" if args.n_mixtures else f" ({RUNS_PER_COLUMN} runs per column, at "
                                                                          f"least {MIN_REUSE_RUNS}: reuse.n_mixtures)"))
    return rows


def unfreeze_list(args):
    return [d.strip() for d in (getattr(args, "unfreeze", None) or "").split(",") if d.strip()]


def to_leaves(grouping, C, columns, leaves):
    """Column weights expanded to the leaves, in the order of `leaves`."""
    W = grouping.expand(C, columns)
    order = {d: j for j, d in enumerate(grouping.leaves(columns))}
    return W[:, [order[d] for d in leaves]]


def of_sweep(args, leaves):
    """The grouping of the sweep fit is fitting: OUT/reuse.json where --stage mixtures --reuse wrote
    it, else --reuse FILE read against `leaves` (the table's domains), else None."""
    grouping = load(args.out)
    if grouping is None and getattr(args, "reuse", None):
        grouping = read_reuse(args.reuse, leaves, unfreeze_list(args), table=True)
    return grouping


def of_fit(fit, constraints):
    """The grouping simulate expands its answer with: fit.json's (a reuse sweep fitted here), else
    --reuse FILE against the fit's columns (a swarm from elsewhere: Olmix's `existing` column)."""
    if fit.get("reuse"):
        return Reuse(**fit["reuse"])
    if not constraints.reuse:
        return None
    grouping = read_reuse(constraints.reuse, fit["domains"], unfreeze_list(constraints), table=True)
    absent = [g for g in grouping.groups if g not in fit["domains"]]
    if absent:
        raise DataError(f"--reuse {constraints.reuse}: the virtual domain '{absent[0]}' is not a column of the fit "
                        f"({', '.join(fit['domains'][:6])}, ...); fit the reuse sweep's table, whose runs vary it")
    return grouping


def removal_only(args, domains):
    """A removal alone (every domain of --data in the reused mixture, none new, none unfrozen) needs
    no sweep: the old mixture renormalised over what remains is the answer, written to
    OUT/mixture.json and said in one line. True where that was the case (without --data: False)."""
    if domains is None:
        return False
    grouping = read_reuse(args.reuse, domains.trainable, unfreeze_list(args), say=False)  # (the sweep says it)
    columns = grouping.columns(domains.trainable)
    if len(columns) > 1:
        return False
    from results import target_weights
    spec, tw = target_weights(args.target, domains.names, domains.trainable, args.data)
    weights = dict(zip(domains.trainable, map(float, to_leaves(grouping, [[1.0]], columns, domains.trainable)[0])))
    atomic_write_json(os.path.join(args.out, "mixture.json"), dict(
        weights=weights, source="reuse: the old mixture without its removed domains, renormalised", target=spec,
        target_weights=tw, reuse=grouping.record(), baselines={}))
    print(f"reuse: no domain of {args.data} is new, so nothing needs a sweep: {args.reuse} without its "
          f"{len(grouping.dropped)} removed domain(s) ({', '.join(grouping.dropped)}), renormalised -> "
          f"{args.out}/mixture.json")
    return True
