"""TiKMiX-D: choose the next stage's mixture directly from the measured Group Influence.

TiKMiX (arXiv 2508.17677, Sec. 3.2). The paper writes the influence matrix as S (targets x training
domains); mixlab's one layout (:mod:`mixlab.influence.matrix`) is its transpose I = S^T (rows = training
domains, columns = targets), which every function here takes and returns. A mixture w gives
per-target influence P = S w, normalised per target as P_hat_j = P_j / (max_i |S_ji| + 1e-8) (Eq. 9;
the paper divides by max_i S_ji, mixlab by its absolute value so a target that every domain hurts
keeps its sign). Objectives:

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

**The mirror objective** (``objective="mirror"``, benchmarked as ``tikmix-d[objective=mirror,
budget=fixed,initial=uniform,stages=4]``). The first-order prediction above is a
gradient: dL_T(w) = -eta a^T w says grad_w L_T = -eta a, up to the positive factor eta. A run with
K decisions (stage boundaries) that re-measures the influence at each one is then online convex
optimisation on the simplex with one gradient per round, and the classical algorithm for it is the
exponentiated-gradient (Hedge; mirror descent with the entropy mirror map) step

    w_{k+1, i}  proportional to  w_{k, i} exp(eta_k a_hat_i),

the exact maximiser of a_hat^T w - KL(w || w_k) / eta_k on the simplex (:func:`solve_linear` with
``regularizer="kl"``, so the bounds are kept exactly: w_i = clip(w_{k,i} exp(eta_k a_hat_i - nu), l_i,
u_i)). Two things set the step, neither of them a constant fitted to one target:

* **Magnitude** (the Hedge step): for gains whose range within a round is R, exponential weights with
  eta = sqrt(8 ln n / K) / R (n domains, K rounds) have regret at most R sqrt(K ln n / 2) against the
  best fixed mixture in hindsight (Cesa-Bianchi and Lugosi 2006, Thm. 2.2), i.e. the time-averaged
  mixture's first-order loss approaches the best static mixture's at rate sqrt(ln n / K). R bounds
  the range of every round's gains, which is not known in advance; mixlab uses its estimate at the
  time of each decision, the largest range max_i a_i - min_i a_i among this run's measurements so far
  (the earlier stages' recorded matrices and the current one). This makes the step independent of
  the influence's units (learning rate, preconditioner, model size), as the ``firstorder``
  normalisation does, and lets it shrink as the domains' influences converge, so the mixture settles
  at the first-order optimum instead of oscillating around it (normalising by each round's own range
  would not: on the synthetic test problem it does not converge in 10 rounds). With n = 6 domains and
  K = 3 decisions a fully reliable measurement moves the log-ratio of the best to the worst domain
  by at most sqrt(8 ln 6 / 3) = 2.2 per decision. K is the run's number of decisions (``rounds``, by
  default read from the pipeline's stage plan).
* **Reliability**: the measured a is the true influence plus sampling noise. Its split-half
  reliability rho (:func:`mixlab.influence.group.split_half_stability` of the two half-sample
  estimates of a = I c) is the share of the spread between domains that is signal, and the best
  linear predictor of the true centred influence from the measured one is rho (a - mean a) (Kelley's
  regression estimate of true scores, classical test theory). So a_hat = clip(rho, 0, 1) a (a shift
  common to all domains moves nothing on the simplex): a noisy measurement moves the mixture less,
  one whose halves disagree (rho <= 0) not at all. This is how the measurement's reliability enters
  without buying more tokens, which is what keeps the run's measurement cost fixed (``budget="fixed"``: exactly ``tokens_per_domain`` per domain at each
  decision, so the choosing compute is K single measurements).

When to decide: to first order the trained model depends on the mixture integrated over the run
(the time-averaged mixture of the paper's plan, trained statically, matches the schedule on the
bench), and the regret bound is about that average. The paper's plan spends the first half of the
run on the natural mixture and moves once; the mirror variant's plan trains the uniform mixture (no
prior) for the first quarter, then decides at 1/4, 1/2 and 3/4 of the run, re-measuring each time:
as a domain is over-served its gradient shrinks, its measured influence falls and the next step
moves weight back (equal influence, the first-order optimality condition on the simplex, is the
fixed point). Deciding at 10% of the run was measured and was no better on the bench: right after the
learning-rate warm-up the influence ranks the domains differently for every training seed (dialogue,
legal or code first) although each measurement is reliable (split-half 0.7-0.95): it describes a
transient state of the model, not the data's lasting value, and the split-half reliability cannot
see that.

**Measured step** (``search_steps > 0`` with ``objective="mirror"``, benchmarked as
``tikmix-d[objective=mirror,budget=fixed,initial=uniform,stages=4,search_steps=8]``). The Hedge step
is the worst-case (adversarial) choice: it bounds the regret for gains that may change arbitrarily
between rounds, and on the bench it moves the mixture slowly (code 0.26-0.47 at the last decision
where RegMix's static optimum holds 0.85). Whether a longer step along the same direction helps is a
question the live model can answer directly, as a trust-region method checks a model's predicted
decrease against the actual one: the candidates w(s), the mirror step with eta multiplied by s in
``search_scales`` (default 0, 1, 3, 9: keep the previous mixture, the Hedge step, two geometrically
longer ones), are each continued for ``search_steps`` optimizer steps from copies of the live model
and optimizer (:mod:`mixlab.influence.continuation`: common random numbers, the same fixed target
batches), and the one whose continuation lowered the weighted target loss most is the stage's
mixture. The direction stays the influence's, the size is measured (every order of the effect,
diminishing returns included), and keeping the previous mixture is always a candidate, so a step
the continuation does not confirm is not taken. The continuations are counted as choosing compute
(4 scales x 8 steps x 3 decisions = 96 optimizer steps, half a 192-step target run).

**Solver status.** The paper objective is solved with SLSQP from two starts. The result's status,
message and iteration count are returned in :class:`TiKMiXDSolution` (the pipeline writes them to the
stage record). When no start converges the solve is a failure: ``on_failure="error"`` raises
:class:`~mixlab.errors.MixlabError`; the default ``"previous"`` logs a warning and keeps the previous
mixture (projected onto the bounds), recording ``fallback="previous"``. Dropping an infeasible Pareto
constraint is logged and recorded as ``pareto_dropped``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linprog, minimize

from mixlab.errors import ConfigError, MixlabError
from mixlab.influence.batches import corpus_batches, token_batches
from mixlab.influence.budget import measure_until_stable
from mixlab.influence.continuation import continuation_labels, mixture_batch_fn
from mixlab.influence.group import measure_group_influence
from mixlab.influence.matrix import GroupInfluence, split_half_stability
from mixlab.influence.preconditioners import make_preconditioner
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture, project_to_bounded_simplex

log = logging.getLogger(__name__)

OBJECTIVES = ("paper", "linear", "firstorder", "mirror")
ON_FAILURE = ("previous", "error")
BUDGETS = ("stable", "fixed")
"""How a decision's influence budget is chosen: ``stable`` pools samples until the split-half
stability reaches ``min_stability``; ``fixed`` measures exactly ``tokens_per_domain`` per domain."""
REGULARIZERS = ("entropy", "kl", "l2")
SEARCH_SCALES = (0.0, 1.0, 3.0, 9.0)
"""Multiples of the mirror step the measured step search tries: keep the previous mixture, the Hedge
step, and two geometrically larger ones (a log-ratio move up to 9x the Hedge step's)."""
_TINY = 1e-12


@dataclass
class TiKMiXDSolution:
    """Solver output: ``weights`` aligned with the influence rows, the objective value (the quantity
    minimised for ``paper``, maximised for ``linear``/``firstorder``), whether the Pareto constraint
    was enforced, and the solver's outcome: ``solver`` (``slsqp`` or ``closed-form``), ``success``,
    ``status`` (SLSQP's exit mode; 0 = converged), ``message``, ``iterations``, ``fallback`` (None, or
    what was used instead of a failed solve), ``pareto_dropped`` and objective-specific ``details``
    (the ``mirror`` step's eta, reliability, ranges and rounds)."""

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
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The solver outcome as a JSON-able record (the weights are the stage's mixture)."""
        return {
            "solver": self.solver, "success": bool(self.success), "status": int(self.status),
            "message": self.message, "iterations": int(self.iterations), "objective": float(self.objective),
            "pareto": bool(self.pareto), "pareto_dropped": bool(self.pareto_dropped), "fallback": self.fallback,
        } | dict(self.details)  # fmt: skip


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
    reliability: float | None = None,
    rounds: int = 1,
    range_bound: float | None = None,
    step_scale: float = 1.0,
) -> TiKMiXDSolution:
    """The TiKMiX-D mixture for an influence matrix ``[n_train, n_target]`` (rows = training domains).

    ``previous`` is the last stage's mixture (for the Pareto constraint, as the default prior of the
    ``kl``/``l2`` regularisers and as the trust-region centre of ``firstorder`` and ``mirror``);
    ``target_weights`` c over targets defaults to equal. ``step`` is the ``firstorder`` trust-region
    step (see the module docstring); ``reliability`` (the split-half reliability of I c; None = 1),
    ``rounds`` (the run's number of decisions) and ``range_bound`` (the largest range of I c measured
    earlier in the run; None = this one's) set the ``mirror`` step, which ``step_scale`` multiplies;
    ``on_failure`` says what a
    failed SLSQP solve does (``previous`` or ``error``); ``maxiter`` caps SLSQP's iterations.
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
    if objective == "mirror":
        return solve_mirror(infl @ c, lower=lo, upper=hi, previous=w_prev, reliability=reliability, rounds=rounds,
                            range_bound=range_bound, scale=step_scale)  # fmt: skip
    if objective == "linear":
        q = np.asarray(prior, float) if prior is not None else w_prev
        w = solve_linear(infl @ c, lower=lo, upper=hi, regularizer=regularizer, strength=strength, prior=q)
        val = float((infl @ c) @ w)
        return TiKMiXDSolution(w, val, False, f"linear objective, {regularizer} strength {strength}")
    if objective != "paper":
        raise ConfigError(f"unknown TiKMiX-D objective {objective!r}; choose one of {list(OBJECTIVES)}")
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


def hedge_step(n_domains: int, rounds: int) -> float:
    """sqrt(8 ln n / K): the exponential-weights step, in units of the gains' range, whose regret over
    K rounds is at most sqrt(K ln n / 2) ranges (Cesa-Bianchi and Lugosi 2006, Thm. 2.2)."""
    if n_domains < 1 or rounds < 1:
        raise ConfigError(f"hedge_step needs n_domains >= 1 and rounds >= 1, got {n_domains}, {rounds}")
    return math.sqrt(8.0 * math.log(n_domains) / rounds)


def solve_mirror(
    a: np.ndarray,
    *,
    lower: np.ndarray,
    upper: np.ndarray,
    previous: np.ndarray | None = None,
    reliability: float | None = None,
    rounds: int = 1,
    range_bound: float | None = None,
    scale: float = 1.0,
) -> TiKMiXDSolution:
    """One exponentiated-gradient step on the bounded simplex (the ``mirror`` objective, derived in
    the module docstring): w_i proportional to w0_i exp(eta rho a_i), eta = sqrt(8 ln n / K) / R,
    R = max(range(a), ``range_bound``) (``range_bound``: the largest range measured earlier in the
    run), rho = clip(``reliability``, 0, 1) (None or NaN: 1, the measurement taken at face value), K =
    ``rounds``. ``a_i`` is the target-weighted influence of domain i; w0 = ``previous`` (uniform when
    None). ``scale`` multiplies eta (the measured step search tries several; 0 keeps w0). Exact
    (KKT); ``details`` records eta, rho, the ranges, K and the scale."""
    a = np.asarray(a, float)
    k = len(a)
    if int(rounds) < 1:
        raise ConfigError(f"mirror rounds must be >= 1, got {rounds}")
    if not scale >= 0:
        raise ConfigError(f"mirror step scale must be >= 0, got {scale}")
    w0 = np.full(k, 1.0 / k) if previous is None else np.asarray(previous, float)
    w0 = w0 / w0.sum()
    rho = 1.0 if reliability is None or not math.isfinite(reliability) else min(max(float(reliability), 0.0), 1.0)
    spread = float(a.max() - a.min())
    bound = max(spread, float(range_bound or 0.0))
    base = hedge_step(k, int(rounds))
    details = {"reliability": None if reliability is None or not math.isfinite(reliability) else float(reliability),
               "rounds": int(rounds), "range": spread, "range_bound": bound, "hedge_step": base,
               "step_scale": float(scale)}
    if not spread > 0 or rho == 0 or scale == 0:
        w = project_to_bounded_simplex(w0, lower, upper)
        why = ("no spread between the domains' influences" if not spread > 0
               else "reliability <= 0" if rho == 0 else "step scale 0")
        return TiKMiXDSolution(w, 0.0, False, f"mirror step: {why}; keeping the previous mixture",
                               details=details | {"eta": 0.0})
    eta = base * rho * float(scale) / bound
    # a domain with no weight in w0 cannot enter under KL(w || w0); a floor keeps every domain reachable
    w0 = np.maximum(w0, 1e-6)
    w0 = w0 / w0.sum()
    w = solve_linear(a, lower=lower, upper=upper, regularizer="kl", strength=1.0 / eta, prior=w0)
    kl = float(np.sum(w * np.log(np.clip(w, 1e-300, None) / w0)))
    value = float(a @ (w - w0) - kl / eta)
    return TiKMiXDSolution(
        w, value, False,
        f"exponentiated-gradient step, eta*range {eta * spread:.3g} (reliability {rho:.2f}, {rounds} rounds)",
        details=details | {"eta": eta},
    )  # fmt: skip


def earlier_ranges(history: Sequence[Any], target_weights: dict[str, float]) -> list[float]:
    """The range max_i a_i - min_i a_i of a = I c for every earlier stage record that holds an influence
    matrix (``record["influence"]["matrix"]`` with its ``target_domains``; the pipeline's and the
    Hugging Face callback's records both do); records without one, or whose targets carry no weight,
    are skipped."""
    out: list[float] = []
    for rec in history:
        infl = rec.get("influence") if isinstance(rec, dict) else None
        if not isinstance(infl, dict) or infl.get("matrix") is None:
            continue
        m = np.asarray(infl["matrix"], float)
        cv = np.array([float(target_weights.get(t, 0.0)) for t in infl.get("target_domains", [])])
        if m.ndim != 2 or m.shape[1] != len(cv) or not cv.sum() > 0 or not np.isfinite(m).all():
            continue
        a = m @ (cv / cv.sum())
        out.append(float(a.max() - a.min()))
    return out


def target_reliability(gi: Any, c: np.ndarray) -> float:
    """Split-half reliability of the target-weighted influence a = I c (``gi.half_matrices`` projected
    on c); the matrix's own ``stability`` when there are no halves; NaN when neither is known."""
    halves = getattr(gi, "half_matrices", None)
    if halves is not None:
        h = np.asarray(halves, float)
        return split_half_stability((h @ np.asarray(c, float))[:, :, None])
    return float(getattr(gi, "stability", float("nan")))


class InfluenceMixer(Mixer):
    """A dynamic mixer that measures Group Influence on the live model (TiKMiX-D and TiKMiX-M).

    Subclasses store ``tokens_per_domain``, ``target_tokens_per_domain``, ``seq_len``, ``batch_size``,
    ``preconditioner``, ``projection_dim`` and ``seed`` in ``__init__``.
    """

    dynamic = True

    def measure(self, ctx: MixingContext) -> tuple[GroupInfluence, list[dict[str, Any]]]:
        """Group Influence of ``ctx.domains`` on ``ctx.targets`` at the live model (cost to ``ctx.compute``)
        and one record per measurement.

        With ``min_stability`` set (and ``budget="stable"``, the default), further samples are pooled
        until the split-half stability reaches it (:func:`mixlab.influence.budget.measure_until_stable`);
        ``budget="fixed"`` measures exactly ``tokens_per_domain`` per domain. Each measurement is
        counted as choosing compute."""
        budget = getattr(self, "budget", "stable")
        if budget not in BUDGETS:
            raise ConfigError(f"{self.name}: unknown budget {budget!r}; choose one of {list(BUDGETS)}")
        fixed = budget == "fixed"
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
            min_stability=None if fixed else getattr(self, "min_stability", None),
            max_tokens_per_domain=None if fixed else getattr(self, "max_tokens_per_domain", None),
            records=records,
        )
        return gi, records


    def continuation_gains(
        self, ctx: MixingContext, X: np.ndarray, *, steps: int, seed: int, eval_tokens: int | None = None
    ) -> tuple[np.ndarray, dict[str, float]]:
        """The measured weighted target-loss decrease of ``steps`` optimizer steps from the live model
        on each row of ``X`` (:func:`mixlab.influence.continuation.continuation_labels`: copies of the
        model and optimizer, common random numbers across rows, fixed target batches of
        ``eval_tokens``, default the influence's target tokens). The cost is added to ``ctx.compute``
        and returned with the gains."""
        live = ctx.live
        model, optimizer = getattr(live, "model", None), getattr(live, "optimizer", None)
        if model is None or optimizer is None or ctx.corpus is None:
            raise MixlabError(
                f"{self.name}: a continuation trains a copy of the live model: it needs ctx.live with model and "
                "optimizer, and ctx.corpus (run it through the dynamic pipeline or the Hugging Face callback)"
            )
        seq = int(self.seq_len or getattr(live, "seq_len", 0) or 0)
        bs = int(self.batch_size or getattr(live, "batch_size", 0) or 0)
        tokens = int(eval_tokens or self.target_tokens_per_domain or self.tokens_per_domain)
        sources = dict(ctx.target_sources or {})
        eval_batches = {
            t: list(
                token_batches(sources[t], t, tokens=tokens, seq_len=seq, batch_size=bs, seed=seed)
                if t in sources and t not in ctx.domains
                else corpus_batches(ctx.corpus, t, split="val", tokens=tokens, seq_len=seq, batch_size=bs, seed=seed)
            )
            for t in ctx.targets
        }
        batch = mixture_batch_fn(
            [ctx.corpus.train_tokens(d) for d in ctx.domains], seq_len=seq, batch_size=bs, seed=seed + 17
        )
        y, cost = continuation_labels(
            model, optimizer, X, train_batch=batch, eval_batches=eval_batches,
            target_weights=ctx.target_weight_vector(), steps=steps,
        )  # fmt: skip
        ctx.compute.add(flops=cost["flops"], tokens=int(cost["tokens"]), seconds=cost["seconds"])
        return y, cost


class TiKMiXDMixer(InfluenceMixer):
    """TiKMiX-D at a stage boundary: measure Group Influence on the live model, solve for w.

    Needs ``ctx.live`` (``model``, ``optimizer``, ``seq_len``, ``batch_size``) and ``ctx.corpus``;
    a precomputed :class:`~mixlab.influence.GroupInfluence` in ``ctx.live.influence`` is used as is.
    The proposal carries the measured matrix, the solver's outcome and the measurements; their cost
    is added to ``ctx.compute``. ``objective="mirror"`` needs the run's number of decisions:
    ``rounds``, or else the stage plan's boundaries in ``ctx.live.boundaries`` (the dynamic pipeline
    and the Hugging Face callback set them).
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
        budget: str = "stable",
        rounds: int | None = None,
        search_steps: int = 0,
        search_scales: Sequence[float] = SEARCH_SCALES,
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
        self.budget = budget
        self.rounds = rounds
        self.search_steps = search_steps
        self.search_scales = search_scales

    def _rounds(self, ctx: MixingContext) -> int:
        """The run's number of decisions (``rounds``, else the live state's stage boundaries)."""
        if self.rounds is not None:
            return int(self.rounds)
        boundaries = getattr(ctx.live, "boundaries", None)
        if not boundaries:
            raise MixlabError(
                f"{self.name}[objective=mirror] needs the run's number of decisions: give rounds=K, or run it through "
                "the dynamic pipeline or the Hugging Face callback, which pass their stage boundaries"
            )
        return len(boundaries)

    def solve(self, ctx: MixingContext, influence: Any, *, step_scale: float = 1.0) -> TiKMiXDSolution:
        cons = ctx.constraints()
        c = ctx.target_weight_vector()
        cvec = np.array([c.get(t, 0.0) for t in influence.target_domains], float)
        mirror = self.objective == "mirror"
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
            reliability=target_reliability(influence, cvec) if mirror and cvec.sum() > 0 else None,
            rounds=self._rounds(ctx) if mirror else 1,
            range_bound=max(earlier_ranges(ctx.history, c), default=None) if mirror else None,
            step_scale=step_scale,
        )

    def propose(self, ctx: MixingContext) -> Proposal:
        if self.search_steps and self.objective != "mirror":
            raise ConfigError(
                f"{self.name}: search_steps measures the step of the mirror objective; set objective=mirror "
                f"(got {self.objective!r}) or search_steps=0"
            )
        gi, measured = self.measure(ctx)
        if self.search_steps:
            sol = self.search_step(ctx, gi)
        else:
            t0 = time.perf_counter()
            sol = self.solve(ctx, gi)
            ctx.compute.add(seconds=time.perf_counter() - t0)
        mixture = Mixture.from_weights(sol.weights, ctx.domains)
        log.info("tikmix-d stage %d: %s (pareto=%s)", ctx.stage, mixture, sol.pareto)
        return Proposal(mixture, influence=gi, solver=sol.to_dict(), measurements=measured,
                        details={"solution": sol})


    def search_step(self, ctx: MixingContext, influence: Any) -> TiKMiXDSolution:
        """The measured step size (``search_steps > 0``; module docstring, "Measured step"): the mirror
        step at every scale in ``search_scales`` (0 = keep the previous mixture), each continued for
        ``search_steps`` steps from the live model; the one whose continuation lowered the weighted
        target loss most is returned, with every scale's gain in ``details["search"]``."""
        scales = [float(x) for x in self.search_scales]
        if not scales or any(not x >= 0 for x in scales) or int(self.search_steps) < 1:
            raise ConfigError(
                f"{self.name}: search_scales must be non-negative numbers and search_steps >= 1, got "
                f"{self.search_scales!r} and {self.search_steps!r}"
            )
        t0 = time.perf_counter()
        sols = [self.solve(ctx, influence, step_scale=x) for x in scales]
        ctx.compute.add(seconds=time.perf_counter() - t0)
        X = np.stack([sol.weights for sol in sols])
        seed = (ctx.seed if self.seed is None else self.seed) + 7919 * (ctx.stage + 1)
        gains, cost = self.continuation_gains(ctx, X, steps=int(self.search_steps), seed=seed)
        best = int(np.argmax(gains))
        log.info(
            "%s stage %d: step search over scales %s, continuation gains %s -> scale %g (%.1fs)",
            self.name, ctx.stage, scales, np.round(gains, 5).tolist(), scales[best], cost["seconds"],
        )  # fmt: skip
        chosen = sols[best]
        chosen.details = dict(chosen.details) | {
            "search": {"scales": scales, "gains": [float(g) for g in gains], "chosen_scale": scales[best],
                       "steps": int(self.search_steps), "flops": float(cost["flops"])}
        }  # fmt: skip
        chosen.message += f"; step scale {scales[best]:g} chosen by {len(scales)} measured continuations"
        return chosen


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
    "SEARCH_SCALES",
    "InfluenceMixer",
    "TiKMiXDMixer",
    "TiKMiXDSolution",
    "earlier_ranges",
    "hedge_step",
    "measure_live_influence",
    "normalised_influence",
    "paper_objective",
    "solve_firstorder",
    "solve_linear",
    "solve_mirror",
    "solve_tikmix_d",
    "target_reliability",
]
