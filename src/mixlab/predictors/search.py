"""Search a fitted predictor for the mixture of least predicted loss, under mixture constraints.

Two searches, and ``search`` that runs both:

- :func:`search_topk`: RegMix's procedure (arXiv 2407.01492, Sec. 3.3; sail-sg/regmix
  ``mixture_config/synthesize_mixture``): simulate many mixtures from Dirichlet distributions centred
  on a prior with concentrations spread over log-spaced strengths, predict their loss, and return the
  mean of the top-k. Averaging the top-k (rather than taking the single best) hedges against the
  regressor's errors; the mean of feasible points is feasible because the constraint set (simplex
  intersected with a box) is convex.
- :func:`search_continuous`: minimise the predicted loss with SLSQP on {sum w = 1, lower <= w <= upper}
  from several starts (the top-k solution, the prior, the best samples); gradients by finite
  differences, so any predictor works. Tree models are piecewise constant, so for them the top-k
  answer usually stands.

The target is one column's loss (``"metric/pile_cc"``), a weighted sum (``{"a": 0.5, "b": 0.5}``) or
the average of all columns (``None`` or ``"average"``). Constraints come from
:class:`mixlab.mixture.MixtureConstraints` (bounds plus the availability cap) and are aligned with the
predictor's domains by name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, minimize

from mixlab.errors import ConfigError
from mixlab.mixture import Mixture, MixtureConstraints, project_to_bounded_simplex
from mixlab.predictors.base import Predictor

log = logging.getLogger(__name__)

Target = str | Mapping[str, float] | None


@dataclass
class SearchResult:
    """The proposed mixture, its predicted objective and how it was found."""

    mixture: Mixture
    predicted: float
    method: str
    n_evaluated: int


def objective(predictor: Predictor, target: Target = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function rows-of-weights -> predicted objective (lower is better) for ``target``."""
    predictor.check_fitted()
    names = list(predictor.targets_)
    if predictor.single_output_ or target is None or target == "average":
        weights = np.full(len(names), 1.0 / len(names))
    elif isinstance(target, str):
        if target not in names:
            raise ConfigError(f"target {target!r} is not one of the fitted loss columns {names}")
        weights = np.array([1.0 if n == target else 0.0 for n in names])
    else:
        unknown = [k for k in target if k not in names]
        if unknown:
            raise ConfigError(f"target weights name unknown loss columns {unknown}; columns are {names}")
        weights = np.array([float(target.get(n, 0.0)) for n in names])
        if weights.sum() <= 0 or (weights < 0).any():
            raise ConfigError("target weights must be >= 0 with a positive sum")
        weights = weights / weights.sum()

    def f(W: np.ndarray) -> np.ndarray:
        pred = np.asarray(predictor.predict(np.atleast_2d(W)), dtype=float)
        return pred.reshape(pred.shape[0], -1) @ weights

    return f


def _aligned(
    predictor: Predictor, constraints: MixtureConstraints | None, within_data: bool = True
) -> MixtureConstraints:
    """Constraints aligned with the predictor's domains by name; with ``within_data`` the upper bounds
    are also capped at the largest weight each domain had in the training runs (a regressor is not to
    be trusted where it has seen no data: RegMix's search stays near its samples for the same reason).
    The cap is dropped when it would leave no feasible mixture."""
    domains = list(predictor.domains_)
    if constraints is None:
        cons = MixtureConstraints.unconstrained(domains)
    elif list(constraints.domains) == domains:
        cons = constraints
    elif sorted(constraints.domains) != sorted(domains):
        raise ConfigError(
            f"constraints cover domains {list(constraints.domains)} but the predictor was fitted on {domains}"
        )
    else:
        idx = [constraints.domains.index(d) for d in domains]
        cons = MixtureConstraints(tuple(domains), constraints.lower[idx], constraints.upper[idx])
    if within_data and hasattr(predictor, "x_max_"):
        upper = np.minimum(cons.upper, np.maximum(predictor.x_max_, cons.lower))
        if upper.sum() >= 1 + 1e-9:
            return MixtureConstraints(cons.domains, cons.lower, upper)
        log.info("the training runs do not cover the constraint set; searching outside them")
    return cons


def _prior(predictor: Predictor, prior: Mixture | Sequence[float] | None, cons: MixtureConstraints) -> np.ndarray:
    if prior is None:
        p = np.full(len(cons.domains), 1.0 / len(cons.domains))
    elif isinstance(prior, Mixture):
        p = prior.to_array(cons.domains)
    else:
        p = np.asarray(prior, dtype=float)
        if p.shape != (len(cons.domains),):
            raise ConfigError(f"prior has {p.size} weights for {len(cons.domains)} domains")
    return project_to_bounded_simplex(p / p.sum(), cons.lower, cons.upper)


def dirichlet_candidates(
    prior: np.ndarray,
    n: int,
    *,
    strengths: tuple[float, float] = (0.1, 5.0),
    n_strengths: int = 15,
    min_weight: float = 2e-4,
    rng: np.random.Generator,
) -> np.ndarray:
    """RegMix's sampler: Dirichlet(prior * s) with s cycling over log-spaced strengths; weights below
    ``min_weight`` are zeroed and the rows renormalised (sparse and dense mixtures both occur)."""
    grid = np.logspace(np.log10(strengths[0]), np.log10(strengths[1]), n_strengths)
    alpha = np.maximum(np.asarray(prior, dtype=float), 1e-6)
    out = np.empty((n, alpha.size))
    for i, s in enumerate(grid):
        rows = np.arange(i, n, n_strengths)
        if rows.size:
            out[rows] = rng.dirichlet(alpha * s, size=rows.size)
    out[out < min_weight] = 0.0
    zero = out.sum(axis=1) <= 0
    out[zero] = alpha / alpha.sum()
    return out / out.sum(axis=1, keepdims=True)


