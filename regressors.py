"""
The regressors of RegMix's fit: validation loss as a function of the mixture weights.

    lightgbm     gradient-boosted trees, the paper's settings (scored exactly and fast by Forest)
    linear       ordinary least squares on the weights, the paper's baseline
    mixing_law   the Data Mixing Law (Ye et al., 2024): L(w) = exp(c) + exp(k + t.w)
    quadratic    ridge regression on the weights and their pairwise products
    gp           a Gaussian process with an isotropic RBF kernel
    ensemble     the mean of lightgbm, mixing_law, quadratic and gp
    per_metric_mixing_law   a target over several metrics: one mixing law per metric, summed
    component_lightgbm      a target over several metrics: a forest for its part along the metrics'
                            first principal component, one for the rest, summed
    per_metric_lightgbm     a target over several metrics: one forest per metric, summed

Each has fit(X, y) -> self (the per-metric ones, and the ensemble, also take the metric
columns Y), predict(X) and state(), the JSON-able dict that from_state() turns back into the same
model (LightGBM keeps its own text format). For a target over several metrics the ensemble also
averages the two per-metric regressors. Smooth models rank large models well from few runs;
LightGBM ranks held-out proxies best once there are hundreds (docs/fit.md: the released sweeps, each
with its command).
"""
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from data import usable_cores
from forest import Forest

# the paper's settings; everything else LightGBM's default. One thread: a few hundred rows give each
# round microseconds of work, and more threads only wait for each other (a fit on the paper's 512
# runs, several times faster on one thread than on two under OMP_WAIT_POLICY=passive). Results do not depend on it.
LGB_PARAMS = dict(objective="regression", boosting="gbdt", learning_rate=1e-2, seed=42, verbose=-1,
                  deterministic=True, num_threads=1)
LGB_ROUNDS = 1000
SINGLE = ("lightgbm", "linear", "mixing_law", "quadratic", "gp")
ENSEMBLE = ("lightgbm", "mixing_law", "quadratic", "gp")  # (linear is quadratic without the products)
NAMES = SINGLE + ("ensemble",)


def leaf_size(n_runs, min_data_in_leaf=None, n_domains=0):
    """LightGBM's min_data_in_leaf: the paper's 20 (LightGBM's default) once there are at least
    120 runs and 10 per domain; 5 below, where 20-row leaves leave trees almost no split (held-out
    rho 0.26 at the first 40 of the paper's runs vs 0.94 with 5; CV rho 0.57 vs 0.95 on Olmix's 127
    runs over 24 domains; docs/stages.md)."""
    return min_data_in_leaf or (20 if n_runs >= max(120, 10 * n_domains) else 5)


_IMPORTING = threading.Lock()


def import_lightgbm():
    """lightgbm, imported without scikit-learn and pandas. Where those are installed (scikit-learn
    is, for prepare.py --cluster), `import lightgbm` loads both, for its scikit-learn estimators and
    its DataFrame input, which we never use: 2 s of every fit and simulate on our 2-core machine, a
    sixth of simulate (python -X importtime shows it). A None in sys.modules makes an import fail (Python's documented
    way); the two entries are removed again at once, so a later `import sklearn` works as usual.
    Whoever wants LightGBM's scikit-learn estimators too imports lightgbm before this runs."""
    with _IMPORTING:  # bootstrap's threads may ask at once
        if "lightgbm" not in sys.modules:
            hidden = [m for m in ("sklearn", "pandas") if m not in sys.modules]
            sys.modules.update(dict.fromkeys(hidden, None))
            try:
                import lightgbm  # noqa: F401
            finally:
                for m in hidden:
                    del sys.modules[m]
    return sys.modules["lightgbm"]


