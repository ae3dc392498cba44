"""
The regressors of RegMix's fit: validation loss as a function of the mixture weights.

    lightgbm     gradient-boosted trees, the paper's settings (scored exactly and fast by Forest)
    linear       ordinary least squares on the weights, the paper's baseline
    mixing_law   the Data Mixing Law (Ye et al., 2024): L(w) = exp(c) + exp(k + t.w)
    quadratic    ridge regression on the weights and their pairwise products
    gp           a Gaussian process with an isotropic RBF kernel
    ensemble     the mean of lightgbm, mixing_law, quadratic and gp

Each has fit(X, y) -> self, predict(X) and state(), the JSON-able dict that from_state() turns
back into the same model (LightGBM keeps its own text format). Smooth models rank large models
well from few runs; LightGBM ranks held-out proxies best once there are hundreds (README).
"""
import numpy as np

# the paper's settings; everything else LightGBM's default. One thread: a few hundred rows give each
# round microseconds of work, and more threads only wait for each other (a fit on the paper's 512
# runs: 0.4 s on one thread, 3.1 s on two under OMP_WAIT_POLICY=passive). Results do not depend on it.
LGB_PARAMS = dict(objective="regression", boosting="gbdt", learning_rate=1e-2, seed=42, verbose=-1,
                  deterministic=True, num_threads=1)
LGB_ROUNDS = 1000
SINGLE = ("lightgbm", "linear", "mixing_law", "quadratic", "gp")
ENSEMBLE = ("lightgbm", "mixing_law", "quadratic", "gp")  # linear is dominated by quadratic (README)
NAMES = SINGLE + ("ensemble",)


def leaf_size(n_runs, min_data_in_leaf=None):
    """LightGBM's min_data_in_leaf: the paper's 20 (LightGBM's default) from ~120 runs on; below,
    20-row leaves leave trees almost no split (held-out rho 0.11 at 40 runs vs 0.91 with 5, README)."""
    return min_data_in_leaf or (5 if n_runs < 120 else 20)


class LightGBM:
    name = "lightgbm"

    def __init__(self, min_data_in_leaf=20, booster=None):
        self.min_data_in_leaf, self.booster, self.forest = min_data_in_leaf, booster, None

    def fit(self, X, y):
        import lightgbm as lgb
        params = dict(LGB_PARAMS, min_data_in_leaf=self.min_data_in_leaf)
        self.booster, self.forest = lgb.train(params, lgb.Dataset(X, y), num_boost_round=LGB_ROUNDS), None
        return self

    def predict(self, X):
        if self.forest is None:
            self.forest = Forest(self.booster)
        return self.forest.predict(X)

    def state(self):
        return dict(min_data_in_leaf=self.min_data_in_leaf, model=self.booster.model_to_string())

    @classmethod
    def from_state(cls, s):
        import lightgbm as lgb
        return cls(s["min_data_in_leaf"], lgb.Booster(model_str=s["model"]))


class Linear:
    """Ordinary least squares on the raw weights, with an intercept."""
    name = "linear"

    def __init__(self, coef=None, intercept=0.0):
        self.coef, self.intercept = None if coef is None else np.asarray(coef), intercept

    def fit(self, X, y):
        sol = np.linalg.lstsq(np.hstack([X, np.ones((len(X), 1))]), y, rcond=None)[0]
        self.coef, self.intercept = sol[:-1], float(sol[-1])
        return self

    def predict(self, X):
        return X @ self.coef + self.intercept

    def state(self):
        return dict(coef=self.coef.tolist(), intercept=self.intercept)

    @classmethod
    def from_state(cls, s):
        return cls(s["coef"], s["intercept"])


