"""Mixing laws used as mixture -> final-loss predictors.

- ``dml``: the Data Mixing Law (arXiv 2403.16952), ``L = c + k exp(sum_j t_j r_j)`` per target, fitted
  by :class:`mixlab.laws.dml.DataMixingLaw`.
- ``bimix``: BiMix (arXiv 2405.14908, Eq. 3) at a fixed step. With ``s`` fixed the factor
  ``(B / s^beta + C)`` is a constant, so the law reduces to ``L_i = A_i' / r_i^alpha_i``: a target's
  loss depends on its own domain's proportion only, ``log L_i = log A_i' - alpha_i log r_i``. mixlab's
  law module (:class:`mixlab.laws.bimix.BiMixLaw`) needs losses at several steps to fit the step term;
  this predictor is the fixed-step reduction for sweeps that record final losses only. Zero proportions
  (RegMix's sampler zeroes many) would predict an infinite loss, so ``r`` is floored at ``eps``.
  Targets are matched to domains by name (``metric/the_pile_pile_cc_val_loss`` -> ``train_the_pile_pile_cc``:
  the longest domain name, minus a ``train_`` prefix, contained in the target name) or by
  ``target_domains``.
- ``logmix``: mixlab's joint law, ``L = c + exp(b + sum_j t_j log(r_j + eps) + sum_j u_j r_j)``: the
  Data Mixing Law's exponent (``u``), BiMix's power law extended to every domain (``t``: each domain's
  proportion scales the loss as a power, as in BiMix, and domains combine multiplicatively as in the
  Data Mixing Law), and the irreducible loss ``c`` of both. It has ``2m + 2`` parameters per target.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.optimize import least_squares

from mixlab.errors import DataError
from mixlab.laws.dml import DataMixingLaw
from mixlab.predictors.base import Predictor

_C_STARTS = (0.0, 0.5, 0.8, 0.95)


def _fit_offset_exp(F: np.ndarray, y: np.ndarray, max_nfev: int | None = None) -> np.ndarray:
    """Least squares for ``y = c + exp(b + F @ t)`` with ``0 <= c < min y``; returns [c, b, t...].

    Starts: ``c`` at fractions of ``min y``; for each, ``(b, t)`` from the linear fit of
    ``log(y - c)`` on ``F`` (exact when the law holds), then trust-region reflective refinement.
    """

    n, d = F.shape
    ymin = float(y.min())
    design = np.hstack([np.ones((n, 1)), F])
    best = None
    for frac in _C_STARTS:
        c0 = frac * ymin
        lin, *_ = np.linalg.lstsq(design, np.log(y - c0), rcond=None)
        p0 = np.concatenate([[c0], lin])

        def resid(p: np.ndarray) -> np.ndarray:
            return p[0] + np.exp(np.clip(p[1] + F @ p[2:], -50, 50)) - y

        def jac(p: np.ndarray) -> np.ndarray:
            e = np.exp(np.clip(p[1] + F @ p[2:], -50, 50))
            return np.hstack([np.ones((n, 1)), e[:, None], e[:, None] * F])

        lo = np.full(d + 2, -np.inf)
        hi = np.full(d + 2, np.inf)
        lo[0], hi[0] = 0.0, ymin * (1 - 1e-6)
        p0[0] = min(max(p0[0], 0.0), hi[0] * (1 - 1e-6))
        res = least_squares(resid, p0, jac=jac, bounds=(lo, hi), method="trf", max_nfev=max_nfev)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    return np.asarray(best.x)


def _offset_exp_predict(p: np.ndarray, F: np.ndarray) -> np.ndarray:
    return p[0] + np.exp(np.clip(p[1] + F @ p[2:], -50, 50))


class DataMixingLawPredictor(Predictor):
    """``L = c + k exp(t . r)`` per target (Data Mixing Laws, arXiv 2403.16952 Eq. 6), wrapping
    :class:`mixlab.laws.dml.DataMixingLaw` (robust log-space least squares, several starts)."""

    name = "dml"

    def __init__(self, loss: str = "huber", n_init: int = 6, space: str = "log", seed: int = 0) -> None:
        self.loss = loss
        self.n_init = n_init
        self.space = space
        self.seed = seed

    def min_runs(self, n_domains: int) -> int:
        return n_domains + 2

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        # the law insists on exact proportions; published sweeps round them (rows off by ~1e-3)
        Xn = X / X.sum(axis=1, keepdims=True)
        self.law_ = DataMixingLaw(loss=self.loss, n_init=self.n_init, space=self.space, seed=self.seed).fit(Xn, Y)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.law_.predict(X / X.sum(axis=1, keepdims=True))).reshape(X.shape[0], -1)

    @property
    def coef_(self) -> list[dict[str, object]]:
        """Per target: ``c``, ``k`` and the exponents ``t`` keyed by domain."""
        self.check_fitted()
        return [
            {"c": float(c), "k": float(k), "t": dict(zip(self.domains_, t.tolist(), strict=True))}
            for c, k, t in zip(self.law_.c_, self.law_.k_, self.law_.t_, strict=True)
        ]


class LogMixLawPredictor(Predictor):
    """``L = c + exp(b + t . log(r + eps) + u . r)`` per target (see the module docstring)."""

    name = "logmix"

    def __init__(self, eps: float = 1e-3, max_nfev: int | None = None) -> None:
        self.eps = eps
        self.max_nfev = max_nfev

    def min_runs(self, n_domains: int) -> int:
        return 2 * n_domains + 2

    def _design(self, X: np.ndarray) -> np.ndarray:
        return np.hstack([np.log(X + self.eps), X])

    def _fit_one(self, X: np.ndarray, y: np.ndarray, column: int) -> np.ndarray:
        if (y <= 0).any():
            raise DataError("logmix predictor: losses must be positive")
        return _fit_offset_exp(self._design(X), y, self.max_nfev)

    def _predict_one(self, model: np.ndarray, X: np.ndarray) -> np.ndarray:
        return _offset_exp_predict(model, self._design(X))


def match_target_domain(target: str, domains: list[str]) -> str | None:
    """The domain a loss column measures: the longest domain name (without a ``train_`` prefix) that
    occurs in the column name; ``None`` when none does."""
    best: tuple[int, str] | None = None
    low = target.lower()
    for d in domains:
        core = d.lower()
        for prefix in ("train_", "train/", "train-"):
            if core.startswith(prefix):
                core = core[len(prefix) :]
        if core and core in low and (best is None or len(core) > best[0]):
            best = (len(core), d)
    return best[1] if best else None


class BiMixPredictor(Predictor):
    """Fixed-step BiMix: ``log L_i = log A_i' - alpha_i log max(r_i, eps)`` for each target's own domain."""

    name = "bimix"
    log_target = True

    def __init__(self, target_domains: Mapping[str, str] | None = None, eps: float = 1e-4) -> None:
        self.target_domains = target_domains
        self.eps = eps

    def min_runs(self, n_domains: int) -> int:
        return 3

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.source_ = []
        for name in self.targets_:
            dom = (self.target_domains or {}).get(name) or match_target_domain(name, self.domains_)
            if dom is None or dom not in self.domains_:
                raise DataError(
                    f"bimix predictor: cannot tell which mixture column the loss {name!r} measures; pass "
                    f"target_domains={{{name!r}: <one of {self.domains_}>}}"
                )
            self.source_.append(self.domains_.index(dom))
        super()._fit(X, Y)

    def _fit_one(self, X: np.ndarray, y: np.ndarray, column: int) -> np.ndarray:
        lr = np.log(np.maximum(X[:, self.source_[column]], self.eps))
        design = np.column_stack([np.ones_like(lr), lr])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return np.array([coef[0], coef[1], self.source_[column]])

    def _predict_one(self, model: np.ndarray, X: np.ndarray) -> np.ndarray:
        return model[0] + model[1] * np.log(np.maximum(X[:, int(model[2])], self.eps))

    @property
    def alpha_(self) -> np.ndarray:
        """BiMix's exponent alpha_i per target (loss ~ r^-alpha)."""
        self.check_fitted()
        return np.array([-m[1] for m in self.models_])