class LightGBM:
    name = "lightgbm"

    def __init__(self, min_data_in_leaf=20, booster=None):
        self.min_data_in_leaf, self.booster, self.forest = min_data_in_leaf, booster, None

    def fit(self, X, y):
        lgb = import_lightgbm()
        params = dict(LGB_PARAMS, min_data_in_leaf=self.min_data_in_leaf)
        # keep_training_booster: the model is not copied through its text on return (a tenth of a fit's time)
        self.booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=LGB_ROUNDS, keep_training_booster=True)
        self.forest = None
        return self

    def predict(self, X):
        if self.forest is None and len(X) < 5000:  # a few rows (cross-validation): not worth the forest's tables
            return self.booster.predict(X, num_threads=1)
        if self.forest is None:
            self.forest = Forest(self.booster)
        return self.forest.predict(X)

    def state(self):
        return dict(min_data_in_leaf=self.min_data_in_leaf, model=self.booster.model_to_string())

    @classmethod
    def from_state(cls, s):
        return cls(s["min_data_in_leaf"], import_lightgbm().Booster(model_str=s["model"]))


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
    """L(w) = exp(c) + exp(k + t.w), fitted to the objective of its authors (yegcjs/mixinglaws
    law.py): the sum of Huber losses (delta 0.01), from many random starts, the best kept.

    They minimise it by L-BFGS; here every start takes Levenberg-Marquardt steps at once, the
    Huber loss written as least squares with weights min(1, delta/|r|) (its gradient exactly). On
    48 of the paper's runs this reaches a lower loss in ~0.1 s than 32 L-BFGS runs do in their 500
    iterations each (~3 s: every one stops at the limit; docs/fit.md's table of regressors). The best start settled within
    50 steps in every fit we tried (the paper's 512 runs, 48 of them, bootstrap resamples): 100
    is the cap."""
    name = "mixing_law"

    def __init__(self, params=None, starts=32, delta=0.01, seed=42, max_steps=100):
        self.params = None if params is None else np.asarray(params)
        self.starts, self.delta, self.seed, self.max_steps = starts, delta, seed, max_steps

    @staticmethod
    def _predict(p, X):
        return np.exp(p[0]) + np.exp(np.minimum(p[1] + X @ p[2:], 50.0))

    def _huber(self, r):
        a = np.abs(r)
        return np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta)).sum(-1)

    def fit(self, X, y, init=()):
        """init: parameter vectors (c, k, t) to start from, besides the random starts."""
        rng = np.random.default_rng(self.seed)
        P = [np.asarray(p, float) for p in init]
        for _ in range(self.starts):
            c = np.log(max(y.min(), 1e-6) * rng.uniform(0.05, 0.95))  # the floor sits below every loss seen
            P.append(np.concatenate([[c, np.log(max(y.mean() - np.exp(c), 1e-6))], rng.normal(0, 1, X.shape[1])]))
        P = np.array(P)                                  # one row of (c, k, t) per start
        A = np.hstack([np.ones((len(X), 1)), X])          # k + t.w as one product

        def evaluate(P):  # residuals and loss of every start; a step that overflows scores inf and is rejected
            with np.errstate(over="ignore", invalid="ignore"):
                e = np.exp(np.minimum(P[:, 1:] @ A.T, 50.0))
                r = np.exp(P[:, :1]) + e - y
                return r, e, self._huber(r)

        r, e, f = evaluate(P)
        damping, stalled = np.full(len(P), 1e-3), np.zeros(len(P), dtype=int)
        eye = np.eye(P.shape[1])
        for _ in range(self.max_steps):
            w = np.minimum(1.0, self.delta / np.maximum(np.abs(r), 1e-300))
            J = np.concatenate([np.broadcast_to(np.exp(P[:, :1, None]), r.shape + (1,)), e[:, :, None] * A], axis=2)
            JW = J * w[:, :, None]
            H = JW.transpose(0, 2, 1) @ J
            g = np.einsum("snp,sn->sp", JW, r)
            H_damped = H + damping[:, None, None] * (eye * H + 1e-12 * eye)  # Marquardt: scaled by diag(H)
            try:
                P_new = P - np.linalg.solve(H_damped, g[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:  # a singular system (a start gone flat): the least-squares step
                P_new = P - (np.linalg.pinv(H_damped) @ g[:, :, None])[:, :, 0]
            r_new, e_new, f_new = evaluate(P_new)
            better = np.isfinite(f_new) & (f_new < f)
            stalled = np.where(better & (f - f_new > 1e-12 * f), 0, stalled + 1)
            P[better], r[better], e[better], f[better] = P_new[better], r_new[better], e_new[better], f_new[better]
            damping = np.clip(np.where(better, damping / 3, damping * 4), 1e-12, 1e12)
            if (stalled >= 10).all():  # no start has gained anything for 10 steps
                break
        self.params = P[np.argmin(f)]
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

    def predict(self, X):
        """The fitted function as a quadratic form, w.a + w'Cw + b: the same numbers as the features
        times their coefficients, without the (rows x D(D+1)/2) matrix of products (1,000,000 x
        153 for the paper's 17 domains)."""
        mu, coef = np.asarray(self.s["mu"]), np.asarray(self.s["coef"])
        D = X.shape[1]
        C = np.zeros((D, D))
        C[np.triu_indices(D)] = coef[D:]
        return X @ coef[:D] + ((X @ C) * X).sum(1) + (self.s["intercept"] - mu @ coef)

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
        """sf2 exp(-|a - b|^2 / 2 ell^2), in place: one (rows x runs) matrix, no temporaries."""
        K = A @ B.T
        K *= 2
        K -= (A ** 2).sum(1)[:, None]
        K -= (B ** 2).sum(1)[None, :]  # now -|a - b|^2
        np.minimum(K, 0, out=K)
        K *= 0.5 / np.exp(2 * log_ell)
        K += log_sf2
        return np.exp(K, out=K)

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

    def predict(self, X, chunk=20_000):
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
    by cross-validation, whose rho is too noisy at ~40 runs to choose by (docs/fit.md)."""
    name = "ensemble"

    def __init__(self, members):
        self.members = members

    def fit(self, X, y, Y=None):
        for m in self.members:
            fit_model(m, X, y, Y)
        return self

    def predict(self, X):
        if len(X) < 5000:  # a few rows (cross-validation, the chosen mixture): threads cost more than they save
            return np.mean([m.predict(X) for m in self.members], axis=0)
        # many rows: the members side by side, as the forest kernel and numpy release the GIL; the
        # kernel scores on every core, and the smooth members fill the gaps it leaves
        with ThreadPoolExecutor(len(self.members)) as pool:
            return np.mean(list(pool.map(lambda m: m.predict(X), self.members)), axis=0)


class PerMetricMixingLaw:
    """One mixing law per metric of a target over several, as Olmix fits one regressor per metric.
    Each law is fitted to its metric's column of Y (weight x metric, positive:
    regression.metric_columns); the target is their sum, plus the constant that --maximize's
    orientation leaves. Each metric's fit starts from the law of the whole target alone, at most 30
    steps: one fit with the mixing law's own 32 random starts took 2.4 s per metric on Olmix's 512
    runs x 64 domains, and 2 random starts besides the warm one lowered CV rho on both of Olmix's
    sweeps when this was written (docs/fit.md has the current figures with their commands)."""
    name = "per_metric_mixing_law"

    def __init__(self, params=None, offset=0.0, top=None):
        self.params = None if params is None else np.asarray(params)  # one row (c, k, t) per metric
        self.offset, self.top = offset, None if top is None else np.asarray(top)

    def fit(self, X, y, Y):
        total = Y.sum(1)
        whole = MixingLaw().fit(X, total).params
        rows = []
        for j in range(Y.shape[1]):
            # each column is fitted at the scale of the whole target (the Huber loss's delta, 0.01, is
            # absolute), then the law is scaled back: exp(c - log a) + exp(k - log a + t.w)
            a = total.mean() / max(Y[:, j].mean(), 1e-12)
            law = MixingLaw(starts=0, max_steps=30).fit(X, a * Y[:, j], init=[whole]).params
            rows.append(law - np.r_[np.log(a), np.log(a), np.zeros(X.shape[1])])
        self.params, self.offset = np.array(rows), float(np.mean(y - total))
        # one of 110 laws that runs off beyond the runs (a steep t, a weight larger than any run's)
        # would swamp the sum: each exponent is capped 1 above the largest it reached on the runs
        self.top = (self.params[:, 1] + X @ self.params[:, 2:].T).max(0) + 1.0
        return self

    def predict(self, X, chunk=100_000):
        P = self.params
        out = np.empty(len(X))
        for i in range(0, len(X), chunk):  # a million rows x 110 metrics at once would be 880 MB
            out[i:i + chunk] = np.exp(np.minimum(P[:, 1] + X[i:i + chunk] @ P[:, 2:].T, self.top)).sum(1)
        return out + np.exp(P[:, 0]).sum() + self.offset

    def state(self):
        return dict(params=self.params.tolist(), offset=self.offset, top=self.top.tolist())

    @classmethod
    def from_state(cls, s):
        return cls(s["params"], s["offset"], s["top"])


class ComponentLightGBM:
    """LightGBM for a target over several metrics. Olmix fits one regressor per metric, but 110
    forests per candidate are too slow to search a million mixtures with, and most metrics move
    together. The target is split in two: its part along the direction the metric columns Y vary
    most (their first principal component across the runs) and the rest, and each part gets its own
    forest. The split is exact (the parts sum to the target on every run), and each part is a
    simpler function of the weights than their sum: it beat the pooled forest's CV rho on both of
    Olmix's sweeps (127 runs x 24 domains, 512 x 64) when this was written (docs/fit.md's table has
    what fit chooses on each sweep today, with the command)."""
    name = "component_lightgbm"
    COMPONENTS = 1  # 2 or 3 (and the rest) did no better on either sweep, at one forest more each

    def __init__(self, min_data_in_leaf=20, parts=(), scale=(), offset=0.0):
        self.min_data_in_leaf, self.parts = min_data_in_leaf, list(parts)
        self.scale, self.offset = np.asarray(scale, float), offset

    def fit(self, X, y, Y):
        centred = Y - Y.mean(0)
        V = np.linalg.svd(centred, full_matrices=False)[2][:self.COMPONENTS]  # directions across the metrics
        scores = centred @ V.T  # each run along them
        along = V.sum(1)  # what one unit along a direction adds to the target (the sum of the columns)
        rest = y - y.mean() - scores @ along
        self.scale, self.offset = np.r_[along, 1.0], float(y.mean())
        self.parts = [LightGBM(self.min_data_in_leaf).fit(X, part) for part in np.column_stack([scores, rest]).T]
        return self

    def predict(self, X):
        return self.offset + sum(a * part.predict(X) for a, part in zip(self.scale, self.parts))

    def state(self):
        return dict(min_data_in_leaf=self.min_data_in_leaf, scale=self.scale.tolist(), offset=self.offset,
                    models=[part.booster.model_to_string() for part in self.parts])

    @classmethod
    def from_state(cls, s):
        lgb = import_lightgbm()
        parts = [LightGBM(s["min_data_in_leaf"], lgb.Booster(model_str=m)) for m in s["models"]]
        return cls(s["min_data_in_leaf"], parts, s["scale"], s["offset"])


class PerMetricLightGBM:
    """One forest per metric of a target over several, their predictions summed (as Olmix fits
    them). On the paper's 512 1M runs, --target all (the mean of its validation losses), it ranks
    the 256 held-out runs better than one forest of the mean (docs/fit.md's table). Many forests are slow
    to score a million candidates with, so a search is screened: one forest of the whole target
    ranks every candidate, and only its best SCREEN_KEEP get every metric's forest; the others
    score +inf (never chosen). Predictions of fewer rows are always every forest's."""
    name = "per_metric_lightgbm"
    SCREEN_KEEP = 20_000

    def __init__(self, min_data_in_leaf=20, parts=(), offset=0.0, screen=None):
        self.min_data_in_leaf, self.parts, self.offset, self.screen = min_data_in_leaf, list(parts), offset, screen

    def fit(self, X, y, Y):
        columns = list(Y.T) + [y]  # the last forest, of the whole target, is the screen
        with ThreadPoolExecutor(min(len(columns), usable_cores())) as pool:  # LightGBM releases the GIL
            models = list(pool.map(lambda col: LightGBM(self.min_data_in_leaf).fit(X, col), columns))
        self.parts, self.screen = models[:-1], models[-1]
        self.offset = float(np.mean(y - Y.sum(1)))  # what --maximize's orientation adds to the sum
        return self

    def predict(self, X):
        keep = np.arange(len(X))
        out = None
        if len(X) > 2 * self.SCREEN_KEEP:
            rough = self.screen.predict(X)
            keep = np.argpartition(rough, self.SCREEN_KEEP)[:self.SCREEN_KEEP]
            out = np.full(len(X), np.inf)
        full = self.offset + sum(part.predict(X[keep]) for part in self.parts)
        if out is None:
            return full
        out[keep] = full
        return out

    def state(self):
        return dict(min_data_in_leaf=self.min_data_in_leaf, offset=self.offset,
                    models=[m.booster.model_to_string() for m in self.parts + [self.screen]])

    @classmethod
    def from_state(cls, s):
        lgb = import_lightgbm()
        models = [LightGBM(s["min_data_in_leaf"], lgb.Booster(model_str=m)) for m in s["models"]]
        return cls(s["min_data_in_leaf"], models[:-1], s["offset"], models[-1])


CLASSES = {c.name: c for c in (LightGBM, Linear, MixingLaw, Quadratic, GaussianProcess, PerMetricMixingLaw,
                               ComponentLightGBM, PerMetricLightGBM)}
# for a target over several metrics
PER_METRIC = (PerMetricMixingLaw.name, ComponentLightGBM.name, PerMetricLightGBM.name)
ENSEMBLE_PER_METRIC = (PerMetricMixingLaw.name, ComponentLightGBM.name)  # the ensemble's (one forest per metric is slow to score)


def ensemble_names(several=False):
    """The ensemble's members: with a target over several metrics, the per-metric regressors too
    (on Olmix's 127 x 24 sweep they raised the ensemble's CV rho when this was written)."""
    return ENSEMBLE + (ENSEMBLE_PER_METRIC if several else ())


def make(name, n_runs, min_data_in_leaf=None, n_domains=0, members=ENSEMBLE):
    """A fresh, unfitted regressor (members: the ensemble's, by name)."""
    if name in ("lightgbm", "component_lightgbm", "per_metric_lightgbm"):
        return CLASSES[name](leaf_size(n_runs, min_data_in_leaf, n_domains))
    if name == "ensemble":
        return Ensemble([make(m, n_runs, min_data_in_leaf, n_domains) for m in members])
    return CLASSES[name]()


def fit(name, X, y, min_data_in_leaf=None, to_score=False, Y=None, members=None):
    """A fitted regressor. to_score: it will score many rows, so LightGBM's forest tables are built
    now, in the caller's thread: bootstrap and propose fit in a thread pool and
    then score one model at a time, each scoring on every core. Y: the target's metric columns,
    which the per-metric regressors fit (regression.metric_columns). members: the ensemble's
    (fit.json's ensemble_members; by default all of ensemble_names)."""
    several = Y is not None and Y.shape[1] > 1
    model = fit_model(make(name, len(y), min_data_in_leaf, X.shape[1], members or ensemble_names(several)), X, y, Y)
    for m in forests(model) if to_score else []:
        m.forest = Forest(m.booster)
    return model


def fit_model(model, X, y, Y):
    """model.fit: the per-metric regressors, and an ensemble that may hold them, also take Y."""
    X, y, Y = within_budget(model.name, X, y, Y)
    return model.fit(X, y, Y) if model.name in PER_METRIC + ("ensemble",) else model.fit(X, y)


# One fit's cost grows with the runs, the gp's as runs^3: 10,000 runs x 100 domains would take one
# gp fit hours. Past FIT_BUDGET (about 10 s of one core here) a regressor trains on a random subset
# of the runs, never fewer than MIN_BUDGET_RUNS: the sweeps of the paper (512, 768) and Olmix (512) fit
# on every run, as before. regression.say_budget prints what was subsampled.
FIT_BUDGET = 2e10
MIN_BUDGET_RUNS = 800  # (so that the 768 released 1M runs of the paper fit whole, as bench/rounds.py's oracle always did)


def fit_cost(name, n, D, M=1):
    """Rough operations of one fit of `name` on n runs x D domains (M metrics), from what it does."""
    p = D + D * (D + 1) // 2                 # the quadratic's features
    law = 32 * 100 * n * (D + 2) ** 2        # starts x steps x the normal equations of the mixing law
    forest = LGB_ROUNDS * 20 * n * D         # rounds x a histogram pass over runs x domains
    return {"linear": n * D * D, "lightgbm": forest, "mixing_law": law, "quadratic": n * p * min(n, p),
            "gp": 100 * n ** 3,               # L-BFGS's evaluations x a Cholesky and an inverse each
            "per_metric_mixing_law": law + M * 30 * n * (D + 2) ** 2, "component_lightgbm": 2 * forest,
            "per_metric_lightgbm": (M + 1) * forest}.get(name, 0)  # (an ensemble's members count alone)


def max_runs(name, n, D, M=1):
    """The most runs of n that `name` is trained on within FIT_BUDGET (n: all of them)."""
    if n <= MIN_BUDGET_RUNS or fit_cost(name, n, D, M) <= FIT_BUDGET:
        return n
    lo, hi = MIN_BUDGET_RUNS, n  # the cost grows with the runs: the largest within the budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fit_cost(name, mid, D, M) <= FIT_BUDGET else (lo, mid - 1)
    return lo


def within_budget(name, X, y, Y):
    """(X, y, Y), or a random subset of max_runs rows of them (the same for the same number of runs)."""
    m = max_runs(name, len(y), X.shape[1], 1 if Y is None else Y.shape[1])
    if m == len(y):
        return X, y, Y
    idx = np.sort(np.random.default_rng(len(y)).choice(len(y), m, replace=False))
    return X[idx], y[idx], None if Y is None else Y[idx]


def forests(model):
    """Every LightGBM inside a model (itself, an ensemble's members, a component forest's parts)."""
    if isinstance(model, LightGBM):
        return [model]
    screen = [model.screen] if getattr(model, "screen", None) else []
    return [f for m in getattr(model, "members", []) + getattr(model, "parts", []) + screen for f in forests(m)]


def one_blas_thread():
    """Fits are small problems (hundreds of runs x tens of domains): BLAS's threads there only
    wait for each other, spinning, and beside other work they stall. One L-BFGS run of the mixing
    law took a hundred times longer on default threads than on one, on a busy 2-core machine. Fits
    and searches run inside this; the 1,000,000-candidate predictions keep BLAS's threads."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1, user_api="blas")


def state(model):
    """What a single regressor's file holds (regression.save_regressor saves an ensemble as its
    members' names)."""
    return dict(name=model.name, **model.state())


def from_state(s):
    return CLASSES[s["name"]].from_state(s)
