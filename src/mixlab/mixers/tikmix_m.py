"""TiKMiX-M: a regression surrogate from mixture to aggregate influence, searched from TiKMiX-D's answer.

TiKMiX (arXiv 2508.17677, Sec. 3.3 and Algorithm 1), as read in ``docs/methods.md``:

1. **Candidates.** Latin Hypercube samples inside per-domain intervals around the prior weights p
   (the previous stage's mixture, else the natural one): [p_i (1 - s), p_i (1 + s) + s / k] with
   ``interval_scale`` s (not stated in the paper); each is normalised and kept only if it satisfies
   the bounds and availability cap, until ``n_candidates`` are accepted. mixlab adds
   ``n_local_candidates`` Dirichlet draws around the TiKMiX-D solution so the surrogate also knows the
   region the search explores (0 turns this off).
2. **Labels.** Default ``label="continuation"`` (mixlab's reading of "measured", replacing the
   linear label below as the default): the first ``n_measured`` candidates (half from the Latin
   Hypercube, half from around the TiKMiX-D solution) are each continued for ``continuation_steps``
   optimizer steps from the live checkpoint (a copy of the model and optimizer state) and labelled
   with the measured decrease of the weighted target loss
   (:mod:`mixlab.influence.continuation`). That label is not linear in w (diminishing returns,
   interactions), so the surrogate has something to learn that the matrix does not already say; the
   continuations are counted as choosing compute. The old labels stay available: the aggregate
   Group Influence of each candidate, by linearity from the measured matrix
   (no further backward pass): P_hat = S_hat w as in TiKMiX-D (Eq. 9), label ``sum`` =
   sum_j m c_j P_hat_j, ``balanced`` = that - alpha * std(P_hat), or ``objective`` = that + gamma * H(w)
   (TiKMiX-D's Eq. 10 objective, negated: its entropy term keeps the search off the simplex's corners,
   where a linear label drives it). A surrogate fitted to a label linear in w learns a known linear
   function, and its search runs to a corner of the simplex. Optionally (``proxy_runs`` > 0
   and a proxy runner in the context) the first candidates are also trained as proxies; a second
   surrogate predicts their mean target loss and the score becomes z(influence) - loss_weight * z(loss).
3. **Surrogate.** LightGBM (the predictors package's ``tikmix-m`` configuration when available).
4. **Search** (Algorithm 1). Start at w_best = TiKMiX-D's solution; for alpha_t log-spaced from
   ``alpha_max`` down to ``alpha_min`` over ``search_rounds`` rounds, draw ``search_samples`` mixtures
   ~ Dirichlet(alpha_t * w_best), keep the feasible ones, predict, and set w_best to the mean of the
   ``top_k`` best predictions (a mean of feasible mixtures is feasible: the constraint set is convex).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from scipy.stats import qmc

from mixlab.errors import ConfigError, MixlabError
from mixlab.mixers.base import MixingContext, Proposal
from mixlab.mixers.tikmix_d import InfluenceMixer, TiKMiXDMixer, normalised_influence, solve_tikmix_d
from mixlab.mixture import Mixture, MixtureConstraints
from mixlab.predictors.lgbm import TiKMiXMPredictor

log = logging.getLogger(__name__)

LABELS = ("continuation", "sum", "balanced", "objective")
MATRIX_LABELS = ("sum", "balanced", "objective")


def influence_scores(
    W: np.ndarray,
    influence: np.ndarray,
    target_weights: np.ndarray,
    *,
    label: str = "sum",
    alpha: float = 1.0,
    gamma: float = 1.0,
) -> np.ndarray:
    """Aggregate influence of each row of ``W`` (mixtures over training domains), by linearity.

    ``sum``: sum_j m c_j P_hat_j; ``balanced``: that minus ``alpha`` std(P_hat); ``objective``: that
    plus ``gamma`` H(w), i.e. minus TiKMiX-D's Eq. 10 objective (without the Pareto constraint)."""
    if label not in MATRIX_LABELS:
        raise ConfigError(f"TiKMiX-M label {label!r} is not computed from the matrix; choose one of {list(MATRIX_LABELS)}")
    P = np.atleast_2d(W) @ normalised_influence(influence)  # [n, targets]
    c = np.asarray(target_weights, float)
    score = P @ (len(c) * c / c.sum())
    if label in ("balanced", "objective"):
        score = score - alpha * P.std(axis=1)
    if label == "objective":
        Wc = np.clip(np.atleast_2d(W), 1e-12, None)
        score = score - gamma * (Wc * np.log(Wc)).sum(axis=1)
    return score


