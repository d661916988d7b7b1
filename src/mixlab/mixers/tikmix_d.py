"""TiKMiX-D: choose the next stage's mixture directly from the measured Group Influence.

TiKMiX (arXiv 2508.17677, Sec. 3.2). The paper writes the influence matrix as S (targets x training
domains); mixlab's one layout (:mod:`mixlab.influence.matrix`) is its transpose I = S^T (rows = training
domains, columns = targets), which every function here takes and returns. A mixture w gives
per-target influence P = S w, normalised per target as P_hat_j = P_j / (max_i |S_ji| + 1e-8) (Eq. 9;
the paper divides by max_i S_ji, mixlab by its absolute value so a target that every domain hurts
keeps its sign). Two objectives:

* ``objective="paper"`` (default, Eq. 10): minimise alpha * std(P_hat) - beta * sum_j P_hat_j
  - gamma * H(w), H(w) = -sum_i w_i log w_i, subject to sum w = 1, the per-domain bounds (mixlab's
  lower/upper and availability cap) and the Pareto constraint S w >= S w_prev (no target worse off
  than under the previous stage's mixture; dropped with a logged warning when the bounds make it
  infeasible). Every term is convex (std of an affine map, a linear term, negative entropy), so SLSQP
  from the uniform mixture finds the global optimum. With target weights c, the sum becomes
  sum_j m c_j P_hat_j (equal weights give the paper's sum).
* ``objective="linear"`` (issue 4): maximise a^T w - strength * R(w) with a_i = sum_j c_j I[i, j] and
  R the negative entropy (``entropy``), KL(w || prior) (``kl``) or 0.5 ||w - prior||^2 (``l2``).
  These are solved exactly: the KKT conditions give w_i = clip(phi_i(nu), lower_i, upper_i) with a
  scalar multiplier nu for sum w = 1, found by bisection; strength 0 is the linear program, solved
  greedily (fill the best domains up to their caps).
* ``objective="firstorder"`` (a mixlab variant, benchmarked as ``tikmix-d[objective=firstorder]``):
  the first-order predicted change of the weighted target loss with a KL trust region to the previous
  mixture, scaled to the influence's own magnitude. Derivation below.

**The first-order objective.** Let L_T = sum_j c_j L_j be the weighted target loss. Training the
next stage on mixture w moves the parameters, to first order, by dtheta = -eta P sum_i w_i g_i
(g_i the mean gradient of training domain i, P the optimizer's preconditioner, eta the step size
summed over the stage). The first-order change of the target loss is then

    dL_T(w) = grad L_T^T dtheta = -eta sum_i w_i sum_j c_j g_{T_j}^T P g_i = -eta a^T w,
    a_i = sum_j c_j I[i, j],

with I the measured Group Influence (positive = helpful; it *is* g_T^T P g_D). So the influence
predicts the loss change directly and linearly in w: no per-target normalisation (Eq. 9 divides each
target's row by its largest entry, which changes the relative value of domains between targets and
compresses the differences the measurement found), no std or entropy term. A linear prediction is
only trustworthy near the mixture it was measured under: the gradients g_i, the preconditioner and
the training trajectory all depend on the data the model has been seeing, and the first-order term
says nothing about the diminishing returns of one domain (a linear objective alone jumps to a
corner of the simplex). mixlab therefore maximises the predicted *relative* gain with a KL trust
region to the previous mixture w0:

    maximise   a^T (w - w0) / s  -  (1 / step) KL(w || w0),     s = sum_i w0_i |a_i|,

subject to the bounds. s, the magnitude of the influence under the current mixture, makes the
objective invariant to the influence's units (learning rate, preconditioner, model size): a domain
whose influence is the current average moves nothing, and ``step`` is the log-ratio by which a
domain whose influence exceeds the average by s is up-weighted. The KKT conditions give the
exponentiated-gradient (mirror-descent) update w_i = clip(w0_i exp(step a_i / s - nu), l_i, u_i), which
:func:`solve_linear` (``regularizer="kl"``, strength s / step) solves exactly. Re-measured at every
stage it is mirror descent on the target loss over the simplex: at a mixture where every domain is
equally influential (the first-order optimality condition on the simplex) it stays put, and with a
small enough step it converges to the best mixture of a smooth convex loss (tested on a synthetic
problem with a known answer). With no previous mixture (stage 0), w0 is uniform.

**Solver status.** The paper objective is solved with SLSQP from two starts. The result's status,
message and iteration count are returned in :class:`TiKMiXDSolution` (the pipeline writes them to the
stage record). When no start converges the solve is a failure: ``on_failure="error"`` raises
:class:`~mixlab.errors.MixlabError`; the default ``"previous"`` logs a warning and keeps the previous
mixture (projected onto the bounds), recording ``fallback="previous"``. Dropping an infeasible Pareto
constraint is logged and recorded as ``pareto_dropped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, MixlabError
from mixlab.influence.budget import measure_until_stable
from mixlab.influence.group import measure_group_influence
from mixlab.influence.matrix import GroupInfluence
from mixlab.influence.preconditioners import make_preconditioner
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture, project_to_bounded_simplex

log = logging.getLogger(__name__)

OBJECTIVES = ("paper", "linear", "firstorder")
ON_FAILURE = ("previous", "error")
REGULARIZERS = ("entropy", "kl", "l2")
_TINY = 1e-12


@dataclass
class TiKMiXDSolution:
    """Solver output: ``weights`` aligned with the influence rows, the objective value (the quantity
    minimised for ``paper``, maximised for ``linear``/``firstorder``), whether the Pareto constraint
    was enforced, and the solver's outcome: ``solver`` (``slsqp`` or ``closed-form``), ``success``,
    ``status`` (SLSQP's exit mode; 0 = converged), ``message``, ``iterations``, ``fallback`` (None, or
    what was used instead of a failed solve) and ``pareto_dropped``."""

    weights: np.ndarray
    objective: float
    pareto: bool
    message: str = ""
    solver: str = "closed-form"
    success: bool = True
    status: int = 0
    iterations: int = 0
    fallback: str | None = None
    pareto_dropped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The solver outcome as a JSON-able record (the weights are the stage's mixture)."""
        return {
            "solver": self.solver, "success": bool(self.success), "status": int(self.status),
            "message": self.message, "iterations": int(self.iterations), "objective": float(self.objective),
            "pareto": bool(self.pareto), "pareto_dropped": bool(self.pareto_dropped), "fallback": self.fallback,
        }  # fmt: skip


