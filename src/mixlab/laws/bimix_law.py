"""BiMix's law of one domain: the loss in the domain's proportion and the training steps.

BiMix (arXiv 2405.14908, Eq. 3) models the validation loss of domain i after ``s`` training steps on a
mixture that gives the domain proportion ``r_i`` as

    L_i(r_i, s) = (A_i / r_i^alpha_i) * (B_i / s^beta_i + C_i),     all coefficients > 0.

The five coefficients are not all identifiable: ``(A, B, C) -> (k A, B / k, C / k)`` leaves the law
unchanged. mixlab fixes the gauge ``C_i = 1``, so ``A_i`` is the loss at ``r_i = 1`` as
``s -> inf`` and ``B_i`` the relative excess loss at ``s = 1``; the other four are fitted in log
space (``log A, log alpha, log B, log beta``), which keeps them positive and the problem well
conditioned. Residuals are taken on ``log L`` by default (relative errors, the paper's metric) with a
Huber loss and several starting points from a variable-projection grid: for fixed ``(alpha, beta)``
the law ``L r^alpha = A B s^-beta + A`` is linear in ``(A B, A)``, so every grid point gets its
exact best ``A, B`` by linear least squares and the best grid points start the non-linear fit.

:class:`BiMixLaw` is this one-domain law (fit, predict, uncertainty); the model over all modelled
domains, with the optimal mixture, is :class:`~mixlab.laws.bimix.BiMixModel`.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from scipy.stats import norm

from mixlab.errors import ConfigError, DataError, MixlabError, NotFittedError
from mixlab.laws._inputs import check_fitted, r2
from mixlab.laws._nls import robust_least_squares
from mixlab.laws._run_effects import RunBlock, fit_proportion_term, fit_step_terms, run_index

log = logging.getLogger(__name__)

PARAM_NAMES = ("A", "alpha", "B", "beta", "C")
LAW_PARAMS = ("loss", "f_scale", "n_init", "space", "step_weight", "min_points", "min_step")
LOG_BOUNDS = (
    np.array([-10.0, np.log(1e-6), -20.0, np.log(1e-4)]),
    np.array([10.0, np.log(5.0), 40.0, np.log(5.0)]),
)
STAT_ATTRS = ("r2_", "r2_log_", "mre_", "n_points_", "n_excluded_")
_ALPHA_GRID = np.array([1e-3, 3e-3, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25, 0.4, 0.7])
_BETA_GRID = np.geomspace(0.02, 3.0, 16)


def log_predict(theta: np.ndarray, lr: np.ndarray, ls: np.ndarray) -> np.ndarray:
    log_a, log_alpha, log_b, log_beta = theta
    return log_a - np.exp(log_alpha) * lr + np.logaddexp(0.0, log_b - np.exp(log_beta) * ls)


def log_jacobian(theta: np.ndarray, lr: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """d log L / d theta, [n, 4]."""
    _, log_alpha, log_b, log_beta = theta
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    sig = 1.0 / (1.0 + np.exp(-(log_b - beta * ls)))
    return np.stack([np.ones_like(lr), -alpha * lr, sig, -sig * beta * ls], axis=1)



class BiMixLaw:
    """One domain's BiMix law ``L(r, s) = (A / r^alpha) (B / s^beta + C)`` (arXiv 2405.14908 Eq. 3).

    Parameters
    ----------
    loss : least-squares loss, ``"huber"`` (default), ``"soft_l1"`` or ``"linear"``.
    f_scale : Huber scale on the residuals; ``None`` estimates it from a first non-robust fit.
    n_init : number of starting points (the best of the variable-projection grid).
    space : ``"log"`` fits ``log L`` (relative errors, default); ``"linear"`` fits ``L``.
    step_weight : points are weighted by ``(s / max s)^step_weight`` (0 = equal weights); a positive
        value favours the late part of the curve, which matters when the law is used to extrapolate.
    min_points : fewer usable points than this raise :class:`~mixlab.errors.DataError`.
    min_step : points evaluated before this step are dropped (warm-up, where the loss does not follow
        a power law in steps yet).
    run_effects : fit the step term within runs (``fit(..., runs=...)`` names each point's proxy run):
        each run gets a free offset while ``B, beta`` are fitted, then ``A, alpha`` are fitted to the
        offsets (:mod:`mixlab.laws._run_effects`). A run's deviation from ``A / r^alpha`` then cannot
        bend the step term. The law's form is unchanged.

    Fitted attributes: ``A_, alpha_, B_, beta_, C_`` (``C_ = 1``, the gauge), ``params_`` (dict),
    ``theta_`` (log-parameters), ``cov_`` (their covariance), ``stderr_`` (standard errors of the
    natural parameters, delta method), ``r2_`` (on L), ``r2_log_`` (on log L), ``mre_`` (mean
    relative error on the fitted points), ``n_points_``, ``n_excluded_``.
    """

    def __init__(
        self,
        loss: str = "huber",
        f_scale: float | None = None,
        n_init: int = 5,
        space: str = "log",
        step_weight: float = 0.0,
        min_points: int = 6,
        min_step: float = 0.0,
        run_effects: bool = False,
    ) -> None:
        self.loss = loss
        self.f_scale = f_scale
        self.n_init = n_init
        self.space = space
        self.step_weight = step_weight
        self.min_points = min_points
        self.min_step = min_step
        self.run_effects = run_effects

    def _prepare(self, r, s, y, sample_weight, name: str):
        r = np.asarray(r, dtype=float).ravel()
        s = np.asarray(s, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
        if not (r.shape == s.shape == y.shape):
            raise DataError(f"{name}: r, s and loss must have the same length, got {r.size}, {s.size}, {y.size}")
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        if w.shape != y.shape or np.any(~np.isfinite(w)) or np.any(w < 0):
            raise DataError(f"{name}: sample_weight must be finite, >= 0 and one per point")
        bad = ~(np.isfinite(r) & np.isfinite(s) & np.isfinite(y))
        if bad.any():
            raise DataError(f"{name}: {int(bad.sum())} point(s) have a NaN/inf proportion, step or loss; remove them")
        if np.any(r < 0) or np.any(r > 1 + 1e-9):
            raise DataError(f"{name}: proportions must lie in [0, 1]")
        if np.any(s <= 0):
            raise DataError(f"{name}: steps must be positive (the law has s^-beta); drop step-0 evaluations")
        if np.any(y <= 0):
            raise DataError(f"{name}: losses must be positive")
        zero = r <= 0
        if zero.any():
            msg = (
                f"{name}: {int(zero.sum())} point(s) with proportion 0 excluded from the BiMix fit "
                "(the law predicts an infinite loss at r = 0)"
            )
            warnings.warn(msg, stacklevel=3)
            log.warning(msg)
        return r, s, y, w, ~zero

    def fit(self, r, s, loss, sample_weight=None, *, runs=None, name: str = "domain") -> BiMixLaw:
        """Fit from observations ``(r_i, s, L_i)``; ``runs`` labels each point's proxy run (needed by
        ``run_effects``, ignored otherwise); ``name`` only labels error messages."""
        self._load(r, s, loss, sample_weight, runs=runs, name=name)
        if self.run_effects:
            self.fit_within([self], share_beta=False, loss=self.loss, f_scale=self.f_scale, n_init=self.n_init)
            return self
        r, s, y, w = self._data
        resid, jac = self._residual_fns()
        starts = self._starts(np.log(r), np.log(s), y, w)
        res = robust_least_squares(
            resid, starts, bounds=LOG_BOUNDS, loss=self.loss, f_scale=self.f_scale, jac_fn=jac,
        )
        self._set_fit_stats(res.theta, res.cov, res.f_scale)
        return self

    def _load(self, r, s, loss, sample_weight, *, runs, name: str) -> None:
        """Check the observations and keep the points the fit uses as ``_data = (r, s, y, w)`` (``w``
        with the late-point weight), their positions in the input as ``_rows`` and, with
        ``run_effects``, their run indices ``_runs``; ``fit`` without the solve."""
        if self.space not in ("log", "linear"):
            raise ConfigError(f"BiMixLaw space must be 'log' or 'linear', got {self.space!r}")
        if self.run_effects and self.space != "log":
            raise ConfigError(f"{name}: run_effects fits log L (run offsets are multiplicative); use space='log'")
        r, s, y, w, keep = self._prepare(r, s, loss, sample_weight, name)
        if self.run_effects:
            if runs is None:
                raise ConfigError(f"{name}: run_effects=True needs runs=, the proxy run of each point")
            runs = np.asarray(runs)
            if runs.shape[0] != keep.size:
                raise DataError(f"{name}: runs has {runs.shape[0]} labels for {keep.size} points")
        n_zero = int((~keep).sum())
        if self.min_step:
            keep &= s >= float(self.min_step)
        r, s, y, w = r[keep], s[keep], y[keep], w[keep]
        if r.size < max(self.min_points, 5):
            raise DataError(
                f"{name}: only {r.size} usable point(s) (proportion > 0) to fit BiMix's 4 free coefficients; "
                f"need at least {max(self.min_points, 5)}: add proxy runs or evaluation steps"
            )
        if np.unique(s).size < 3:
            raise DataError(f"{name}: need losses at >= 3 distinct steps to fit the step term, got {np.unique(s).size}")
        if np.unique(r).size < 2:
            raise DataError(
                f"{name}: every point has the same proportion {r[0]:g}; the proportion exponent cannot be "
                "fitted: use proxy runs with different mixtures"
            )
        if self.step_weight:
            w = w * (s / s.max()) ** float(self.step_weight)
        self._data = (r, s, y, w)
        self._rows = np.nonzero(keep)[0]
        self.n_excluded_ = n_zero
        if self.run_effects:
            self._runs = run_index(runs[keep])
            self._name = name

    @staticmethod
    def fit_within(laws: list[BiMixLaw], *, share_beta: bool, loss: str, f_scale, n_init: int) -> None:
        """Within-run fit of ``laws`` (each already holding ``_data`` and ``_runs``), optionally with
        one shared step exponent; see :mod:`mixlab.laws._run_effects`."""
        blocks = []
        for law in laws:
            r, s, y, w = law._data
            blocks.append(RunBlock(np.log(r), np.log(s), np.log(y), w, law._runs))
        steps = fit_step_terms(blocks, share_beta=share_beta, loss=loss, f_scale=f_scale, n_init=n_init)
        for law, block, (lb, lbeta, u, cov_step) in zip(laws, blocks, steps, strict=True):
            prop, cov_prop = fit_proportion_term(block, u, name=getattr(law, "_name", "domain"))
            cov = np.zeros((4, 4))
            cov[:2, :2] = cov_prop
            cov[2:, 2:] = cov_step
            law._set_fit_stats(np.r_[prop, lb, lbeta], cov, float("nan"))

    def _residual_fns(self):
        """Weighted residuals and their Jacobian (in ``theta``) on the fitted points ``_data``."""
        r, s, y, w = self._data
        lr, ls, ly, sw = np.log(r), np.log(s), np.log(y), np.sqrt(w)
        if self.space == "log":
            def resid(theta):
                return sw * (log_predict(theta, lr, ls) - ly)

            def jac(theta):
                return sw[:, None] * log_jacobian(theta, lr, ls)
        else:
            def resid(theta):
                return sw * (np.exp(log_predict(theta, lr, ls)) - y)

            def jac(theta):
                return (sw * np.exp(log_predict(theta, lr, ls)))[:, None] * log_jacobian(theta, lr, ls)
        return resid, jac

    def _set_fit_stats(self, theta: np.ndarray, cov: np.ndarray, f_scale: float) -> None:
        r, s, y, _ = self._data
        self._set_fitted(theta, cov)
        pred = np.exp(log_predict(self.theta_, np.log(r), np.log(s)))
        self.r2_ = r2(y, pred)
        self.r2_log_ = r2(np.log(y), np.log(pred))
        self.mre_ = float(np.mean(np.abs(pred - y) / y))
        self.f_scale_ = f_scale
        self.n_points_ = int(r.size)

    def _starts(self, lr, ls, y, w) -> list[np.ndarray]:
        """Best grid points of the variable-projection initialisation (see module docstring)."""
        ly = np.log(y)
        cands = []
        for alpha in _ALPHA_GRID:
            z = y * np.exp(alpha * lr)
            for beta in _BETA_GRID:
                X = np.stack([np.exp(-beta * ls), np.ones_like(ls)], axis=1)
                ww = np.sqrt(w) / y
                coef, *_ = np.linalg.lstsq(X * ww[:, None], z * ww, rcond=None)
                p, q = coef
                if q <= 0:
                    continue
                p = max(p, q * 1e-8)
                theta = np.array([np.log(q), np.log(alpha), np.log(p / q), np.log(beta)])
                err = float(np.sum(w * (log_predict(theta, lr, ls) - ly) ** 2))
                cands.append((err, theta))
        cands.sort(key=lambda t: t[0])
        starts = [t for _, t in cands[: max(1, int(self.n_init))]]
        if not starts:
            starts = [np.array([np.log(np.min(y)), np.log(0.05), 0.0, np.log(0.3)])]
        return starts

    def _set_fitted(self, theta: np.ndarray, cov: np.ndarray) -> None:
        self.theta_ = np.asarray(theta, dtype=float)
        self.cov_ = np.asarray(cov, dtype=float)
        self.A_, self.alpha_, self.B_, self.beta_ = (float(v) for v in np.exp(self.theta_))
        self.C_ = 1.0
        self.params_ = {"A": self.A_, "alpha": self.alpha_, "B": self.B_, "beta": self.beta_, "C": self.C_}
        se_log = np.sqrt(np.clip(np.diag(self.cov_), 0, None))
        nat = np.exp(self.theta_)
        self.stderr_ = {k: float(v) for k, v in zip(PARAM_NAMES[:4], nat * se_log, strict=True)}
        self.stderr_["C"] = 0.0

    @classmethod
    def from_params(cls, A: float, alpha: float, B: float, beta: float, C: float = 1.0, **kwargs: Any) -> BiMixLaw:
        """A law with given coefficients (any positive C; it is folded into the ``C = 1`` gauge)."""
        if min(A, alpha, B, beta, C) <= 0:
            raise ConfigError("BiMix coefficients A, alpha, B, beta, C must all be positive")
        law = cls(**kwargs)
        law._set_fitted(np.log([A * C, alpha, B / C, beta]), np.zeros((4, 4)))
        return law

    def predict(self, r, s) -> np.ndarray:
        """Predicted loss at proportions ``r`` and steps ``s`` (broadcast); ``inf`` where ``r = 0``."""
        check_fitted(self, "theta_")
        r = np.asarray(r, dtype=float)
        s = np.asarray(s, dtype=float)
        with np.errstate(divide="ignore"):
            lr = np.log(r)
        out = np.exp(log_predict(self.theta_, lr, np.log(s)))
        return np.where(r > 0, out, np.inf)

    def predict_interval(
        self, r, s, *, level: float = 0.9, method: str = "delta", n_boot: int = 200, seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, lower, upper)`` at confidence ``level``.

        ``method="delta"``: normal interval on ``log L`` from the parameter covariance (Gauss-Newton).
        ``method="bootstrap"``: percentile interval over ``n_boot`` refits on resampled points.
        """
        check_fitted(self, "theta_")

        r_b, s_b = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(s, dtype=float))
        pred = self.predict(r_b, s_b)
        if method == "delta":
            lr = np.log(np.where(r_b > 0, r_b, 1.0)).ravel()
            J = log_jacobian(self.theta_, lr, np.log(s_b).ravel())
            sd = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", J, self.cov_, J), 0, None)).reshape(pred.shape)
            z = norm.ppf(0.5 + level / 2)
            return pred, pred * np.exp(-z * sd), pred * np.exp(z * sd)
        if method == "bootstrap":
            draws = self.bootstrap_predictions(r_b, s_b, n_boot=n_boot, seed=seed)
            q = (1 - level) / 2
            return pred, np.quantile(draws, q, axis=0), np.quantile(draws, 1 - q, axis=0)
        raise ConfigError(f"uncertainty method must be 'delta' or 'bootstrap', got {method!r}")

    def bootstrap_predictions(self, r, s, *, n_boot: int = 200, seed: int = 0) -> np.ndarray:
        """Predictions ``[n_boot, *shape]`` of laws refitted on points resampled with replacement (with
        ``run_effects``: whole runs resampled, each draw of a run its own run, since a run's points are
        not independent of each other)."""
        check_fitted(self, "theta_")
        if not hasattr(self, "_data"):
            raise NotFittedError("bootstrap needs a law fitted from data, not one built from parameters")
        rr, ss, yy, ww = self._data
        rng = np.random.default_rng(seed)
        params = {**self.get_params(), "n_init": 2, "step_weight": 0.0, "min_step": 0.0}
        runs = getattr(self, "_runs", None)
        out = []
        members = None if runs is None else [np.nonzero(runs == g)[0] for g in range(int(runs.max()) + 1)]
        for _ in range(int(n_boot)):
            if members is None:
                idx, labels = rng.integers(0, rr.size, rr.size), None
            else:
                draw = rng.integers(0, len(members), len(members))
                idx = np.concatenate([members[g] for g in draw])
                labels = np.repeat(np.arange(draw.size), [members[g].size for g in draw])
            if np.unique(ss[idx]).size < 3 or np.unique(rr[idx]).size < 2:
                continue
            law = type(self)(**params)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    law.fit(rr[idx], ss[idx], yy[idx], ww[idx], runs=labels)
            except (MixlabError, FloatingPointError):
                continue
            out.append(law.predict(r, s))
        if not out:
            raise DataError("no bootstrap refit succeeded; the data set is too small for a bootstrap")
        return np.stack(out)

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (*LAW_PARAMS, "run_effects")}

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "theta_")
        out: dict[str, Any] = {"law": "bimix", "params": dict(self.params_), "stderr": dict(self.stderr_)}
        for k in ("r2_", "r2_log_", "mre_", "n_points_", "n_excluded_"):
            if hasattr(self, k):
                out[k.rstrip("_")] = getattr(self, k)
        return out

    def __repr__(self) -> str:
        if hasattr(self, "theta_"):
            return "BiMixLaw(" + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items()) + ")"
        return f"BiMixLaw({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