def search_topk(
    predictor: Predictor,
    target: Target = None,
    constraints: MixtureConstraints | None = None,
    *,
    prior: Mixture | Sequence[float] | None = None,
    n_samples: int = 100_000,
    top_k: int = 128,
    seed: int = 0,
    batch: int = 20_000,
    within_data: bool = True,
) -> SearchResult:
    """RegMix's sample-and-average-top-k search (defaults: 100k samples, top 128, as in its code)."""
    cons = _aligned(predictor, constraints, within_data)
    f = objective(predictor, target)
    p = _prior(predictor, prior, cons)
    rng = np.random.default_rng(seed)
    cand = dirichlet_candidates(p, n_samples, rng=rng)
    ok = np.all((cand >= cons.lower - 1e-9) & (cand <= cons.upper + 1e-9), axis=1)
    if ok.sum() < max(top_k, 1):
        # Few draws satisfy tight bounds: project every draw onto the feasible set instead of rejecting.
        log.info("only %d of %d samples satisfy the constraints; projecting all onto them", ok.sum(), n_samples)
        cand = np.array([project_to_bounded_simplex(c, cons.lower, cons.upper) for c in cand])
    else:
        cand = cand[ok]
    values = np.concatenate([f(cand[i : i + batch]) for i in range(0, len(cand), batch)])
    k = min(top_k, len(cand))
    top = np.argsort(values)[:k]
    w = project_to_bounded_simplex(cand[top].mean(axis=0), cons.lower, cons.upper)
    return SearchResult(Mixture.from_weights(w, cons.domains), float(f(w)[0]), "topk", len(cand))


def search_continuous(
    predictor: Predictor,
    target: Target = None,
    constraints: MixtureConstraints | None = None,
    *,
    starts: Sequence[np.ndarray] | None = None,
    n_starts: int = 8,
    seed: int = 0,
    max_iter: int = 200,
    within_data: bool = True,
) -> SearchResult:
    """Multi-start SLSQP on the bounded simplex (trust-constr where SLSQP fails)."""

    cons = _aligned(predictor, constraints, within_data)
    f = objective(predictor, target)
    m = len(cons.domains)
    rng = np.random.default_rng(seed)
    x0s = [np.asarray(s, dtype=float) for s in (starts or [])]
    x0s.append(np.full(m, 1.0 / m))
    while len(x0s) < n_starts:
        x0s.append(rng.dirichlet(np.ones(m)))
    lo, hi = cons.lower, cons.upper
    bounds = list(zip(lo, hi, strict=True))
    evals = 0

    def fun(w: np.ndarray) -> float:
        # SLSQP's finite-difference steps and trust-constr's iterates leave the simplex (sums of 1.05
        # were seen); the predictor is only ever asked about the projection, a real mixture.
        nonlocal evals
        evals += 1
        return float(f(project_to_bounded_simplex(w, lo, hi))[0])

    best_w, best_f = None, np.inf
    for x0 in x0s:
        w0 = project_to_bounded_simplex(x0, lo, hi)
        res = minimize(
            fun, w0, method="SLSQP", bounds=bounds,
            constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0, "jac": lambda w: np.ones_like(w)}],
            options={"maxiter": max_iter, "ftol": 1e-10, "eps": 1e-6},
        )
        if not res.success:
            res = minimize(
                fun, w0, method="trust-constr", bounds=Bounds(lo, hi),
                constraints=[LinearConstraint(np.ones((1, m)), 1.0, 1.0)], options={"maxiter": max_iter},
            )
        w = project_to_bounded_simplex(np.asarray(res.x), lo, hi)
        val = fun(w)
        if val < best_f:
            best_w, best_f = w, val
    assert best_w is not None
    return SearchResult(Mixture.from_weights(best_w, cons.domains), best_f, "slsqp", evals)


def search(
    predictor: Predictor,
    target: Target = None,
    constraints: MixtureConstraints | None = None,
    *,
    method: str = "auto",
    prior: Mixture | Sequence[float] | None = None,
    n_samples: int = 100_000,
    top_k: int = 128,
    n_starts: int = 8,
    seed: int = 0,
    within_data: bool = True,
) -> SearchResult:
    """``topk``, ``slsqp``, or ``auto`` (top-k, then SLSQP from its answer; keeps whichever predicts lower).

    ``within_data`` caps each weight at the largest the training runs used (see :func:`_aligned`)."""
    if method not in ("auto", "topk", "slsqp"):
        raise ConfigError(f"search method must be 'auto', 'topk' or 'slsqp', got {method!r}")
    if method == "slsqp":
        return search_continuous(predictor, target, constraints, n_starts=n_starts, seed=seed, within_data=within_data)
    top = search_topk(
        predictor, target, constraints, prior=prior, n_samples=n_samples, top_k=top_k, seed=seed,
        within_data=within_data,
    )
    if method == "topk":
        return top
    cont = search_continuous(
        predictor, target, constraints, starts=[top.mixture.to_array(list(predictor.domains_))],
        n_starts=n_starts, seed=seed, within_data=within_data,
    )
    best = cont if cont.predicted < top.predicted else top
    return SearchResult(best.mixture, best.predicted, f"auto:{best.method}", top.n_evaluated + cont.n_evaluated)
