"""Data Mixing Laws: validation loss as an exponential function of the mixture (arXiv 2403.16952).

Ye et al. (Eq. 6, "multiple domains") model the loss of target domain j under a mixture ``r`` (on the
simplex, k training domains) as

    L_j(r) = c_j + k_j * exp(sum_i t_ij r_i),        c_j, k_j > 0, t_ij free.

Because ``sum_i r_i = 1``, adding a constant to every ``t_ij`` and dividing ``k_j`` by its exponential
leaves the law unchanged; mixlab fixes the gauge ``sum_i t_ij = 0`` (the last ``t`` is minus the sum
of the others), so the fitted parameters are unique and their covariance is well defined. The fit is
the same robust procedure as BiMix (:mod:`mixlab.laws._nls`): ``log c, log k`` and the free ``t`` by
Huber least squares on ``log L``, several starts. Starts come from variable projection: for a given
``t`` the law is linear in ``(c, k)``; the candidate ``t`` are a log-linear regression of
``L - q min(L)`` on ``r`` for a few ``q`` and seeded random draws.

The law has no step term: it predicts the loss at the step its training points were measured at (the
paper nests it with a step scaling law to predict later steps; see ``bench/laws_real.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, DataError, NotFittedError
from mixlab.laws._inputs import r2
from mixlab.laws._nls import robust_least_squares
from mixlab.laws._simplex import minimize_on_simplex, resolve_constraints
from mixlab.mixture import Mixture, MixtureConstraints


class _DMLSettings:
    """The fitting settings that :class:`DataMixingLaw` and :class:`NestedDataMixingLaw` share (one
    constructor, one ``get_params``; the nested law passes them to each :class:`DataMixingLaw` it fits)."""

    def __init__(
        self,
        loss: str = "huber",
        f_scale: float | None = None,
        n_init: int = 6,
        space: str = "log",
        t_bound: float = 30.0,
        seed: int = 0,
    ) -> None:
        self.loss = loss
        self.f_scale = f_scale
        self.n_init = n_init
        self.space = space
        self.t_bound = t_bound
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("loss", "f_scale", "n_init", "space", "t_bound", "seed")}


class DataMixingLaw(_DMLSettings):
    """``L_j(r) = c_j + k_j exp(t_j . r)`` per target j (arXiv 2403.16952 Eq. 6), estimator style.

    Parameters
    ----------
    loss, f_scale : least-squares loss and Huber scale (``None``: estimated, as for BiMix).
    n_init : starting points per target.
    space : ``"log"`` (relative residuals, default) or ``"linear"``.
    t_bound : bound on ``|t_ij|`` (keeps the exponential finite during the search).
    seed : seeds the random starting points.

    Usage: ``DataMixingLaw().fit(X, y)`` with mixtures ``X`` ``[n, k]`` (rows on the simplex) and
    losses ``y`` ``[n]`` (one target) or ``[n, m]``; ``predict(X)`` returns the same shape as ``y``.

    Fitted attributes: ``c_ [m]``, ``k_ [m]``, ``t_ [m, k]``, ``cov_`` (list of per-target covariances
    of ``(log c, log k, t_1..t_{k-1})``), ``stderr_`` (dict of ``c``, ``k``, ``t`` standard errors),
    ``r2_ [m]``, ``mre_ [m]``, ``n_features_in_``, ``n_targets_``.
    """

    @staticmethod
    def _unpack(theta: np.ndarray) -> tuple[float, float, np.ndarray]:
        free = theta[2:]
        t = np.append(free, -free.sum())
        return float(np.exp(theta[0])), float(np.exp(theta[1])), t

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> DataMixingLaw:
        if self.space not in ("log", "linear"):
            raise ConfigError(f"DataMixingLaw space must be 'log' or 'linear', got {self.space!r}")
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if X.ndim != 2:
            raise DataError(f"X must be a [n, k] matrix of mixtures, got shape {X.shape}")
        self._y_1d = y.ndim == 1
        Y = y[:, None] if y.ndim == 1 else y
        n, k = X.shape
        if Y.shape[0] != n:
            raise DataError(f"X has {n} rows but y has {Y.shape[0]}")
        if k < 2:
            raise DataError("a data mixing law needs at least 2 training domains")
        if not np.all(np.isfinite(X)) or np.any(X < 0):
            raise DataError("mixtures X must be finite and non-negative")
        if np.any(np.abs(X.sum(axis=1) - 1) > 1e-3):
            raise DataError("each mixture row of X must sum to 1 (proportions over the training domains)")
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        n_params = k + 1
        rng = np.random.default_rng(self.seed)
        self.c_, self.k_, self.t_, self.cov_ = np.zeros(Y.shape[1]), np.zeros(Y.shape[1]), np.zeros((Y.shape[1], k)), []
        self.r2_, self.mre_ = np.zeros(Y.shape[1]), np.zeros(Y.shape[1])
        se_c, se_k, se_t = [], [], []
        for j in range(Y.shape[1]):
            ok = np.isfinite(Y[:, j])
            Xj, yj, wj = X[ok], Y[ok, j], w[ok]
            if np.any(yj <= 0):
                raise DataError(f"target {j}: losses must be positive")
            if yj.size < n_params + 1:
                raise DataError(
                    f"target {j}: {yj.size} mixtures for a law with {n_params} free parameters "
                    f"(k + 1 with k = {k} domains); need at least {n_params + 1}: add proxy runs"
                )
            theta, cov = self._fit_one(Xj, yj, wj, rng)
            c, kk, t = self._unpack(theta)
            self.c_[j], self.k_[j], self.t_[j] = c, kk, t
            self.cov_.append(cov)
            pred = c + kk * np.exp(Xj @ t)
            self.r2_[j] = r2(yj, pred)
            self.mre_[j] = float(np.mean(np.abs(pred - yj) / yj))
            sd = np.sqrt(np.clip(np.diag(cov), 0, None))
            se_c.append(c * sd[0])
            se_k.append(kk * sd[1])
            # the last t is minus the sum of the free ones: var = 1^T C 1
            var_last = float(np.ones(k - 1) @ cov[2:, 2:] @ np.ones(k - 1))
            se_t.append(np.append(sd[2:], np.sqrt(max(var_last, 0.0))))
        self.stderr_ = {"c": np.array(se_c), "k": np.array(se_k), "t": np.array(se_t)}
        self.n_features_in_ = k
        self.n_targets_ = Y.shape[1]
        return self

    def _fit_one(self, X, y, w, rng) -> tuple[np.ndarray, np.ndarray]:
        sw = np.sqrt(w)
        ly = np.log(y)
        k = X.shape[1]

        def pred_of(theta):
            c, kk, t = self._unpack(theta)
            return c + kk * np.exp(np.clip(X @ t, -700, 700))

        D = X[:, :-1] - X[:, -1:]  # d (X t) / d t_free under the zero-sum gauge

        def dpred(theta):
            c, kk, t = self._unpack(theta)
            e = kk * np.exp(np.clip(X @ t, -700, 700))
            return np.concatenate([np.full((X.shape[0], 1), c), e[:, None], e[:, None] * D], axis=1)

        if self.space == "log":
            def resid(theta):
                return sw * (np.log(pred_of(theta)) - ly)

            def jac(theta):
                return (sw / pred_of(theta))[:, None] * dpred(theta)
        else:
            def resid(theta):
                return sw * (pred_of(theta) - y)

            def jac(theta):
                return sw[:, None] * dpred(theta)

        def project(t: np.ndarray) -> np.ndarray | None:
            t = t - t.mean()
            z = np.exp(np.clip(X @ t, -700, 700))
            A = np.stack([np.ones_like(z), z], axis=1) / y[:, None]
            coef, *_ = np.linalg.lstsq(A * sw[:, None], sw, rcond=None)
            c, kk = coef
            if kk <= 0:
                return None
            c = max(c, 1e-3 * float(y.min()))
            return np.concatenate([[np.log(c), np.log(kk)], np.clip(t[:-1], -self.t_bound, self.t_bound)])

        cands = []
        for q in (0.0, 0.5, 0.8, 0.9, 0.95, 0.99):
            target = np.log(np.maximum(y - q * y.min(), 1e-12))
            A = np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)
            coef, *_ = np.linalg.lstsq(A * sw[:, None], target * sw, rcond=None)
            cands.append(coef[:k])
        cands.append(np.zeros(k))
        for _ in range(max(0, int(self.n_init))):
            cands.append(rng.normal(0, 1.0, k))
        starts = []
        for t in cands:
            th = project(np.asarray(t, dtype=float))
            if th is not None:
                starts.append((float(np.sum(resid(th) ** 2)), th))
        starts.sort(key=lambda p: p[0])
        x0s = [th for _, th in starts[: max(1, int(self.n_init))]] or [
            np.concatenate([[np.log(0.5 * y.min()), np.log(0.5 * y.mean())], np.zeros(k - 1)])
        ]
        lo = np.concatenate([[-20.0, -20.0], np.full(k - 1, -self.t_bound)])
        hi = np.concatenate([[10.0, 10.0], np.full(k - 1, self.t_bound)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = robust_least_squares(resid, x0s, bounds=(lo, hi), loss=self.loss, f_scale=self.f_scale, jac_fn=jac)
        return res.theta, res.cov

    def _check(self) -> None:
        if not hasattr(self, "t_"):
            raise NotFittedError("DataMixingLaw is not fitted yet: call fit() first")

    def predict(self, X: Any) -> np.ndarray:
        """Predicted losses, ``[n]`` if fitted on one target else ``[n, m]``."""
        self._check()
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} columns, the law was fitted on {self.n_features_in_} domains")
        out = self.c_[None, :] + self.k_[None, :] * np.exp(np.clip(X @ self.t_.T, -700, 700))
        return out[:, 0] if self._y_1d else out

    def optimize(
        self,
        weights: Sequence[float] | None = None,
        constraints: MixtureConstraints | None = None,
        domains: Sequence[str] | None = None,
    ) -> np.ndarray | Mixture:
        """The mixture minimising ``sum_j w_j L_j(r)`` over the simplex within ``constraints``.

        The objective is convex (an exponential of a linear function), so SLSQP's optimum is global.
        ``weights`` over targets default to equal. With ``domains`` the result is a :class:`Mixture`
        (and constraints are matched by name), otherwise a weight vector.
        """
        self._check()
        m, k = self.t_.shape
        wv = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=float).ravel()
        if wv.size != m or np.any(wv < 0) or wv.sum() <= 0:
            raise ConfigError(f"objective weights must be {m} non-negative numbers with a positive sum")
        if domains is not None and len(domains) != k:
            raise ConfigError(f"got {len(domains)} domain names for a law over {k} domains")
        if constraints is not None:
            cons = resolve_constraints(list(domains) if domains is not None else list(constraints.domains), constraints)
        else:
            cons = MixtureConstraints.unconstrained([f"d{i}" for i in range(k)])

        def fun(r):
            return float(np.sum(wv * (self.c_ + self.k_ * np.exp(self.t_ @ r))))

        def jac(r):
            e = self.k_ * np.exp(self.t_ @ r) * wv
            return self.t_.T @ e

        starts = [np.eye(k)[i] * 0.5 + 0.5 / k for i in range(k)]
        r = minimize_on_simplex(fun, jac, np.full(k, 1.0 / k), cons.lower, cons.upper, extra_starts=starts)
        return Mixture.from_weights(r, list(domains)) if domains is not None else r

    def to_dict(self) -> dict[str, Any]:
        self._check()
        return {"law": "dml", "c": self.c_.tolist(), "k": self.k_.tolist(), "t": self.t_.tolist(),
                "r2": self.r2_.tolist(), "mre": self.mre_.tolist()}


def dml_from_mappings(mixtures: Sequence[Mapping[str, float]], domains: Sequence[str]) -> np.ndarray:
    """Mixtures keyed by domain name as an ``[n, k]`` matrix aligned with ``domains``."""
    return np.array([[float(m.get(d, 0.0)) for d in domains] for m in mixtures])


_STEP_EXPONENTS = np.geomspace(0.05, 3.0, 60)
_DEFAULT_STEP_EXPONENT = 0.5


class NestedDataMixingLaw(_DMLSettings):
    """The Data Mixing Law on loss curves, nested with a step law (arXiv 2403.16952 Sec. 4).

    :class:`DataMixingLaw` has no step term: it maps a mixture to the loss at one step. The paper
    predicts a later step by nesting it with a scaling law in steps; mixlab does the same on a long
    table (one row per evaluation of a run):

    1. each run's curve of each loss domain follows ``L(s) = E + B s^-b`` with one exponent ``b`` per
       loss domain shared by the runs (``b`` profiled over a grid; for a fixed ``b`` each run's
       ``E, B`` are a linear least-squares fit). Runs with 3 or more steps inform ``b``; a run with 2
       steps is fitted exactly, a run with 1 step only gives its loss at that step.
    2. at a query step ``s``, each run contributes its observed loss when it was evaluated at ``s``,
       else its step law's value at ``s``; ``L_j(r) = c_j + k_j exp(t_j . r)`` is fitted on those
       (one :class:`DataMixingLaw` per query step, cached) and predicts the query mixtures.

    Unlike BiMix, a loss domain need not be a mixture domain. The arguments are
    :class:`DataMixingLaw`'s.

    Fitted attributes: ``domains_``, ``loss_domains_``, ``mixtures_`` (``[runs, k]``), ``E_``, ``B_``
    (``[runs, m]``, NaN where a run cannot be extrapolated), ``b_`` (``[m]``), ``observed_`` (run ->
    ``{step: [m] losses}``).
    """

    def fit(
        self,
        mixtures: Any,
        steps: Any,
        losses: Any,
        *,
        domains: Sequence[str],
        loss_domains: Sequence[str] | None = None,
        runs: Any = None,
        sample_weight: Any = None,
    ) -> NestedDataMixingLaw:
        """Fit the step law of every run (see the class docstring); ``runs`` labels each row's run
        (default: rows with the same mixture are one run). ``sample_weight`` is not used."""
        R = np.atleast_2d(np.asarray(mixtures, dtype=float))
        s = np.asarray(steps, dtype=float).ravel()
        Y = np.asarray(losses, dtype=float)
        Y = Y[:, None] if Y.ndim == 1 else Y
        if not (R.shape[0] == s.size == Y.shape[0]):
            raise DataError(f"mixtures ({R.shape[0]} rows), steps ({s.size}) and losses ({Y.shape[0]}) differ in length")
        if R.shape[1] != len(domains):
            raise DataError(f"mixtures have {R.shape[1]} columns for {len(domains)} domains")
        labels = np.round(R, 12) if runs is None else np.asarray(runs)
        _, run = np.unique(labels, axis=0 if labels.ndim > 1 else None, return_inverse=True)
        run = np.asarray(run).ravel()
        n_runs, m = int(run.max()) + 1, Y.shape[1]
        if n_runs < R.shape[1] + 2:
            raise DataError(
                f"the Data Mixing Law fits k + 1 = {R.shape[1] + 1} coefficients per loss domain from one loss per "
                f"run; {n_runs} runs given, need at least {R.shape[1] + 2}: add proxy runs"
            )
        self.mixtures_ = np.stack([R[run == u][0] for u in range(n_runs)])
        self.observed_: dict[int, dict[float, list[float]]] = {}
        for u in range(n_runs):
            rows = np.nonzero(run == u)[0]
            self.observed_[u] = {float(s[i]): Y[i].tolist() for i in rows}
        self.E_ = np.full((n_runs, m), np.nan)
        self.B_ = np.full((n_runs, m), np.nan)
        self.b_ = np.full(m, _DEFAULT_STEP_EXPONENT)
        for j in range(m):
            curves = []
            for u in range(n_runs):
                rows = np.nonzero((run == u) & np.isfinite(Y[:, j]))[0]
                curves.append((s[rows], Y[rows, j]))
            self._fit_step_law(j, curves)
        self.domains_ = list(domains)
        self.loss_domains_ = list(loss_domains) if loss_domains is not None else list(domains)
        self._laws: dict[float, DataMixingLaw] = {}
        return self

    def _fit_step_law(self, j: int, curves: list[tuple[np.ndarray, np.ndarray]]) -> None:
        def solve(b: float):
            sse, coefs = 0.0, []
            for x, y in curves:
                if np.unique(x).size < 2:
                    coefs.append((np.nan, np.nan))
                    continue
                A = np.stack([np.ones_like(x), x**-b], axis=1)
                c, *_ = np.linalg.lstsq(A, y, rcond=None)
                sse += float(np.sum((A @ c - y) ** 2)) if np.unique(x).size >= 3 else 0.0
                coefs.append((float(c[0]), float(c[1])))
            return sse, coefs

        informative = any(np.unique(x).size >= 3 for x, _ in curves)
        grid = _STEP_EXPONENTS if informative else [_DEFAULT_STEP_EXPONENT]
        best = min((solve(b) + (b,) for b in grid), key=lambda t: t[0])
        _, coefs, self.b_[j] = best
        for u, (e, bb) in enumerate(coefs):
            self.E_[u, j], self.B_[u, j] = e, bb

    def _check(self) -> None:
        if not hasattr(self, "E_"):
            raise NotFittedError("NestedDataMixingLaw is not fitted yet: call fit() first")

    def values_at(self, step: float) -> np.ndarray:
        """Each run's loss at ``step`` (observed, else its step law's value; NaN if neither), ``[runs, m]``."""
        self._check()
        out = self.E_ + self.B_ * float(step) ** -self.b_[None, :]
        for u, obs in self.observed_.items():
            if float(step) in obs:
                seen = np.asarray(obs[float(step)], dtype=float)
                out[u] = np.where(np.isfinite(seen), seen, out[u])
        return out

    def law_at(self, step: float) -> DataMixingLaw:
        """The Data Mixing Law fitted on every run's loss at ``step`` (cached)."""
        self._check()
        key = float(step)
        if key not in self._laws:
            v = self.values_at(key)
            usable = int(np.min(np.sum(np.isfinite(v), axis=0)))
            k = self.mixtures_.shape[1]
            if usable < k + 2:
                raise DataError(
                    f"only {usable} runs give a loss at step {key:g} (observed there or extrapolated from >= 2 "
                    f"steps); the Data Mixing Law needs at least {k + 2}"
                )
            X = self.mixtures_ / self.mixtures_.sum(axis=1, keepdims=True)
            self._laws[key] = DataMixingLaw(**self.get_params()).fit(X, v)
        return self._laws[key]

    def predict(self, mixtures: Any, steps: Any) -> np.ndarray:
        """Predicted losses ``[n, m]`` for ``n`` mixtures (rows over ``domains_``) at ``steps``."""
        self._check()
        R = np.atleast_2d(np.asarray(mixtures, dtype=float))
        s = np.broadcast_to(np.asarray(steps, dtype=float), (R.shape[0],))
        out = np.zeros((R.shape[0], len(self.loss_domains_)))
        for step in np.unique(s):
            rows = s == step
            out[rows] = np.asarray(self.law_at(step).predict(R[rows])).reshape(int(rows.sum()), -1)
        return out

    def optimize(
        self, step: float, weights: Mapping[str, float] | None = None, constraints: MixtureConstraints | None = None,
    ) -> Mixture:
        """The mixture minimising the weighted sum of the predicted losses at ``step`` (equal weights
        over ``loss_domains_`` by default); see :meth:`DataMixingLaw.optimize`."""
        self._check()
        wv = None if weights is None else [float(weights.get(d, 0.0)) for d in self.loss_domains_]
        return self.law_at(step).optimize(weights=wv, constraints=constraints, domains=self.domains_)

    def to_state(self) -> dict[str, Any]:
        """The fitted law as plain JSON-able data (:meth:`from_state` rebuilds it; no pickle)."""
        self._check()
        return {
            "params": self.get_params(), "domains": self.domains_, "loss_domains": self.loss_domains_,
            "mixtures": self.mixtures_.tolist(), "E": _nan_list(self.E_), "B": _nan_list(self.B_),
            "b": self.b_.tolist(),
            "observed": [[[s, _nan_list([y])[0]] for s, y in self.observed_[u].items()] for u in range(len(self.mixtures_))],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> NestedDataMixingLaw:
        model = cls(**state["params"])
        model.domains_ = list(state["domains"])
        model.loss_domains_ = list(state["loss_domains"])
        model.mixtures_ = np.asarray(state["mixtures"], dtype=float)
        model.E_ = np.array(state["E"], dtype=float)
        model.B_ = np.array(state["B"], dtype=float)
        model.b_ = np.asarray(state["b"], dtype=float)
        model.observed_ = {
            u: {float(s): [np.nan if v is None else float(v) for v in y] for s, y in obs}
            for u, obs in enumerate(state["observed"])
        }
        model._laws = {}
        return model


def _nan_list(a: np.ndarray) -> list:
    """An array as nested lists with NaN as ``None`` (JSON has no NaN)."""
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]