class MixingLaw:
    """L(w) = exp(c) + exp(k + t.w), fitted as its authors do (yegcjs/mixinglaws law.py): the sum
    of Huber losses (delta 0.01) minimised by L-BFGS from many random starts, the best kept. Here
    in float64 with an analytic gradient (scipy), which reaches their parameters in seconds."""
    name = "mixing_law"

    def __init__(self, params=None, starts=32, delta=0.01, seed=42):
        self.params = None if params is None else np.asarray(params)
        self.starts, self.delta, self.seed = starts, delta, seed

    @staticmethod
    def _predict(p, X):
        return np.exp(p[0]) + np.exp(np.minimum(p[1] + X @ p[2:], 50.0))

    def _objective(self, p, X, y):
        e = np.exp(np.minimum(p[1] + X @ p[2:], 50.0))
        r = np.exp(p[0]) + e - y
        a = np.abs(r)
        loss = np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta)).sum()
        g = np.clip(r, -self.delta, self.delta)  # d huber / d prediction
        return loss, np.concatenate([[g.sum() * np.exp(p[0]), g @ e], (g * e) @ X])

    def fit(self, X, y):
        from scipy.optimize import minimize
        rng = np.random.default_rng(self.seed)
        best = None
        for _ in range(self.starts):
            c = np.log(max(y.min(), 1e-6) * rng.uniform(0.05, 0.95))  # the floor sits below every loss seen
            p0 = np.concatenate([[c, np.log(max(y.mean() - np.exp(c), 1e-6))], rng.normal(0, 1, X.shape[1])])
            r = minimize(self._objective, p0, args=(X, y), jac=True, method="L-BFGS-B", options=dict(maxiter=500))
            if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
                best = r
        self.params = best.x
        return self

    def predict(self, X):
        return self._predict(self.params, X)

    def state(self):
        return dict(params=self.params.tolist())

    @classmethod
    def from_state(cls, s):
        return cls(s["params"])


class Quadratic:
    """Ridge regression on the weights and their pairwise products (squares included), on their
    raw scale: a product of two small weights needs a large coefficient, so the ridge keeps the
    model close to linear where runs are few. The ridge strength is chosen by exact
    leave-one-out error over a grid."""
    name = "quadratic"

    def __init__(self, state=None):
        self.s = state

    @staticmethod
    def features(X):
        i, j = np.triu_indices(X.shape[1])
        return np.hstack([X, X[:, i] * X[:, j]])

    def fit(self, X, y):
        F = self.features(X)
        mu, ym = F.mean(0), y.mean()
        Z = F - mu
        U, s, Vt = np.linalg.svd(Z, full_matrices=False)
        Uy = U.T @ (y - ym)
        best = None
        for alpha in np.logspace(-6, 2, 33):
            shrink = s ** 2 / (s ** 2 + alpha)
            fitted = U @ (shrink * Uy)
            h = (U ** 2) @ shrink + 1 / len(y)  # leverages, the intercept's 1/n included
            loo = np.mean(((y - ym - fitted) / (1 - h)) ** 2)
            if best is None or loo < best[0]:
                best = (loo, alpha, Vt.T @ (shrink / np.where(s > 0, s, 1) * Uy))
        self.s = dict(mu=mu.tolist(), coef=best[2].tolist(), intercept=float(ym), alpha=float(best[1]))
        return self

    def predict(self, X, chunk=100_000):
        mu, coef = np.asarray(self.s["mu"]), np.asarray(self.s["coef"])
        return np.concatenate([(self.features(X[i:i + chunk]) - mu) @ coef + self.s["intercept"]
                               for i in range(0, len(X), chunk)])

    def state(self):
        return self.s

    @classmethod
    def from_state(cls, s):
        return cls(s)


