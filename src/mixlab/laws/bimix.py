"""BiMix: a bivariate data mixing law in the domain proportion and the training steps.

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

:class:`BiMixLaw` is one domain's law; :class:`BiMixModel` holds one law per modelled domain,
predicts losses for mixtures at any step (later steps included), gives uncertainty, and finds the
mixture that minimises the weighted sum of predicted losses at a target step (Lagrangian closed form
when no bound is active, SLSQP otherwise).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, DataError, MixlabError, NotFittedError
from mixlab.laws._nls import robust_least_squares
from mixlab.laws._run_effects import RunBlock, fit_proportion_term, fit_step_terms, run_index
from mixlab.laws._simplex import minimize_on_simplex, resolve_constraints
from mixlab.mixture import Mixture, MixtureConstraints

log = logging.getLogger(__name__)

PARAM_NAMES = ("A", "alpha", "B", "beta", "C")
_LAW_PARAMS = ("loss", "f_scale", "n_init", "space", "step_weight", "min_points", "min_step")
_LOG_BOUNDS = (
    np.array([-10.0, np.log(1e-6), -20.0, np.log(1e-4)]),
    np.array([10.0, np.log(5.0), 40.0, np.log(5.0)]),
)
_STAT_ATTRS = ("r2_", "r2_log_", "mre_", "n_points_", "n_excluded_")
_ALPHA_GRID = np.array([1e-3, 3e-3, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25, 0.4, 0.7])
_BETA_GRID = np.geomspace(0.02, 3.0, 16)


def _check_fitted(obj: Any, attr: str) -> None:
    if not hasattr(obj, attr):
        raise NotFittedError(f"{type(obj).__name__} is not fitted yet: call fit() first")


def _log_predict(theta: np.ndarray, lr: np.ndarray, ls: np.ndarray) -> np.ndarray:
    log_a, log_alpha, log_b, log_beta = theta
    return log_a - np.exp(log_alpha) * lr + np.logaddexp(0.0, log_b - np.exp(log_beta) * ls)


def _log_jacobian(theta: np.ndarray, lr: np.ndarray, ls: np.ndarray) -> np.ndarray:
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
            self._fit_within([self], share_beta=False, loss=self.loss, f_scale=self.f_scale, n_init=self.n_init)
            return self
        r, s, y, w = self._data
        resid, jac = self._residual_fns()
        starts = self._starts(np.log(r), np.log(s), y, w)
        res = robust_least_squares(
            resid, starts, bounds=_LOG_BOUNDS, loss=self.loss, f_scale=self.f_scale, jac_fn=jac,
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
    def _fit_within(laws: list[BiMixLaw], *, share_beta: bool, loss: str, f_scale, n_init: int) -> None:
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
                return sw * (_log_predict(theta, lr, ls) - ly)

            def jac(theta):
                return sw[:, None] * _log_jacobian(theta, lr, ls)
        else:
            def resid(theta):
                return sw * (np.exp(_log_predict(theta, lr, ls)) - y)

            def jac(theta):
                return (sw * np.exp(_log_predict(theta, lr, ls)))[:, None] * _log_jacobian(theta, lr, ls)
        return resid, jac

    def _set_fit_stats(self, theta: np.ndarray, cov: np.ndarray, f_scale: float) -> None:
        r, s, y, _ = self._data
        self._set_fitted(theta, cov)
        pred = np.exp(_log_predict(self.theta_, np.log(r), np.log(s)))
        self.r2_ = _r2(y, pred)
        self.r2_log_ = _r2(np.log(y), np.log(pred))
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
                err = float(np.sum(w * (_log_predict(theta, lr, ls) - ly) ** 2))
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
        _check_fitted(self, "theta_")
        r = np.asarray(r, dtype=float)
        s = np.asarray(s, dtype=float)
        with np.errstate(divide="ignore"):
            lr = np.log(r)
        out = np.exp(_log_predict(self.theta_, lr, np.log(s)))
        return np.where(r > 0, out, np.inf)

    def predict_interval(
        self, r, s, *, level: float = 0.9, method: str = "delta", n_boot: int = 200, seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, lower, upper)`` at confidence ``level``.

        ``method="delta"``: normal interval on ``log L`` from the parameter covariance (Gauss-Newton).
        ``method="bootstrap"``: percentile interval over ``n_boot`` refits on resampled points.
        """
        _check_fitted(self, "theta_")
        from scipy.stats import norm

        r_b, s_b = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(s, dtype=float))
        pred = self.predict(r_b, s_b)
        if method == "delta":
            lr = np.log(np.where(r_b > 0, r_b, 1.0)).ravel()
            J = _log_jacobian(self.theta_, lr, np.log(s_b).ravel())
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
        _check_fitted(self, "theta_")
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
        return {k: getattr(self, k) for k in (*_LAW_PARAMS, "run_effects")}

    def to_dict(self) -> dict[str, Any]:
        _check_fitted(self, "theta_")
        out: dict[str, Any] = {"law": "bimix", "params": dict(self.params_), "stderr": dict(self.stderr_)}
        for k in ("r2_", "r2_log_", "mre_", "n_points_", "n_excluded_"):
            if hasattr(self, k):
                out[k.rstrip("_")] = getattr(self, k)
        return out

    def __repr__(self) -> str:
        if hasattr(self, "theta_"):
            return "BiMixLaw(" + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items()) + ")"
        return f"BiMixLaw({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - pred) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def as_matrix(rows: Any, domains: Sequence[str] | None, what: str) -> tuple[np.ndarray, list[str]]:
    """Rows of mixtures/losses (an array, or a sequence of mappings / Mixtures keyed by domain) as an
    ``[n, k]`` array aligned with ``domains`` by name."""
    if isinstance(rows, np.ndarray) or (
        isinstance(rows, Sequence) and rows and not isinstance(rows[0], (Mapping, Mixture))
    ):
        arr = np.atleast_2d(np.asarray(rows, dtype=float))
        if domains is None:
            raise ConfigError(f"{what} given as an array need the list of domain names (domains=...)")
        if arr.shape[1] != len(domains):
            raise DataError(f"{what} have {arr.shape[1]} columns for {len(domains)} domains {list(domains)}")
        return arr, list(domains)
    maps = [r.to_dict() if isinstance(r, Mixture) else dict(r) for r in rows]
    if domains is None:
        seen: dict[str, None] = {}
        for m in maps:
            seen.update(dict.fromkeys(m))
        domains = list(seen)
    known = set(domains)
    for i, m in enumerate(maps):
        unknown = [d for d in m if d not in known]
        if unknown:
            raise DataError(f"{what}[{i}] names unknown domain(s) {unknown}; domains are {list(domains)}")
    arr = np.array([[float(m.get(d, np.nan if what == "losses" else 0.0)) for d in domains] for m in maps])
    return arr, list(domains)