def _bounds(k: int, lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray]:
    lo = np.zeros(k) if lower is None else np.asarray(lower, float).copy()
    hi = np.ones(k) if upper is None else np.asarray(upper, float).copy()
    if lo.shape != (k,) or hi.shape != (k,):
        raise ConfigError(f"bounds must have one entry per training domain ({k})")
    if np.any(lo < 0) or np.any(hi < lo - 1e-12) or lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9:
        raise ConfigError(f"bounds admit no mixture: lower sums to {lo.sum():.4g}, upper to {hi.sum():.4g}")
    return lo, np.maximum(hi, lo)


def normalised_influence(influence: np.ndarray) -> np.ndarray:
    """Each target's column divided by its largest absolute entry, I[i, j] / (max_i |I[i, j]| + 1e-8)
    (Eq. 9), in the influence's own layout: rows = training domains, columns = targets."""
    infl = np.asarray(influence, float)
    return infl / (np.abs(infl).max(axis=0, keepdims=True) + 1e-8)


def paper_objective(
    w: np.ndarray, I_hat: np.ndarray, c: np.ndarray, alpha: float, beta: float, gamma: float
) -> float:
    """alpha * std(P_hat) - beta * sum_j m c_j P_hat_j - gamma * H(w) (to be minimised), with
    P_hat = I_hat^T w (the paper's S_hat w) and I_hat = :func:`normalised_influence` [train, target]."""
    P = I_hat.T @ w
    wc = np.clip(w, _TINY, None)
    return float(alpha * P.std() - beta * len(c) * (c @ P) + gamma * (wc * np.log(wc)).sum())


