"""Linear predictors: ridge regression on the mixture weights, or on log-weights for log-loss.

``linear`` is RegMix's linear baseline (arXiv 2407.01492, Table 2): loss = b + w . r. ``loglinear``
fits log L = b + w . log(r + eps) + u . r, the BiMix power law (arXiv 2405.14908, Eq. 1 at a fixed
step: log L_i = log A' - alpha_i log r_i) extended across domains, plus the Data Mixing Law's exponent
(arXiv 2403.16952: log(L - c) linear in r when c = 0). Both are closed-form ridge fits whose penalty
is chosen by efficient leave-one-out cross-validation on the training runs (the hat-matrix identity
e_i / (1 - h_ii) of ridge regression), so they need no tuning.
"""

from __future__ import annotations

import numpy as np

from mixlab.predictors.base import Predictor

_ALPHAS = np.logspace(-6, 4, 41)


def ridge_loo(F: np.ndarray, y: np.ndarray, alphas: np.ndarray = _ALPHAS) -> tuple[np.ndarray, float, float, np.ndarray, np.ndarray]:
    """Ridge regression on standardised features with the penalty of least leave-one-out error.

    Returns (coefficients on standardised features, intercept, alpha, feature means, feature scales).
    """
    mu = F.mean(axis=0)
    sd = F.std(axis=0)
    sd[sd < 1e-12] = 1.0
    Z = (F - mu) / sd
    ym = float(y.mean())
    yc = y - ym
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    Uy = U.T @ yc
    best: tuple[float, float, np.ndarray] | None = None
    n = len(y)
    for a in alphas:
        shrink = s**2 / (s**2 + a)
        resid = yc - U @ (shrink * Uy)
        lev = (U**2) @ shrink + 1.0 / n  # the intercept's leverage
        lev = np.minimum(lev, 1 - 1e-6)
        loo = float(np.mean((resid / (1 - lev)) ** 2))
        if best is None or loo < best[0]:
            best = (loo, float(a), Vt.T @ ((s / (s**2 + a)) * Uy))
    assert best is not None
    return best[2], ym, best[1], mu, sd


class LinearPredictor(Predictor):
    """Ridge regression of loss on the raw mixture weights (RegMix's linear baseline)."""

    name = "linear"

    def __init__(self, alpha: float | None = None) -> None:
        self.alpha = alpha

    def _design(self, X: np.ndarray) -> np.ndarray:
        return X

    def _fit_one(self, X: np.ndarray, y: np.ndarray, column: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        alphas = np.array([self.alpha]) if self.alpha is not None else _ALPHAS
        coef, b, _, mu, sd = ridge_loo(self._design(X), y, alphas)
        return coef, b, mu, sd

    def _predict_one(self, model: tuple[np.ndarray, float, np.ndarray, np.ndarray], X: np.ndarray) -> np.ndarray:
        coef, b, mu, sd = model
        return ((self._design(X) - mu) / sd) @ coef + b

    def min_runs(self, n_domains: int) -> int:
        return 3


class LogLinearPredictor(LinearPredictor):
    """log L = b + w . log(r + eps) + u . r (ridge, penalty by leave-one-out)."""

    name = "loglinear"
    log_target = True

    def __init__(self, alpha: float | None = None, eps: float = 1e-3) -> None:
        self.alpha = alpha
        self.eps = eps

    def _design(self, X: np.ndarray) -> np.ndarray:
        return np.hstack([np.log(X + self.eps), X])
