"""Robust multi-start non-linear least squares shared by the mixing laws.

Both laws are fitted the same way: residuals in a well-conditioned parameterisation (log-parameters),
``scipy.optimize.least_squares`` (trust-region reflective) with a Huber loss, started from several
points, the best final cost kept. The Huber scale is set from the data when not given: a first
non-robust fit, then ``f_scale = 1.345 * 1.4826 * MAD(residuals)`` (the usual 95%-efficiency
constant on a robust estimate of the residual scale), so the robust fit only discounts points that
are outliers relative to the fit's own noise level. When that scale is below ``EXACT_SCALE`` (the
law fits the data almost exactly, e.g. synthetic curves) the first fit is kept: there is nothing to
discount, and a Huber loss at such a scale makes the solver crawl.

The covariance of the parameters is the Gauss-Newton estimate ``sigma^2 (J^T J)^+`` at the optimum
with ``sigma^2 = RSS / (n - p)`` (ordinary residuals, unweighted by the Huber loss).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

MAD_TO_SIGMA = 1.4826
HUBER_EFFICIENCY = 1.345
EXACT_SCALE = 1e-6


@dataclass
class NLSResult:
    """Best parameters of a multi-start fit and what is needed for its statistics."""

    theta: np.ndarray
    cost: float
    residuals: np.ndarray
    jacobian: np.ndarray
    cov: np.ndarray
    f_scale: float
    n_starts: int
    success: bool


def robust_least_squares(
    residual_fn: Callable[[np.ndarray], np.ndarray],
    starts: Sequence[np.ndarray],
    *,
    bounds: tuple[np.ndarray, np.ndarray],
    loss: str = "huber",
    f_scale: float | None = None,
    max_nfev: int = 2000,
    jac_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> NLSResult:
    """Minimise ``sum rho(residual_fn(theta)_i)`` from each start; keep the lowest cost.

    ``loss`` is a ``least_squares`` loss name ('linear', 'huber', 'soft_l1', ...). With
    ``f_scale=None`` and a robust loss, the scale comes from a preliminary linear fit (module doc).
    """

    lo, hi = (np.asarray(b, dtype=float) for b in bounds)

    def run(loss_name: str, scale: float, x0s: Sequence[np.ndarray]):
        best = None
        for x0 in x0s:
            x0 = np.clip(np.asarray(x0, dtype=float), lo + 1e-9, hi - 1e-9)
            try:
                res = least_squares(
                    residual_fn, x0, jac=jac_fn if jac_fn is not None else "2-point", bounds=(lo, hi), loss=loss_name, f_scale=scale, method="trf",
                    max_nfev=max_nfev, x_scale="jac",
                )
            except (ValueError, FloatingPointError):
                continue
            if not np.all(np.isfinite(res.fun)):
                continue
            if best is None or res.cost < best.cost:
                best = res
        return best

    scale = 1.0 if f_scale is None else float(f_scale)
    best = None
    if loss != "linear" and f_scale is None:
        pre = run("linear", 1.0, starts)
        if pre is not None:
            mad = float(np.median(np.abs(pre.fun - np.median(pre.fun))))
            scale = max(HUBER_EFFICIENCY * MAD_TO_SIGMA * mad, 1e-8)
            starts = [pre.x, *starts]
            if scale <= EXACT_SCALE:
                best = pre  # the law fits (nearly) exactly: no outlier to discount, and a robust loss at
                # such a scale only slows the solver down (it behaves like least absolute deviations)
    if best is None:
        best = run(loss, scale, starts)
    if best is None:
        raise FloatingPointError("every start of the least-squares fit failed")
    r = best.fun
    J = best.jac
    n, p = J.shape
    dof = max(n - p, 1)
    sigma2 = float(r @ r) / dof
    cov = sigma2 * np.linalg.pinv(J.T @ J)
    return NLSResult(
        theta=best.x, cost=float(best.cost), residuals=r, jacobian=J, cov=cov, f_scale=scale,
        n_starts=len(starts), success=bool(best.success),
    )