def _paper_grad(
    w: np.ndarray, I_hat: np.ndarray, c: np.ndarray, alpha: float, beta: float, gamma: float
) -> np.ndarray:
    P = I_hat.T @ w
    m = len(P)
    sd = P.std()
    g = -beta * m * (I_hat @ c) + gamma * (np.log(np.clip(w, _TINY, None)) + 1.0)
    if sd > 1e-15:
        g = g + alpha * I_hat @ (P - P.mean()) / (m * sd)
    return g


def _pareto_feasible(S: np.ndarray, w_prev: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    from scipy.optimize import linprog

    k = len(lo)
    res = linprog(
        np.zeros(k), A_ub=-S, b_ub=-(S @ w_prev) + 1e-12, A_eq=np.ones((1, k)), b_eq=[1.0],
        bounds=list(zip(lo, hi, strict=True)), method="highs",
    )  # fmt: skip
    return bool(res.status == 0)


def _bisect(phi: Callable[[float], np.ndarray], lo_nu: float, hi_nu: float) -> np.ndarray:
    """w(nu) = phi(nu) is non-increasing in nu; find sum w = 1 (bracket widened as needed)."""
    for _ in range(200):
        if phi(lo_nu).sum() >= 1:
            break
        lo_nu -= 2 * (abs(lo_nu) + 1)
    for _ in range(200):
        if phi(hi_nu).sum() <= 1:
            break
        hi_nu += 2 * (abs(hi_nu) + 1)
    for _ in range(300):
        mid = 0.5 * (lo_nu + hi_nu)
        if phi(mid).sum() > 1:
            lo_nu = mid
        else:
            hi_nu = mid
        if hi_nu - lo_nu <= 1e-15 * max(1.0, abs(mid)):
            break
    w = phi(0.5 * (lo_nu + hi_nu))
    return w


def solve_linear(
    a: np.ndarray,
    *,
    lower: np.ndarray,
    upper: np.ndarray,
    regularizer: str = "entropy",
    strength: float = 1.0,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """argmax_w a^T w - strength * R(w) on {sum w = 1, lower <= w <= upper}, exactly (see module doc)."""
    a = np.asarray(a, float)
    k = len(a)
    if regularizer not in REGULARIZERS:
        raise ConfigError(f"unknown regularizer {regularizer!r}; choose one of {list(REGULARIZERS)}")
    if strength < 0:
        raise ConfigError(f"strength must be >= 0, got {strength}")
    q = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, float)
    if strength == 0:
        w = lower.copy()
        left = 1.0 - w.sum()
        for i in np.argsort(-a, kind="stable"):
            add = min(upper[i] - lower[i], left)
            w[i] += add
            left -= add
        return w
    tau = float(strength)
    span = float(a.max() - a.min()) / tau
    if regularizer == "l2":
        return project_to_bounded_simplex(q + a / tau, lower, upper)
    logq = np.log(np.clip(q, 1e-300, None)) if regularizer == "kl" else np.zeros(k)
    base = a / tau + logq
    base = np.where((q <= 0) & (regularizer == "kl"), -np.inf, base)
    shift = np.nanmax(base[np.isfinite(base)]) if np.isfinite(base).any() else 0.0

    def phi(nu: float) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore"):
            return np.clip(np.exp(np.minimum(base - shift - nu, 700.0)), lower, upper)

    return _bisect(phi, -span - 50.0, 50.0 + abs(np.log(k)))


def solve_tikmix_d(
    influence: np.ndarray,
    *,
    lower: Sequence[float] | np.ndarray | None = None,
    upper: Sequence[float] | np.ndarray | None = None,
    previous: Sequence[float] | np.ndarray | None = None,
    target_weights: Sequence[float] | np.ndarray | None = None,
    objective: str = "paper",
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    pareto: bool = True,
    regularizer: str = "entropy",
    strength: float = 1.0,
    prior: Sequence[float] | np.ndarray | None = None,
    step: float = 1.0,
    on_failure: str = "previous",
    maxiter: int = 500,
) -> TiKMiXDSolution:
    """The TiKMiX-D mixture for an influence matrix ``[n_train, n_target]`` (rows = training domains).

    ``previous`` is the last stage's mixture (for the Pareto constraint, as the default prior of the
    ``kl``/``l2`` regularisers and as the trust-region centre of ``firstorder``); ``target_weights`` c
    over targets defaults to equal. ``step`` is the ``firstorder`` trust-region step (see the module
    docstring); ``on_failure`` says what a failed SLSQP solve does (``previous`` or ``error``);
    ``maxiter`` caps SLSQP's iterations.
    """
    infl = np.asarray(influence, float)
    if infl.ndim != 2 or infl.shape[0] < 1 or infl.shape[1] < 1 or not np.isfinite(infl).all():
        raise ConfigError(
            f"influence must be a finite [train domains, targets] matrix, got shape {infl.shape}"
        )
    k, m = infl.shape
    lo, hi = _bounds(k, lower, upper)
    c = np.full(m, 1.0 / m) if target_weights is None else np.asarray(target_weights, float)
    if c.shape != (m,) or np.any(c < 0) or c.sum() <= 0:
        raise ConfigError(f"target_weights must be {m} non-negative numbers, not all zero")
    c = c / c.sum()
    w_prev = None if previous is None else np.asarray(previous, float)
    if on_failure not in ON_FAILURE:
        raise ConfigError(f"unknown on_failure {on_failure!r}; choose one of {list(ON_FAILURE)}")
    if objective == "firstorder":
        return solve_firstorder(infl @ c, lower=lo, upper=hi, previous=w_prev, step=step)
    if objective == "linear":
        q = np.asarray(prior, float) if prior is not None else w_prev
        w = solve_linear(infl @ c, lower=lo, upper=hi, regularizer=regularizer, strength=strength, prior=q)
        val = float((infl @ c) @ w)
        return TiKMiXDSolution(w, val, False, f"linear objective, {regularizer} strength {strength}")
    if objective != "paper":
        raise ConfigError(f"unknown TiKMiX-D objective {objective!r}; choose one of {list(OBJECTIVES)}")
    from scipy.optimize import minimize

    I_hat = normalised_influence(infl)
    S = infl.T  # the paper's S (targets x training domains), for the Pareto rows S w >= S w_prev
    use_pareto = bool(pareto and w_prev is not None)
    dropped = False
    if use_pareto and not _pareto_feasible(S, w_prev, lo, hi):
        log.warning(
            "TiKMiX-D: no mixture within the bounds keeps every target at least as well served as the previous "
            "stage's; dropping the Pareto constraint for this stage"
        )
        use_pareto, dropped = False, True
    cons: list[dict[str, Any]] = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}]
    if use_pareto:
        scale = np.abs(S).max(axis=1, keepdims=True) + 1e-30
        Sn, floor = S / scale, (S @ w_prev) / scale[:, 0]
        cons.append({"type": "ineq", "fun": lambda w: Sn @ w - floor, "jac": lambda w: Sn})
    eps_lo = np.maximum(lo, 1e-10 if gamma > 0 else 0.0)
    eps_lo = np.minimum(eps_lo, hi)
    args = (I_hat, c, alpha, beta, gamma)
    starts = [project_to_bounded_simplex(np.full(k, 1.0 / k), eps_lo, hi)]
    if w_prev is not None:
        starts.append(np.clip(w_prev, eps_lo, hi))
    best: TiKMiXDSolution | None = None
    outcomes = []
    for x0 in starts:
        res = minimize(
            paper_objective, x0, args=args, jac=_paper_grad, method="SLSQP",
            bounds=list(zip(eps_lo, hi, strict=True)), constraints=cons,
            options={"maxiter": int(maxiter), "ftol": 1e-12},
        )  # fmt: skip
        outcomes.append(f"status {res.status}: {res.message}")
        if not res.success:
            continue
        w = np.clip(res.x, lo, hi)
        w = w / w.sum()
        feasible = not use_pareto or np.all(S @ w >= S @ w_prev - 1e-7 * (np.abs(S).max() + 1e-30))
        val = paper_objective(w, *args)
        if feasible and (best is None or val < best.objective):
            best = TiKMiXDSolution(
                w, val, use_pareto, str(res.message), solver="slsqp", success=True, status=int(res.status),
                iterations=int(res.nit), pareto_dropped=dropped,
            )  # fmt: skip
    if best is not None:
        return best
    why = "; ".join(outcomes)
    if on_failure == "error":
        raise MixlabError(
            f"TiKMiX-D: SLSQP found no converged feasible mixture ({why}); loosen the bounds, set pareto=False, "
            "or use on_failure='previous' to keep the previous mixture"
        )
    keep = w_prev if w_prev is not None else np.full(k, 1.0 / k)
    keep = project_to_bounded_simplex(keep, lo, hi)
    log.warning("TiKMiX-D: SLSQP failed (%s); keeping the previous mixture for this stage", why)
    return TiKMiXDSolution(
        keep, paper_objective(np.clip(keep, 0, None), *args), use_pareto, why, solver="slsqp", success=False,
        status=int(res.status), iterations=int(res.nit), fallback="previous", pareto_dropped=dropped,
    )  # fmt: skip


