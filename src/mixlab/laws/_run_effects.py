"""Within-run estimation of BiMix's step term (used by ``BiMixLaw(run_effects=True)``).

In ``log L = log A - alpha log r + log(1 + B s^-beta)`` (the ``C = 1`` gauge) the proportion term is
one number per proxy run. Fitted pooled, every run's deviation from ``A / r^alpha`` (an effect of the
*other* domains' shares, say, that the law cannot express) is absorbed by whatever the remaining
parameters can bend, and when long runs are not a random sample of the mixtures the step term is
bent too, so extrapolation in steps inherits the bias. The within-run estimator, the fixed-effects
estimator of panel regression, avoids that:

1. *step term*: ``log L_{g,s} = u_g + log(1 + B s^-beta)`` with a free offset ``u_g`` per run ``g``,
   so ``B, beta`` are identified only by the shape of each run's own curve;
2. *proportion term*: ``u_g = log A - alpha log r_g``, a bounded linear least-squares fit over runs
   (``alpha >= 1e-6``), each run one observation of its mixture's effect (equal weights).

The result is a law of exactly the BiMix form. Several laws can share one ``beta`` in step 1 (the
``share_beta`` joint fit). The covariance returned is block-diagonal: stage 1's Gauss-Newton block for
``(log B, log beta)`` and stage 2's for ``(log A, log alpha)``; the two stages' cross-covariance is
ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

from mixlab.errors import DataError
from mixlab.laws._nls import robust_least_squares

_LB_BOUNDS = (-20.0, 40.0)
_LBETA_BOUNDS = (np.log(1e-4), np.log(5.0))
_LA_BOUNDS = (-10.0, 10.0)
_ALPHA_MIN, _ALPHA_MAX = 1e-6, 5.0


@dataclass
class RunBlock:
    """One law's points: log proportion, log step, log loss, weight and run index (0..n_runs-1)."""

    lr: np.ndarray
    ls: np.ndarray
    ly: np.ndarray
    w: np.ndarray
    run: np.ndarray

    @property
    def n_runs(self) -> int:
        return int(self.run.max()) + 1


def run_index(labels: np.ndarray) -> np.ndarray:
    """Labels (any hashable values, or rows of a 2-D array) as run indices 0..n-1."""
    labels = np.asarray(labels)
    axis = 0 if labels.ndim > 1 else None
    _, idx = np.unique(labels, axis=axis, return_inverse=True)
    return np.asarray(idx).ravel()


def _step_log(lb: float, beta: float, ls: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, lb - beta * ls)


def _run_means(block: RunBlock, x: np.ndarray) -> np.ndarray:
    """Weighted mean of ``x`` over each run, ``[n_runs]``."""
    num = np.bincount(block.run, weights=block.w * x, minlength=block.n_runs)
    den = np.bincount(block.run, weights=block.w, minlength=block.n_runs)
    return num / np.maximum(den, 1e-300)


def _run_mean(block: RunBlock, x: np.ndarray) -> np.ndarray:
    """Weighted mean of ``x`` over each point's run, broadcast back to the points."""
    return _run_means(block, x)[block.run]


def fit_step_terms(
    blocks: list[RunBlock], *, share_beta: bool, loss: str, f_scale: float | None, n_init: int,
) -> list[tuple[float, float, np.ndarray, np.ndarray]]:
    """Stage 1 for every block: ``[(log B, log beta, run offsets u, cov of (log B, log beta))]``.

    The run offsets are profiled out (variable projection): for given ``B, beta`` each ``u_g`` is the
    weighted mean of ``log L - log(1 + B s^-beta)`` over run ``g``, so the non-linear fit has only
    ``theta = [log B_k per block, log beta_k per block (or one shared)]``, and its Jacobian is the
    step term's, centred within runs. Starts: the best ``n_init`` points of a ``(log B, beta)`` grid.
    """
    m = len(blocks)
    n_beta = 1 if share_beta else m

    def pieces(theta):
        """``(k, block, log B (column k), column of its log beta, log beta)`` per block."""
        for k, b in enumerate(blocks):
            beta_col = m + (0 if share_beta else k)
            yield k, b, theta[k], beta_col, theta[beta_col]

    def resid(theta):
        out = []
        for _, b, lb, _, lbeta in pieces(theta):
            rest = b.ly - _step_log(lb, np.exp(lbeta), b.ls)
            out.append(np.sqrt(b.w) * (_run_mean(b, rest) - rest))
        return np.concatenate(out)

    def jac(theta):
        J = np.zeros((sum(b.ly.size for b in blocks), m + n_beta))
        row = 0
        for k, b, lb, beta_col, lbeta in pieces(theta):
            beta = np.exp(lbeta)
            sig = 1.0 / (1.0 + np.exp(-(lb - beta * b.ls)))
            d_lb, d_lbeta = sig, -sig * beta * b.ls
            rows = slice(row, row + b.ly.size)
            sw = np.sqrt(b.w)
            J[rows, k] = sw * (d_lb - _run_mean(b, d_lb))
            J[rows, beta_col] = sw * (d_lbeta - _run_mean(b, d_lbeta))
            row += b.ly.size
        return J

    grid = [(lb, np.log(beta)) for lb in (0.0, 2.0, 4.0, 7.0, 11.0) for beta in np.geomspace(0.05, 2.0, 12)]
    scored = []
    for lb, lbeta in grid:
        theta = np.r_[np.full(m, lb), np.full(n_beta, lbeta)]
        scored.append((float(np.sum(resid(theta) ** 2)), theta))
    scored.sort(key=lambda t: t[0])
    starts = [t for _, t in scored[: max(1, int(n_init))]]
    lo = np.r_[np.full(m, _LB_BOUNDS[0]), np.full(n_beta, _LBETA_BOUNDS[0])]
    hi = np.r_[np.full(m, _LB_BOUNDS[1]), np.full(n_beta, _LBETA_BOUNDS[1])]
    res = robust_least_squares(resid, starts, bounds=(lo, hi), loss=loss, f_scale=f_scale, jac_fn=jac)
    out = []
    for k, b, lb, beta_col, lbeta in pieces(res.theta):
        u = _run_means(b, b.ly - _step_log(lb, np.exp(lbeta), b.ls))
        idx = [k, beta_col]
        out.append((float(lb), float(lbeta), u, res.cov[np.ix_(idx, idx)]))
    return out


def fit_proportion_term(block: RunBlock, u: np.ndarray, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2: ``(log A, log alpha)`` and its covariance from the run offsets ``u``."""

    n = np.bincount(block.run, minlength=block.n_runs)
    lr = np.bincount(block.run, weights=block.lr, minlength=block.n_runs) / np.maximum(n, 1)
    if np.ptp(lr) <= 0:
        raise DataError(f"{name}: every run has the same proportion; the proportion exponent cannot be fitted")
    X = np.stack([np.ones_like(lr), -lr], axis=1)
    sol = lsq_linear(X, u, bounds=([_LA_BOUNDS[0], _ALPHA_MIN], [_LA_BOUNDS[1], _ALPHA_MAX]))
    log_a, alpha = (float(v) for v in sol.x)
    resid = X @ sol.x - u
    dof = max(lr.size - 2, 1)
    cov_nat = float(resid @ resid) / dof * np.linalg.pinv(X.T @ X)
    d = np.diag([1.0, 1.0 / alpha])  # d log(alpha) / d alpha
    return np.array([log_a, np.log(alpha)]), d @ cov_nat @ d
