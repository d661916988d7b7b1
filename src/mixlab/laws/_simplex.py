"""Constrained minimisation over the (bounded) probability simplex, shared by the laws' optimisers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, minimize

from mixlab.errors import ConfigError
from mixlab.mixture import MixtureConstraints, project_to_bounded_simplex

log = logging.getLogger(__name__)


def resolve_constraints(domains: Sequence[str], constraints: MixtureConstraints | None) -> MixtureConstraints:
    """Constraints aligned with ``domains`` by name (never by position: see mixture.py)."""
    if constraints is None:
        return MixtureConstraints.unconstrained(domains)
    if list(constraints.domains) == list(domains):
        return constraints
    missing = [d for d in domains if d not in constraints.domains]
    extra = [d for d in constraints.domains if d not in domains]
    if missing or extra:
        raise ConfigError(
            f"constraints cover domains {list(constraints.domains)} but the law was fitted on {list(domains)}"
        )
    idx = [constraints.domains.index(d) for d in domains]
    return MixtureConstraints(tuple(domains), constraints.lower[idx], constraints.upper[idx])


def minimize_on_simplex(
    fun: Callable[[np.ndarray], float],
    jac: Callable[[np.ndarray], np.ndarray] | None,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    extra_starts: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Minimise ``fun`` over {w : sum w = 1, lower <= w <= upper} with SLSQP from each start (projected
    to the feasible set first); falls back to trust-constr when SLSQP fails everywhere."""

    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    eq = {"type": "eq", "fun": lambda w: np.sum(w) - 1.0, "jac": lambda w: np.ones_like(w)}
    best_w, best_f = None, np.inf
    for start in (x0, *extra_starts):
        w0 = project_to_bounded_simplex(np.asarray(start, dtype=float), lower, upper)
        res = minimize(
            fun, w0, jac=jac, method="SLSQP", bounds=list(zip(lower, upper, strict=True)), constraints=[eq],
            options={"maxiter": 1000, "ftol": 1e-14},
        )
        w = project_to_bounded_simplex(res.x, lower, upper)
        f = fun(w)
        if np.isfinite(f) and f < best_f:
            best_w, best_f = w, f
    if best_w is None:
        log.info("SLSQP failed from every start; retrying with trust-constr")
        res = minimize(
            fun, project_to_bounded_simplex(np.asarray(x0, float), lower, upper), jac=jac,
            method="trust-constr", bounds=Bounds(lower, upper),
            constraints=[LinearConstraint(np.ones((1, lower.size)), 1.0, 1.0)],
        )
        best_w = project_to_bounded_simplex(res.x, lower, upper)
    return best_w