def solve_firstorder(
    a: np.ndarray,
    *,
    lower: np.ndarray,
    upper: np.ndarray,
    previous: np.ndarray | None = None,
    step: float = 1.0,
) -> TiKMiXDSolution:
    """argmax_w a^T (w - w0) / s - KL(w || w0) / step on the bounded simplex, s = sum_i w0_i |a_i|
    (the ``firstorder`` objective, derived in the module docstring). ``a_i`` is the target-weighted
    influence of domain i; w0 = ``previous`` (uniform when None); the solution is exact (KKT)."""
    a = np.asarray(a, float)
    k = len(a)
    if step <= 0:
        raise ConfigError(f"firstorder step must be > 0, got {step}")
    w0 = np.full(k, 1.0 / k) if previous is None else np.asarray(previous, float)
    w0 = w0 / w0.sum()
    scale = float(w0 @ np.abs(a))
    if not scale > 0:
        w = project_to_bounded_simplex(w0, lower, upper)
        return TiKMiXDSolution(w, 0.0, False, "influence is zero: keeping the previous mixture")
    # a domain with no weight in w0 cannot enter under KL(w || w0); a floor keeps every domain reachable
    w0 = np.maximum(w0, 1e-6)
    w0 = w0 / w0.sum()
    w = solve_linear(a / scale, lower=lower, upper=upper, regularizer="kl", strength=1.0 / step, prior=w0)
    kl = float(np.sum(w * np.log(np.clip(w, 1e-300, None) / w0)))
    value = float((a / scale) @ (w - w0) - kl / step)
    return TiKMiXDSolution(w, value, False, f"first-order gain with KL trust region, step {step}")


