"""
Scoring a million mixtures: LightGBM's forest, evaluated exactly and fast (simulate's hot path).
regressors.LightGBM builds a Forest for any model that scores many rows; the scores equal
Booster.predict's (tested), in a fraction of its time (docs/speed.md, bench/simulate_speed.py).
"""
import numpy as np


class Forest:
    """LightGBM's trees as QuickScorer-style bit masks, scored by a small numba kernel.

    Each tree's leaves are numbered left to right; a split (feature f, threshold t) that sends x
    right rules out the leaves of its left subtree. Because only a few distinct thresholds exist
    per feature, x_f falls into one of a few bins, and for each (feature, bin) we precompute, per
    tree, the mask of leaves still possible. A row's exit leaf in every tree is then the lowest set
    bit of the AND of its features' masks: no branches, no pointer chasing. Masks are 32 bits
    (LightGBM's default trees have at most 31 leaves): twice as many trees per vector instruction
    as 64. The sum runs over the trees in LightGBM's order, so scores equal Booster.predict
    (tested). Models this scheme does not cover (categorical splits, missing-value routing, more
    than 32 leaves) fall back to Booster.predict."""

    def __init__(self, booster):
        self.booster = booster
        self.kernel_args = self._compile(booster.model_to_string()) if _score is not None else None

    @staticmethod
    def _trees(model):
        """The model text's header and one dict per tree (LightGBM's own format: far quicker to
        read than dump_model's JSON, which took 0.6 s for 1,000 trees)."""
        header, trees = {}, []
        for line in model.split("\n"):
            key, sep, value = line.partition("=")
            if line.startswith("end of trees"):
                break
            if key == "Tree":
                trees.append({})
            elif sep:
                (trees[-1] if trees else header)[key] = value
        return header, trees

    @classmethod
    def _compile(cls, model):
        header, trees = cls._trees(model)
        if header.get("objective", "").split()[0] != "regression" or "average_output" in header:
            return None
        F, T = int(header["max_feature_idx"]) + 1, len(trees)
        n_leaves = np.array([int(t["num_leaves"]) for t in trees])
        if n_leaves.max() > 32:
            return None
        S = max(1, n_leaves.max() - 1)  # splits per tree, padded

        def field(key, dtype, count):  # one row per tree, padded with zeros
            out = np.zeros((T, count.max() if key == "leaf_value" else S), dtype)
            out[np.arange(out.shape[1]) < count[:, None]] = np.array(
                " ".join(t[key] for t in trees if key in t).split(), dtype)
            return out
        feature, kind, left, right = (field(k, np.int64, n_leaves - 1)
                                      for k in ("split_feature", "decision_type", "left_child", "right_child"))
        threshold, values = field("threshold", np.float64, n_leaves - 1), field("leaf_value", np.float64, n_leaves)
        split = np.arange(S) < (n_leaves - 1)[:, None]
        # decision_type: bit 0 categorical, bits 2-3 the missing type (1: zero is missing)
        if np.any(kind[split] & 1) or np.any((kind[split] >> 2) & 3 == 1):
            return None
        rows = np.arange(T)

        def size(child, sizes):  # leaves below a child (a leaf is ~index, negative)
            return np.where(child < 0, 1, sizes[rows, np.maximum(child, 0)])
        # Leaves below each split, bottom-up: LightGBM numbers a split's child splits after it.
        sizes = np.zeros((T, S), np.int64)
        for j in reversed(range(S)):
            sizes[:, j] = np.where(split[:, j], size(left[:, j], sizes) + size(right[:, j], sizes), 0)
        # Number the leaves left to right, top-down: a split's left subtree starts where it does.
        start, leaf_pos = np.zeros((T, S), np.int64), np.zeros((T, 32), np.int64)
        for j in range(S):
            n_left = size(left[:, j], sizes)
            for child, first in ((left[:, j], start[:, j]), (right[:, j], start[:, j] + n_left)):
                inner, leaf = split[:, j] & (child >= 0), split[:, j] & (child < 0)
                start[rows[inner], child[inner]] = first[inner]
                leaf_pos[rows[leaf], ~child[leaf]] = first[leaf]
        n_left = np.where(left < 0, 1, np.take_along_axis(sizes, np.maximum(left, 0), 1))
        lmask = ((np.left_shift(1, n_left) - 1) << start)[split].astype(np.uint32)  # the leaves left of each split
        leaf = np.arange(values.shape[1]) < n_leaves[:, None]
        leaves = np.zeros((T, 32))
        leaves[np.nonzero(leaf)[0], leaf_pos[:, :values.shape[1]][leaf]] = values[leaf]
        tree_of, feature, threshold = np.nonzero(split)[0], feature[split], threshold[split]

        edges = [np.unique(threshold[feature == f]) for f in range(F)]
        edge_off = np.cumsum([0] + [len(e) for e in edges])
        table_off = np.cumsum([0] + [len(e) + 1 for e in edges])
        table = np.full((table_off[-1], T), np.iinfo(np.uint32).max, dtype=np.uint32)
        # bin b of feature f counts its thresholds below x. A split on (f, thr) at edge k rules out
        # its left leaves in bins k+1 and up: mark bin k+1, then AND cumulatively along the bins.
        k = np.zeros(len(feature), np.int64)
        for f in range(F):
            k[feature == f] = np.searchsorted(edges[f], threshold[feature == f])
        np.bitwise_and.at(table, (table_off[feature] + k + 1, tree_of), ~lmask)
        for f in range(F):
            table[table_off[f]:table_off[f + 1]] = np.bitwise_and.accumulate(table[table_off[f]:table_off[f + 1]], axis=0)
        used = np.array([f for f in range(F) if len(edges[f])], dtype=np.int64)
        return (np.concatenate(edges), edge_off, table, table_off, used, leaves)

    def predict(self, X, chunk=100_000):
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty(len(X))
        for i in range(0, len(X), chunk):
            if self.kernel_args is None:
                out[i:i + chunk] = self.booster.predict(X[i:i + chunk])
            else:
                _score(X[i:i + chunk], *self.kernel_args, out[i:i + chunk])
        return out


def _score_kernel(X, edges, edge_off, table, table_off, used, leaves, out):
    T = table.shape[1]
    for i in numba.prange(X.shape[0]):
        mask = np.empty(T, np.uint32)
        first = True
        for f in used:
            lo, hi = edge_off[f], edge_off[f + 1]
            x = X[i, f]
            while lo < hi:  # how many of this feature's thresholds lie below x
                mid = (lo + hi) // 2
                if edges[mid] < x:
                    lo = mid + 1
                else:
                    hi = mid
            if lo > edge_off[f]:  # bin 0 (x below every threshold) rules no leaf out: its row is all ones
                row = table[table_off[f] + lo - edge_off[f]]
                if first:  # the first such row is the mask itself: one pass over the trees fewer
                    mask[:] = row
                    first = False
                else:
                    for t in range(T):
                        mask[t] &= row[t]
        if first:  # every feature in bin 0
            mask[:] = np.uint32(0xFFFFFFFF)
        s = 0.0
        for t in range(T):  # in tree order, as LightGBM sums; the exit leaf is the lowest set bit
            s += leaves[t, trailing_zeros(mask[t])]
        out[i] = s


try:
    import numba
    from numba.cpython.unsafe.numbers import trailing_zeros  # one tzcnt instruction
    _score = numba.njit(parallel=True, nogil=True, cache=True)(_score_kernel)
except ImportError:  # numba is in requirements.txt; without it we score with Booster.predict (slower)
    _score = None
