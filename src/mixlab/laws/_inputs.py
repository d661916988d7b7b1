"""Inputs and small helpers shared by the mixing laws: long-table checks, mixture/loss matrices by
domain name, objective weights, the fitted-state check and R^2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, DataError, NotFittedError
from mixlab.mixture import Mixture


def check_fitted(obj: Any, attr: str) -> None:
    """Raise :class:`~mixlab.errors.NotFittedError` unless ``obj`` has the fitted attribute ``attr``."""
    if not hasattr(obj, attr):
        raise NotFittedError(f"{type(obj).__name__} is not fitted yet: call fit() first")



def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of ``pred`` for ``y`` (NaN when ``y`` is constant)."""
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