class InfluenceMixer(Mixer):
    """A dynamic mixer that measures Group Influence on the live model (TiKMiX-D and TiKMiX-M).

    Subclasses store ``tokens_per_domain``, ``target_tokens_per_domain``, ``seq_len``, ``batch_size``,
    ``preconditioner``, ``projection_dim`` and ``seed`` in ``__init__``.
    """

    dynamic = True

    def measure(self, ctx: MixingContext) -> tuple[GroupInfluence, list[dict[str, Any]]]:
        """Group Influence of ``ctx.domains`` on ``ctx.targets`` at the live model (cost to ``ctx.compute``)
        and one record per measurement.

        With ``min_stability`` set, further samples are pooled until the split-half stability reaches
        it (:func:`mixlab.influence.budget.measure_until_stable`); each measurement is counted as
        choosing compute."""
        records: list[dict[str, Any]] = []
        gi = measure_live_influence(
            ctx,
            tokens_per_domain=self.tokens_per_domain,
            target_tokens_per_domain=self.target_tokens_per_domain,
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            preconditioner=self.preconditioner,
            projection_dim=self.projection_dim,
            seed=self.seed,
            method=self.name,
            min_stability=getattr(self, "min_stability", None),
            max_tokens_per_domain=getattr(self, "max_tokens_per_domain", None),
            records=records,
        )
        return gi, records