class GaussianProcess:
    """A Gaussian process on the weights: isotropic RBF kernel, constant mean, Gaussian noise;
    lengthscale, signal and noise variances maximise the marginal likelihood (L-BFGS-B)."""
    name = "gp"

    def __init__(self, state=None):
        self.s = state

    @staticmethod
    def _kernel(A, B, log_ell, log_sf2):
        d2 = (A ** 2).sum(1)[:, None] + (B ** 2).sum(1)[None, :] - 2 * A @ B.T
        return np.exp(log_sf2 - 0.5 * np.maximum(d2, 0) / np.exp(2 * log_ell))

    def fit(self, X, y):
        from scipy.linalg import cho_factor, cho_solve
        from scipy.optimize import minimize
        ym, ys = y.mean(), y.std() + 1e-12
        z = (y - ym) / ys

        d2 = np.maximum((X ** 2).sum(1)[:, None] + (X ** 2).sum(1)[None, :] - 2 * X @ X.T, 0)

        def neg_lml(theta):  # and its gradient: 0.5 tr(K^-1 dK) - 0.5 a' dK a, per log-parameter
            R = np.exp(theta[1] - 0.5 * d2 / np.exp(2 * theta[0]))
            K = R + (np.exp(theta[2]) + 1e-8) * np.eye(len(X))
            try:
                L = cho_factor(K, lower=True)
            except np.linalg.LinAlgError:
                return 1e10, np.zeros(3)
            a = cho_solve(L, z)
            Kinv = cho_solve(L, np.eye(len(X)))
            dKs = (R * d2 / np.exp(2 * theta[0]), R)
            grad = [0.5 * np.sum(Kinv * dK) - 0.5 * a @ dK @ a for dK in dKs]
            grad.append(0.5 * np.exp(theta[2]) * (np.trace(Kinv) - a @ a))
            return 0.5 * z @ a + np.log(np.diag(L[0])).sum(), np.array(grad)

        bounds = [(np.log(1e-2), np.log(10.0)), (np.log(1e-2), np.log(100.0)), (np.log(1e-6), np.log(1.0))]
        best = min((minimize(neg_lml, np.array(t0), jac=True, method="L-BFGS-B", bounds=bounds)
                    for t0 in ([np.log(0.3), 0.0, np.log(0.1)], [np.log(1.0), 0.0, np.log(0.01)])), key=lambda r: r.fun)
        t = best.x
        K = self._kernel(X, X, t[0], t[1]) + (np.exp(t[2]) + 1e-8) * np.eye(len(X))
        alpha = np.linalg.solve(K, z)
        self.s = dict(X=X.tolist(), alpha=alpha.tolist(), theta=t.tolist(), mean=float(ym), scale=float(ys))
        return self

    def predict(self, X, chunk=50_000):
        Xt, alpha, t = np.asarray(self.s["X"]), np.asarray(self.s["alpha"]), self.s["theta"]
        return np.concatenate([self._kernel(X[i:i + chunk], Xt, t[0], t[1]) @ alpha
                               for i in range(0, len(X), chunk)]) * self.s["scale"] + self.s["mean"]

    def state(self):
        return self.s

    @classmethod
    def from_state(cls, s):
        return cls(s)


class Ensemble:
    """The plain mean of its members' predictions: on small sweeps it beats choosing one member
    by cross-validation, whose rho is too noisy at ~40 runs to choose by (README)."""
    name = "ensemble"

    def __init__(self, members):
        self.members = members

    def fit(self, X, y):
        for m in self.members:
            m.fit(X, y)
        return self

    def predict(self, X):
        return np.mean([m.predict(X) for m in self.members], axis=0)


CLASSES = {c.name: c for c in (LightGBM, Linear, MixingLaw, Quadratic, GaussianProcess)}


def make(name, n_runs, min_data_in_leaf=None):
    """A fresh, unfitted regressor."""
    if name == "lightgbm":
        return LightGBM(leaf_size(n_runs, min_data_in_leaf))
    if name == "ensemble":
        return Ensemble([make(m, n_runs, min_data_in_leaf) for m in ENSEMBLE])
    return CLASSES[name]()


def state(model):
    """What a single regressor's file holds (regression.save_regressor saves an ensemble as its
    members' names)."""
    return dict(name=model.name, **model.state())


def from_state(s):
    return CLASSES[s["name"]].from_state(s)


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