def latin_hypercube_candidates(
    prior: np.ndarray,
    cons: MixtureConstraints,
    n: int,
    *,
    scale: float = 0.5,
    seed: int = 0,
    max_rounds: int = 50,
) -> np.ndarray:
    """``n`` feasible mixtures from Latin Hypercube samples in [p (1 - s), p (1 + s) + s / k]."""
    k = len(prior)
    lo = prior * max(0.0, 1.0 - scale)
    hi = prior * (1.0 + scale) + scale / k
    sampler = qmc.LatinHypercube(d=k, seed=seed)
    out: list[np.ndarray] = []
    for _ in range(max_rounds):
        X = lo + sampler.random(n) * (hi - lo)
        X = X / X.sum(axis=1, keepdims=True)
        ok = np.all(X >= cons.lower - 1e-9, axis=1) & np.all(X <= cons.upper + 1e-9, axis=1)
        out.extend(X[ok])
        if len(out) >= n:
            return np.array(out[:n])
    if len(out) < max(8, n // 4):
        log.warning("TiKMiX-M: few LHS candidates satisfy the bounds; projecting the rest onto them")
        X = lo + sampler.random(n - len(out)) * (hi - lo)
        out.extend(cons.clip_and_renormalise(x / x.sum()) for x in X)
    return np.array(out[:n])


def dirichlet_feasible(
    rng: np.random.Generator, center: np.ndarray, strength: float, n: int, cons: MixtureConstraints
) -> np.ndarray:
    """Draws ~ Dirichlet(strength * center) that satisfy ``cons`` (projected when none does)."""
    conc = np.maximum(strength * center, 1e-3)
    X = rng.dirichlet(conc, size=n)
    ok = np.all(X >= cons.lower - 1e-9, axis=1) & np.all(X <= cons.upper + 1e-9, axis=1)
    if ok.sum() >= max(1, n // 20):
        return X[ok]
    return np.array([cons.clip_and_renormalise(x) for x in X])


class _Surrogate:
    """LightGBM regressor mixture -> score (the predictors package's TiKMiX-M model)."""

    def __init__(self, seed: int, n_estimators: int) -> None:
        self.seed = seed
        self.n_estimators = n_estimators

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Surrogate:
        self.model_ = TiKMiXMPredictor(n_estimators=self.n_estimators, seed=self.seed).fit(X, y)
        self.kind_ = "predictors.tikmix-m"
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict(X), dtype=float).reshape(-1)


def tikmix_m_search(
    surrogate_predict: Any,
    start: np.ndarray,
    cons: MixtureConstraints,
    *,
    rounds: int = 10,
    samples: int = 1000,
    top_k: int = 32,
    alpha_max: float = 1000.0,
    alpha_min: float = 10.0,
    seed: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """Algorithm 1: Dirichlet(alpha_t * w_best) draws, alpha_t log-spaced high to low, top-k mean.
    Returns the final mixture and the mean predicted score of the top k per round."""
    if not 0 < alpha_min <= alpha_max:
        raise ConfigError(f"need 0 < alpha_min <= alpha_max, got {alpha_min}, {alpha_max}")
    rng = np.random.default_rng(seed)
    w_best = np.asarray(start, float)
    trace = []
    for alpha in np.geomspace(alpha_max, alpha_min, max(1, rounds)):
        X = np.vstack([w_best[None], dirichlet_feasible(rng, w_best, alpha, samples, cons)])
        pred = surrogate_predict(X)
        top = np.argsort(-pred, kind="stable")[: max(1, top_k)]
        w_best = X[top].mean(axis=0)
        w_best = w_best / w_best.sum()
        trace.append(float(pred[top].mean()))
    if not cons.satisfied(w_best):
        w_best = cons.clip_and_renormalise(w_best)
    return w_best, trace


class TiKMiXMMixer(InfluenceMixer):
    """TiKMiX-M at a stage boundary (see the module docstring). Reads ``ctx.live`` like TiKMiX-D and
    proposes with the measured influence, the measurements and the outcome of the TiKMiX-D solve the
    search starts from (its solver status goes to the stage record); the proposal's ``details`` hold
    ``solution`` (that solve), ``candidates`` (the labelled X, y), ``start`` and ``trace``."""

    name = "tikmix-m"

    def __init__(
        self,
        n_candidates: int = 256,
        n_local_candidates: int = 128,
        interval_scale: float = 0.5,
        label: str = "continuation",
        n_measured: int = 16,
        continuation_steps: int = 4,
        eval_tokens: int | None = None,
        alpha: float = 1.0,
        gamma: float = 1.0,
        search_rounds: int = 10,
        search_samples: int = 1000,
        top_k: int = 32,
        alpha_max: float = 1000.0,
        alpha_min: float = 10.0,
        n_estimators: int = 300,
        proxy_runs: int = 0,
        proxy_tokens: int | None = None,
        loss_weight: float = 1.0,
        tikmix_d: dict[str, Any] | None = None,
        tokens_per_domain: int = 65536,
        target_tokens_per_domain: int | None = None,
        seq_len: int | None = None,
        batch_size: int | None = None,
        preconditioner: str = "adam",
        projection_dim: int | None = None,
        seed: int | None = None,
        min_stability: float | None = None,
        max_tokens_per_domain: int | None = None,
    ) -> None:
        self.n_candidates = n_candidates
        self.n_local_candidates = n_local_candidates
        self.interval_scale = interval_scale
        self.label = label
        self.n_measured = n_measured
        self.continuation_steps = continuation_steps
        self.eval_tokens = eval_tokens
        self.alpha = alpha
        self.gamma = gamma
        self.search_rounds = search_rounds
        self.search_samples = search_samples
        self.top_k = top_k
        self.alpha_max = alpha_max
        self.alpha_min = alpha_min
        self.n_estimators = n_estimators
        self.proxy_runs = proxy_runs
        self.proxy_tokens = proxy_tokens
        self.loss_weight = loss_weight
        self.tikmix_d = tikmix_d
        self.tokens_per_domain = tokens_per_domain
        self.target_tokens_per_domain = target_tokens_per_domain
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.preconditioner = preconditioner
        self.projection_dim = projection_dim
        self.seed = seed
        self.min_stability = min_stability
        self.max_tokens_per_domain = max_tokens_per_domain

    def propose(self, ctx: MixingContext) -> Proposal:
        if self.n_candidates < 8:
            raise ConfigError(f"tikmix-m: n_candidates must be at least 8, got {self.n_candidates}")
        if self.label not in LABELS:
            raise ConfigError(f"unknown TiKMiX-M label {self.label!r}; choose one of {list(LABELS)}")
        if self.label == "continuation" and self.n_measured < 4:
            raise ConfigError(f"tikmix-m: n_measured must be at least 4, got {self.n_measured}")
        gi, measured = self.measure(ctx)
        t0 = time.perf_counter()
        seed = ctx.seed if self.seed is None else self.seed
        cons = ctx.constraints()
        cw = ctx.target_weight_vector()
        c = np.array([cw.get(t, 0.0) for t in gi.target_domains])
        d_params = dict(self.tikmix_d or {})
        unknown = set(d_params) - set(TiKMiXDMixer().get_params())
        if unknown:
            raise ConfigError(f"tikmix-m: unknown TiKMiX-D parameter(s) {sorted(unknown)} in tikmix_d")
        solver_keys = ("objective", "alpha", "beta", "gamma", "pareto", "regularizer", "strength")
        previous = ctx.previous.to_array(ctx.domains) if ctx.previous is not None else None
        solution = solve_tikmix_d(
            gi.matrix, lower=cons.lower, upper=cons.upper, previous=previous, target_weights=c,
            **{k: v for k, v in d_params.items() if k in solver_keys},
        )  # fmt: skip
        start = solution.weights
        prior = previous if previous is not None else ctx.natural().to_array(ctx.domains)
        prior = prior if cons.satisfied(prior) else cons.clip_and_renormalise(prior)
        X = latin_hypercube_candidates(prior, cons, self.n_candidates, scale=self.interval_scale, seed=seed)
        if self.n_local_candidates > 0:
            rng = np.random.default_rng(seed + 1)
            strength = np.sqrt(self.alpha_max * self.alpha_min)
            local = dirichlet_feasible(rng, start, strength, self.n_local_candidates, cons)
            for _ in range(20):
                if len(local) >= self.n_local_candidates:
                    break
                local = np.vstack(
                    [local, dirichlet_feasible(rng, start, strength, self.n_local_candidates, cons)]
                )
            X = np.vstack([X, local[: self.n_local_candidates]])
        if self.label == "continuation":
            n_local = min(self.n_measured // 2, len(X) - self.n_candidates)
            n_lhs = min(self.n_candidates, self.n_measured - n_local)
            X = np.vstack([X[:n_lhs], X[self.n_candidates : self.n_candidates + n_local]])
            ctx.compute.add(seconds=time.perf_counter() - t0)
            y = self._continuations(ctx, X, seed)
            t0 = time.perf_counter()
        else:
            y = influence_scores(X, gi.matrix, c, label=self.label, alpha=self.alpha, gamma=self.gamma)
        infl_model = _Surrogate(seed, self.n_estimators).fit(X, y)
        predict = infl_model.predict
        if self.proxy_runs > 0:
            predict = self._with_proxy_losses(ctx, X, y, infl_model, seed)
        w, trace = tikmix_m_search(
            predict, start, cons, rounds=self.search_rounds, samples=self.search_samples, top_k=self.top_k,
            alpha_max=self.alpha_max, alpha_min=self.alpha_min, seed=seed,
        )  # fmt: skip
        ctx.compute.add(seconds=time.perf_counter() - t0)
        self.surrogate_ = infl_model
        mixture = Mixture.from_weights(w, ctx.domains)
        log.info("tikmix-m stage %d: %s (surrogate %s)", ctx.stage, mixture, infl_model.kind_)
        return Proposal(
            mixture, influence=gi, solver=solution.to_dict(), measurements=measured,
            details={"solution": solution, "candidates": (X, y), "start": start, "trace": trace},
        )  # fmt: skip

    def _continuations(self, ctx: MixingContext, X: np.ndarray, seed: int) -> np.ndarray:
        """Measured labels: the weighted target-loss decrease of a short continuation per candidate."""
        y, cost = self.continuation_gains(ctx, X, steps=self.continuation_steps, seed=seed,
                                          eval_tokens=self.eval_tokens)  # fmt: skip
        log.info("tikmix-m: %d continuation labels of %d steps in %.1fs", len(X), self.continuation_steps,
                 cost["seconds"])
        return y

    def _with_proxy_losses(
        self, ctx: MixingContext, X: np.ndarray, y: np.ndarray, infl_model: _Surrogate, seed: int
    ) -> Any:
        if ctx.proxy is None:
            raise MixlabError("tikmix-m: proxy_runs > 0 needs a proxy runner in the context (ctx.proxy)")
        tokens = int(self.proxy_tokens or max(1, ctx.remaining // 100))
        cw = ctx.target_weight_vector()
        n = min(self.proxy_runs, len(X))
        losses = []
        for r in range(n):
            res = ctx.proxy.train(
                Mixture.from_weights(X[r], ctx.domains), tokens=tokens, seed=seed + r, name=f"tikmix-m-{r}"
            )
            ctx.compute.add(flops=res.flops, tokens=res.tokens, seconds=res.seconds)
            final = res.final
            missing = [t for t in cw if t not in final]
            if missing:
                raise MixlabError(f"tikmix-m: proxy run {r} reported no loss for target domain(s) {missing}")
            losses.append(sum(wt * final[t] for t, wt in cw.items()))
        loss_model = _Surrogate(seed + 1, self.n_estimators).fit(X[:n], np.array(losses))
        mu_i, sd_i = float(y.mean()), float(y.std()) + 1e-12
        lp = loss_model.predict(X)
        mu_l, sd_l = float(lp.mean()), float(lp.std()) + 1e-12
        self.proxy_losses_ = np.array(losses)

        def predict(Z: np.ndarray) -> np.ndarray:
            return (infl_model.predict(Z) - mu_i) / sd_i - self.loss_weight * (
                loss_model.predict(Z) - mu_l
            ) / sd_l

        return predict


__all__ = [
    "TiKMiXMMixer",
    "dirichlet_feasible",
    "influence_scores",
    "latin_hypercube_candidates",
    "tikmix_m_search",
]