class TiKMiXDMixer(InfluenceMixer):
    """TiKMiX-D at a stage boundary: measure Group Influence on the live model, solve for w.

    Needs ``ctx.live`` (``model``, ``optimizer``, ``seq_len``, ``batch_size``) and ``ctx.corpus``;
    a precomputed :class:`~mixlab.influence.GroupInfluence` in ``ctx.live.influence`` is used as is.
    The proposal carries the measured matrix, the solver's outcome and the measurements; their cost
    is added to ``ctx.compute``.
    """

    name = "tikmix-d"

    def __init__(
        self,
        objective: str = "paper",
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        pareto: bool = True,
        regularizer: str = "entropy",
        strength: float = 1.0,
        tokens_per_domain: int = 65536,
        target_tokens_per_domain: int | None = None,
        seq_len: int | None = None,
        batch_size: int | None = None,
        preconditioner: str = "adam",
        projection_dim: int | None = None,
        seed: int | None = None,
        step: float = 1.0,
        on_failure: str = "previous",
        min_stability: float | None = None,
        max_tokens_per_domain: int | None = None,
    ) -> None:
        self.objective = objective
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.pareto = pareto
        self.regularizer = regularizer
        self.strength = strength
        self.tokens_per_domain = tokens_per_domain
        self.target_tokens_per_domain = target_tokens_per_domain
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.preconditioner = preconditioner
        self.projection_dim = projection_dim
        self.seed = seed
        self.step = step
        self.on_failure = on_failure
        self.min_stability = min_stability
        self.max_tokens_per_domain = max_tokens_per_domain

    def solve(self, ctx: MixingContext, influence: Any) -> TiKMiXDSolution:
        cons = ctx.constraints()
        c = ctx.target_weight_vector()
        return solve_tikmix_d(
            influence.matrix,
            lower=cons.lower,
            upper=cons.upper,
            previous=ctx.previous.to_array(ctx.domains) if ctx.previous is not None else None,
            target_weights=[c.get(t, 0.0) for t in influence.target_domains],
            objective=self.objective,
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma,
            pareto=self.pareto,
            regularizer=self.regularizer,
            strength=self.strength,
            step=self.step,
            on_failure=self.on_failure,
        )

    def propose(self, ctx: MixingContext) -> Proposal:
        gi, measured = self.measure(ctx)
        t0 = time.perf_counter()
        sol = self.solve(ctx, gi)
        ctx.compute.add(seconds=time.perf_counter() - t0)
        mixture = Mixture.from_weights(sol.weights, ctx.domains)
        log.info("tikmix-d stage %d: %s (pareto=%s)", ctx.stage, mixture, sol.pareto)
        return Proposal(mixture, influence=gi, solver=sol.to_dict(), measurements=measured,
                        details={"solution": sol})


