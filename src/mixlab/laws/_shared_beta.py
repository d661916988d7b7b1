"""Joint refit of several domains' BiMix-type laws with one shared step exponent (``share_beta``).

Used by :class:`~mixlab.laws.bimix.BiMixModel` and
:class:`~mixlab.laws.bimix_transfer.BiMixTransferModel`: every law whose parameter vector starts with
BiMix's ``[log A, log alpha, log B, log beta]`` can be refitted this way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixlab.laws._nls import robust_least_squares


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