def objective_weights(loss_domains: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    """The weights ``c_i`` of ``sum_i c_i L_i`` by loss domain: equal when ``None``, else checked
    (known domains, >= 0, positive sum); domains left out of ``weights`` get 0."""
    ldoms = list(loss_domains)
    if weights is None:
        return {d: 1.0 / len(ldoms) for d in ldoms}
    unknown = [d for d in weights if d not in ldoms]
    if unknown:
        raise ConfigError(f"weights name domain(s) {unknown} that the law does not model ({ldoms})")
    c = {d: float(weights.get(d, 0.0)) for d in ldoms}
    if any(v < 0 for v in c.values()) or sum(c.values()) <= 0:
        raise ConfigError("objective weights must be >= 0 with a positive sum")
    return c


def refit_with_shared_beta(
    fns: list[tuple[Any, Any]],
    thetas: list[np.ndarray],
    sizes: list[int],
    bounds: list[tuple[np.ndarray, np.ndarray]],
    *,
    loss: str,
    f_scale: float | None,
    n_init: int,
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Refit several domains' laws jointly with one step exponent: ``(thetas, covs, f_scale)``.

    Each domain ``k`` has a residual/Jacobian pair ``fns[k]`` over its own parameter vector, whose
    entry 3 is ``log beta`` (BiMix's ``[log A, log alpha, log B, log beta]``, optionally followed by
    more parameters), its fitted vector ``thetas[k]``, ``sizes[k]`` residuals and bounds. The joint
    vector is ``[(theta_k without entry 3) per domain, log beta]``. Starts: the domains' own fits with
    ``log beta`` at their mean weighted by points and at each domain's own value (the first
    ``n_init``). Returns each domain's vector in its own layout and its covariance block.
    """
    local = [t.size - 1 for t in thetas]
    offs = np.r_[0, np.cumsum(local)].astype(int)

    def split(theta):
        return [np.r_[theta[offs[k]: offs[k] + 3], theta[-1], theta[offs[k] + 3: offs[k + 1]]] for k in range(len(fns))]

    def resid(theta):
        return np.concatenate([f(t) for (f, _), t in zip(fns, split(theta), strict=True)])

    def jac(theta):
        J = np.zeros((sum(sizes), offs[-1] + 1))
        row = 0
        for k, ((_, jf), t) in enumerate(zip(fns, split(theta), strict=True)):
            Jk = jf(t)
            rows = slice(row, row + sizes[k])
            J[rows, offs[k]: offs[k] + 3] = Jk[:, :3]
            J[rows, offs[k] + 3: offs[k + 1]] = Jk[:, 4:]
            J[rows, -1] = Jk[:, 3]
            row += sizes[k]
        return J

    def drop_beta(v):
        return np.r_[v[:3], v[4:]]

    base = np.concatenate([drop_beta(t) for t in thetas])
    log_betas = np.array([t[3] for t in thetas])
    cands = [float(np.average(log_betas, weights=sizes)), *log_betas.tolist()]
    starts = [np.r_[base, b] for b in cands[: max(1, int(n_init))]]
    lo = np.r_[np.concatenate([drop_beta(b[0]) for b in bounds]), bounds[0][0][3]]
    hi = np.r_[np.concatenate([drop_beta(b[1]) for b in bounds]), bounds[0][1][3]]
    res = robust_least_squares(resid, starts, bounds=(lo, hi), loss=loss, f_scale=f_scale, jac_fn=jac)
    covs = []
    for k in range(len(fns)):
        idx = [offs[k], offs[k] + 1, offs[k] + 2, offs[-1], *range(offs[k] + 3, offs[k + 1])]
        covs.append(res.cov[np.ix_(idx, idx)])
    return split(res.theta), covs, res.f_scale


def long_table_inputs(
    mixtures: Any,
    steps: Any,
    losses: Any,
    domains: Sequence[str] | None,
    loss_domains: Sequence[str] | None,
    *,
    why: str,
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, list[str]]:
    """Check and align a law's long table: ``(R [n, k], domains, steps [n], Y [n, m], loss domains)``.

    Every loss domain must be a mixture domain (``why`` says, in the error, why the law needs that).
    """
    R, doms = as_matrix(mixtures, domains, "mixtures")
    if loss_domains is None and isinstance(losses, np.ndarray):
        loss_domains = doms
    Y, ldoms = as_matrix(losses, loss_domains, "losses")
    s = np.asarray(steps, dtype=float).ravel()
    if not (R.shape[0] == Y.shape[0] == s.size):
        raise DataError(f"mixtures ({R.shape[0]} rows), steps ({s.size}) and losses ({Y.shape[0]}) differ in length")
    missing = [d for d in ldoms if d not in doms]
    if missing:
        raise DataError(
            f"loss domain(s) {missing} have no proportion column; {why}, so each loss domain must be one of "
            f"the mixture domains {doms}"
        )
    return R, doms, s, Y, ldoms


class BiMixModel:
    """One :class:`BiMixLaw` per modelled domain, fitted from proxy runs' loss curves.

    ``fit(mixtures, steps, losses)`` takes a long table: row ``n`` is one evaluation of one run, with
    the run's mixture ``mixtures[n]`` (``[n, k]`` over ``domains``), its step ``steps[n]`` and the
    per-domain validation losses ``losses[n]`` (``[n, m]`` over ``loss_domains``, NaN = not measured).
    BiMix models a domain's loss through that same domain's proportion, so every loss domain must be
    a mixture domain. The constructor arguments other than ``share_beta`` are passed to every
    :class:`BiMixLaw`.

    ``share_beta=True`` keeps the law's form but ties the step exponent: one ``beta`` for every loss
    domain, fitted jointly with each domain's own ``A_i, alpha_i, B_i`` (stacked residuals of all
    domains, started from the per-domain fits). All domains' curves then inform the one parameter that
    governs extrapolation in steps, which steadies it when a single domain's curve is short or noisy.

    ``run_effects=True`` fits every law within runs (:class:`BiMixLaw`'s ``run_effects``): the step
    term from the shape of each run's own curve, then ``A_i, alpha_i`` from the runs' offsets. Use it
    when the runs' losses depend on more of the mixture than the law's own proportion (cross-domain
    transfer) and long runs cover only some mixtures: pooled, those effects bend the fitted step term.
    With ``share_beta`` the within-run step fits share one exponent.

    Fitted attributes: ``domains_``, ``loss_domains_``, ``laws_`` (domain -> fitted BiMixLaw) and,
    with ``share_beta``, ``beta_`` (the shared exponent).
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
        share_beta: bool = False,
        run_effects: bool = False,
    ) -> None:
        self.loss = loss
        self.f_scale = f_scale
        self.n_init = n_init
        self.space = space
        self.step_weight = step_weight
        self.min_points = min_points
        self.min_step = min_step
        self.share_beta = share_beta
        self.run_effects = run_effects

    def _law_params(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in _LAW_PARAMS}, "run_effects": self.run_effects}

    def fit(
        self,
        mixtures: Any,
        steps: Any,
        losses: Any,
        *,
        domains: Sequence[str] | None = None,
        loss_domains: Sequence[str] | None = None,
        sample_weight: Any = None,
        runs: Any = None,
    ) -> BiMixModel:
        """Fit one law per loss domain from the long table (see the class docstring). ``runs`` labels
        each row's proxy run for ``run_effects``; by default rows with the same mixture are one run."""
        R, doms, s, Y, ldoms = long_table_inputs(
            mixtures, steps, losses, domains, loss_domains, why="BiMix models a domain's loss through its own proportion"
        )
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        if runs is None:
            runs = run_index(R)
        runs = np.asarray(runs)
        if runs.shape[0] != R.shape[0]:
            raise DataError(f"runs has {runs.shape[0]} labels for {R.shape[0]} rows of the long table")
        joint_within = self.share_beta and self.run_effects
        self.laws_: dict[str, BiMixLaw] = {}
        for j, d in enumerate(ldoms):
            ok = np.isfinite(Y[:, j])
            i = doms.index(d)
            law = BiMixLaw(**self._law_params())
            # a joint within-run fit starts from a grid, not from each law's own fit: load, don't solve
            step = law._load if joint_within else law.fit
            step(R[ok, i], s[ok], Y[ok, j], None if w is None else w[ok], runs=runs[ok], name=f"loss domain {d!r}")
            self.laws_[d] = law
        if joint_within:
            laws = [self.laws_[d] for d in ldoms]
            BiMixLaw._fit_within(laws, share_beta=True, loss=self.loss, f_scale=self.f_scale, n_init=self.n_init)
            self.beta_ = laws[0].beta_
        elif self.share_beta:
            self.beta_ = self._fit_shared_beta([self.laws_[d] for d in ldoms])
        self.domains_ = doms
        self.loss_domains_ = ldoms
        return self

    def _fit_shared_beta(self, laws: list[BiMixLaw]) -> float:
        """Refit ``laws`` jointly with one step exponent (:func:`refit_with_shared_beta`), started from
        their own fits; each law gets its parameters and the matching covariance block."""
        thetas, covs, f_scale = refit_with_shared_beta(
            [law._residual_fns() for law in laws],
            [law.theta_ for law in laws],
            [law.n_points_ for law in laws],
            [_LOG_BOUNDS] * len(laws),
            loss=self.loss, f_scale=self.f_scale, n_init=self.n_init,
        )
        for law, theta, cov in zip(laws, thetas, covs, strict=True):
            law._set_fit_stats(theta, cov, f_scale)
        return float(np.exp(thetas[0][3]))

    def _mix(self, mixtures: Any) -> np.ndarray:
        _check_fitted(self, "laws_")
        if isinstance(mixtures, (Mixture, Mapping)):
            mixtures = [mixtures]
        R, _ = as_matrix(mixtures, self.domains_, "mixtures")
        return R

    def predict(self, mixtures: Any, steps: Any) -> np.ndarray:
        """Predicted losses ``[n, m]`` (columns = ``loss_domains_``) for ``n`` mixtures at ``steps``
        (one step per mixture, or a scalar); steps past the fitted range extrapolate the law."""
        R = self._mix(mixtures)
        s = np.broadcast_to(np.asarray(steps, dtype=float), (R.shape[0],))
        return np.stack(
            [self.laws_[d].predict(R[:, self.domains_.index(d)], s) for d in self.loss_domains_], axis=1
        )

    def predict_interval(self, mixtures: Any, steps: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, lower, upper)``, each ``[n, m]``; see :meth:`BiMixLaw.predict_interval`."""
        R = self._mix(mixtures)
        s = np.broadcast_to(np.asarray(steps, dtype=float), (R.shape[0],))
        parts = [self.laws_[d].predict_interval(R[:, self.domains_.index(d)], s, **kwargs) for d in self.loss_domains_]
        return tuple(np.stack([p[k] for p in parts], axis=1) for k in range(3))  # type: ignore[return-value]

    def _objective_terms(self, step: float, weights: Mapping[str, float] | None):
        ldoms = self.loss_domains_
        c = objective_weights(ldoms, weights)
        k = len(self.domains_)
        cvec = np.zeros(k)
        alpha = np.zeros(k)
        K = np.zeros(k)
        for d in ldoms:
            i = self.domains_.index(d)
            law = self.laws_[d]
            cvec[i] = c[d]
            alpha[i] = law.alpha_
            K[i] = law.A_ * (law.B_ * float(step) ** -law.beta_ + law.C_)
        return cvec, alpha, K

    def closed_form(self, step: float, weights: Mapping[str, float] | None = None) -> np.ndarray:
        """The unconstrained optimum over the simplex by the Lagrangian (paper Sec. 3.3).

        At fixed ``s`` each ``L_i = K_i r_i^-alpha_i`` with ``K_i = A_i (B_i s^-beta_i + C_i)``, so
        stationarity of ``sum_i c_i L_i + lambda (sum_i r_i - 1)`` gives
        ``r_i = (c_i alpha_i K_i / lambda)^(1 / (1 + alpha_i))``; ``sum_i r_i`` decreases in ``lambda``,
        which is found by bracketing and Brent's method on ``log lambda``. The objective is convex, so
        this stationary point is the global minimum. Domains without a loss term get 0.
        """
        from scipy.optimize import brentq

        cvec, alpha, K = self._objective_terms(step, weights)
        act = cvec > 0
        g = np.log(cvec[act] * alpha[act] * K[act])
        e = 1.0 / (1.0 + alpha[act])

        def excess(log_lam: float) -> float:
            return float(np.sum(np.exp(e * (g - log_lam)))) - 1.0

        lo, hi = -50.0, 50.0
        while excess(lo) < 0:
            lo -= 50.0
        while excess(hi) > 0:
            hi += 50.0
        log_lam = brentq(excess, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500)
        r = np.zeros(len(self.domains_))
        r[act] = np.exp(e * (g - log_lam))
        return r / r.sum()

    def objective(self, r: np.ndarray, step: float, weights: Mapping[str, float] | None = None) -> float:
        """``sum_i c_i L_i(r_i, step)`` for a weight vector aligned with ``domains_``."""
        cvec, alpha, K = self._objective_terms(step, weights)
        act = cvec > 0
        r = np.asarray(r, dtype=float)
        if np.any(r[act] <= 0):
            return float("inf")
        return float(np.sum(cvec[act] * K[act] * r[act] ** -alpha[act]))

    def optimize(
        self,
        step: float,
        weights: Mapping[str, float] | None = None,
        constraints: MixtureConstraints | None = None,
        *,
        method: str = "auto",
    ) -> Mixture:
        """The mixture minimising the weighted sum of predicted domain losses at ``step``.

        ``weights`` c_i over the loss domains (default equal); ``constraints`` (bounds and availability
        caps, :class:`~mixlab.mixture.MixtureConstraints`) are matched to ``domains_`` by name.
        ``method="auto"`` uses :meth:`closed_form` when it satisfies every bound and SLSQP otherwise;
        ``"closed_form"`` / ``"numerical"`` force one. Sets ``optimize_method_`` to what was used.
        """
        _check_fitted(self, "laws_")
        if step <= 0:
            raise ConfigError(f"target step must be positive, got {step}")
        cons = resolve_constraints(self.domains_, constraints)
        cvec, alpha, K = self._objective_terms(step, weights)
        if method not in ("auto", "closed_form", "numerical"):
            raise ConfigError(f"optimize method must be auto, closed_form or numerical, got {method!r}")
        r0 = self.closed_form(step, weights)
        if method == "closed_form" or (method == "auto" and cons.satisfied(r0, tol=1e-9)):
            if method == "closed_form" and not cons.satisfied(r0, tol=1e-9):
                raise ConfigError("the closed-form optimum violates the bounds; use method='auto' or 'numerical'")
            self.optimize_method_ = "closed_form"
            return Mixture.from_weights(r0, self.domains_)
        act = cvec > 0
        lower = cons.lower.copy()
        lower[act] = np.maximum(lower[act], 1e-12)

        def fun(r):
            return float(np.sum(cvec[act] * K[act] * np.maximum(r[act], 1e-300) ** -alpha[act]))

        def jac(r):
            gr = np.zeros_like(r)
            gr[act] = -cvec[act] * alpha[act] * K[act] * np.maximum(r[act], 1e-300) ** (-alpha[act] - 1)
            return gr

        uniform = np.full(len(self.domains_), 1.0 / len(self.domains_))
        r = minimize_on_simplex(fun, jac, r0, lower, cons.upper, extra_starts=[uniform])
        self.optimize_method_ = "numerical"
        return Mixture.from_weights(np.clip(r, 0, None), self.domains_)

    def get_params(self) -> dict[str, Any]:
        return {**self._law_params(), "share_beta": self.share_beta}

    def to_state(self) -> dict[str, Any]:
        """The fitted model as plain JSON-able data (:meth:`from_state` rebuilds it; no pickle)."""
        _check_fitted(self, "laws_")
        laws = {}
        for d in self.loss_domains_:
            law = self.laws_[d]
            laws[d] = {"theta": law.theta_.tolist(), "cov": law.cov_.tolist(),
                       "stats": {k: getattr(law, k) for k in _STAT_ATTRS if hasattr(law, k)}}
        return {"params": self.get_params(), "domains": list(self.domains_),
                "loss_domains": list(self.loss_domains_), "laws": laws}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BiMixModel:
        """A fitted model from :meth:`to_state` output; it predicts and optimises exactly as the saved one."""
        model = cls(**state["params"])
        model.domains_ = list(state["domains"])
        model.loss_domains_ = list(state["loss_domains"])
        model.laws_ = {}
        for d in model.loss_domains_:
            entry = state["laws"][d]
            law = BiMixLaw(**model._law_params())
            law._set_fitted(np.asarray(entry["theta"], dtype=float), np.asarray(entry["cov"], dtype=float))
            for k, v in entry.get("stats", {}).items():
                setattr(law, k, v)
            model.laws_[d] = law
        if model.share_beta:
            model.beta_ = model.laws_[model.loss_domains_[0]].beta_
        return model

    def summary(self) -> list[dict[str, Any]]:
        """One row per loss domain: coefficients, standard errors and fit statistics."""
        _check_fitted(self, "laws_")
        rows = []
        for d in self.loss_domains_:
            law = self.laws_[d]
            row: dict[str, Any] = {"domain": d}
            row.update(law.params_)
            row.update({f"se_{k}": v for k, v in law.stderr_.items() if k != "C"})
            row.update({"r2": law.r2_, "r2_log": law.r2_log_, "mre": law.mre_, "n": law.n_points_})
            rows.append(row)
        return rows