def measure_live_influence(
    ctx: MixingContext,
    *,
    tokens_per_domain: int,
    target_tokens_per_domain: int | None = None,
    seq_len: int | None = None,
    batch_size: int | None = None,
    preconditioner: str = "adam",
    projection_dim: int | None = None,
    seed: int | None = None,
    method: str = "tikmix",
    min_stability: float | None = None,
    max_tokens_per_domain: int | None = None,
    records: list[dict[str, Any]] | None = None,
) -> Any:
    """Group Influence on ``ctx.live``'s model over ``ctx.corpus`` (rows ``ctx.domains``, columns
    ``ctx.targets``), with the FLOPs, tokens and seconds of every measurement added to ``ctx.compute``.

    ``min_stability``/``max_tokens_per_domain`` choose the budget by split-half stability
    (:func:`mixlab.influence.budget.measure_until_stable`); ``records`` receives one entry per
    measurement."""
    live = ctx.live
    if live is None:
        raise MixlabError(
            f"{method} needs the live model at a stage boundary (ctx.live is None); run it through the dynamic "
            "pipeline (`mixlab run --config run.yaml --mixer tikmix-d`) or the Hugging Face MixtureScheduleCallback"
        )
    pre = getattr(live, "influence", None)
    if pre is not None:
        gi = pre if isinstance(pre, GroupInfluence) else GroupInfluence.from_dict(pre)
        if list(gi.train_domains) != list(ctx.domains) or list(gi.target_domains) != list(ctx.targets):
            raise MixlabError(
                f"{method}: the precomputed influence covers {gi.train_domains} -> {gi.target_domains}, "
                f"but the context has {list(ctx.domains)} -> {ctx.targets}"
            )
        return gi
    if ctx.corpus is None:
        raise MixlabError(f"{method} needs ctx.corpus to read training and validation batches from")
    model = getattr(live, "model", None)
    if model is None:
        raise MixlabError(f"{method}: ctx.live has no model")
    optimizer = getattr(live, "optimizer", None)
    if preconditioner == "adam" and optimizer is None:
        log.warning(
            "%s: no optimizer in ctx.live, so no Adam second moment; using the identity preconditioner",
            method,
        )
        preconditioner = "identity"
    seq = int(seq_len or getattr(live, "seq_len", 0) or 0)
    bs = int(batch_size or getattr(live, "batch_size", 0) or 0)
    if seq <= 0 or bs <= 0:
        raise MixlabError(f"{method}: give seq_len and batch_size (ctx.live does not say them)")
    tgt_ratio = None if target_tokens_per_domain is None else target_tokens_per_domain / tokens_per_domain
    # one preconditioner for every pooled measurement: a data-fitted one (EK-FAC) is fitted, and paid, once
    precond = make_preconditioner(preconditioner, optimizer=optimizer)

    def one(tokens: int, s: int) -> Any:
        return measure_group_influence(
            model,
            ctx.corpus,
            train_domains=list(ctx.domains),
            target_domains=ctx.targets,
            tokens_per_domain=tokens,
            target_tokens_per_domain=None if tgt_ratio is None else max(1, round(tgt_ratio * tokens)),
            seq_len=seq,
            batch_size=bs,
            preconditioner=precond,
            optimizer=optimizer,
            projection_dim=projection_dim,
            seed=s,
            target_sources=ctx.target_sources,
        )

    def book(gi: Any) -> None:
        ctx.compute.add(flops=gi.flops, tokens=gi.tokens, seconds=gi.seconds)
        log.info(
            "%s: Group Influence from %d tokens in %.1fs (%s), split-half stability %.2f",
            method, gi.tokens, gi.seconds, gi.preconditioner, gi.stability,
        )  # fmt: skip

    gi, measured = measure_until_stable(
        one, int(tokens_per_domain), seed=ctx.seed if seed is None else seed, min_stability=min_stability,
        max_tokens_per_domain=max_tokens_per_domain, on_measurement=book,
    )  # fmt: skip
    if records is not None:
        records.extend(measured)
    return gi


__all__ = [
    "InfluenceMixer",
    "TiKMiXDMixer",
    "TiKMiXDSolution",
    "measure_live_influence",
    "normalised_influence",
    "paper_objective",
    "solve_firstorder",
    "solve_linear",
    "solve_tikmix_d",
]
