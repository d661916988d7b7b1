"""BiMix: a bivariate data mixing law in the domain proportion and the training steps.

BiMix (arXiv 2405.14908, Eq. 3) models the validation loss of domain i after ``s`` training steps on a
mixture that gives the domain proportion ``r_i`` as

    L_i(r_i, s) = (A_i / r_i^alpha_i) * (B_i / s^beta_i + C_i),     all coefficients > 0.

One domain's law, its gauge (``C_i = 1``) and its fit are :class:`~mixlab.laws.bimix_law.BiMixLaw`
(re-exported here). :class:`BiMixModel` holds one law per modelled domain, fits them from a long
table of proxy runs (pooled or within runs, optionally with one shared step exponent), predicts
losses for mixtures at any step (later steps included), gives uncertainty, and finds the mixture that
minimises the weighted sum of predicted losses at a target step (Lagrangian closed form when no bound
is active, SLSQP otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import brentq

from mixlab.errors import ConfigError, DataError, NotFittedError
from mixlab.laws._inputs import as_matrix, check_fitted, long_table_inputs, objective_weights
from mixlab.laws._run_effects import run_index
from mixlab.laws._shared_beta import refit_with_shared_beta
from mixlab.laws._simplex import minimize_on_simplex, resolve_constraints
from mixlab.laws.bimix_law import LAW_PARAMS, LOG_BOUNDS, STAT_ATTRS, BiMixLaw
from mixlab.mixture import Mixture, MixtureConstraints

__all__ = ["BiMixLaw", "BiMixModel", "NotFittedError"]


class BiMixModel:
    """One :class:`BiMixLaw` per modelled domain, fitted from proxy runs' loss curves.

    ``fit(mixtures, steps, losses)`` takes a long table: row ``n`` is one evaluation of one run, with
    the run's mixture ``mixtures[n]`` (``[n, k]`` over ``domains``), its step ``steps[n]`` and the
    per-domain validation losses ``losses[n]`` (``[n, m]`` over ``loss_domains``, NaN = not measured).
    BiMix models a domain's loss through that same domain's proportion, so every loss domain must be
    a mixture domain. The constructor arguments other than ``share_beta`` are passed to every
    :class:`BiMixLaw`.

    ``share_beta=True`` keeps the law's form but ties the step exponent: one ``beta`` for every loss
    domain, fitted jointly with each domain's own ``A_i, alpha_i, B_i`` (stacked residuals of all
    domains, started from the per-domain fits). All domains' curves then inform the one parameter that
    governs extrapolation in steps, which steadies it when a single domain's curve is short or noisy.

    ``run_effects=True`` fits every law within runs (:class:`BiMixLaw`'s ``run_effects``): the step
    term from the shape of each run's own curve, then ``A_i, alpha_i`` from the runs' offsets. Use it
    when the runs' losses depend on more of the mixture than the law's own proportion (cross-domain
    transfer) and long runs cover only some mixtures: pooled, those effects bend the fitted step term.
    With ``share_beta`` the within-run step fits share one exponent.

    Fitted attributes: ``domains_``, ``loss_domains_``, ``laws_`` (domain -> fitted BiMixLaw) and,
    with ``share_beta``, ``beta_`` (the shared exponent).
    """

    def __init__(
        self,
        loss: str = "huber",
        f_scale: float | None = None,
        n_init: int = 5,
        space: str = "log",
        step_weight: float = 0.0,
        min_points: int = 6,
        min_step: float = 0.0,
        share_beta: bool = False,
        run_effects: bool = False,
    ) -> None:
        self.loss = loss
        self.f_scale = f_scale
        self.n_init = n_init
        self.space = space
        self.step_weight = step_weight
        self.min_points = min_points
        self.min_step = min_step
        self.share_beta = share_beta
        self.run_effects = run_effects

    def _law_params(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in LAW_PARAMS}, "run_effects": self.run_effects}

    def fit(
        self,
        mixtures: Any,
        steps: Any,
        losses: Any,
        *,
        domains: Sequence[str] | None = None,
        loss_domains: Sequence[str] | None = None,
        sample_weight: Any = None,
        runs: Any = None,
    ) -> BiMixModel:
        """Fit one law per loss domain from the long table (see the class docstring). ``runs`` labels
        each row's proxy run for ``run_effects``; by default rows with the same mixture are one run."""
        R, doms, s, Y, ldoms = long_table_inputs(
            mixtures, steps, losses, domains, loss_domains, why="BiMix models a domain's loss through its own proportion"
        )
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        if runs is None:
            runs = run_index(R)
        runs = np.asarray(runs)
        if runs.shape[0] != R.shape[0]:
            raise DataError(f"runs has {runs.shape[0]} labels for {R.shape[0]} rows of the long table")
        joint_within = self.share_beta and self.run_effects
        self.laws_: dict[str, BiMixLaw] = {}
        for j, d in enumerate(ldoms):
            ok = np.isfinite(Y[:, j])
            i = doms.index(d)
            law = BiMixLaw(**self._law_params())
            # a joint within-run fit starts from a grid, not from each law's own fit: load, don't solve
            step = law._load if joint_within else law.fit
            step(R[ok, i], s[ok], Y[ok, j], None if w is None else w[ok], runs=runs[ok], name=f"loss domain {d!r}")
            self.laws_[d] = law
        if joint_within:
            laws = [self.laws_[d] for d in ldoms]
            BiMixLaw.fit_within(laws, share_beta=True, loss=self.loss, f_scale=self.f_scale, n_init=self.n_init)
            self.beta_ = laws[0].beta_
        elif self.share_beta:
            self.beta_ = self._fit_shared_beta([self.laws_[d] for d in ldoms])
        self.domains_ = doms
        self.loss_domains_ = ldoms
        return self

    def _fit_shared_beta(self, laws: list[BiMixLaw]) -> float:
        """Refit ``laws`` jointly with one step exponent (:func:`refit_with_shared_beta`), started from
        their own fits; each law gets its parameters and the matching covariance block."""
        thetas, covs, f_scale = refit_with_shared_beta(
            [law._residual_fns() for law in laws],
            [law.theta_ for law in laws],
            [law.n_points_ for law in laws],
            [LOG_BOUNDS] * len(laws),
            loss=self.loss, f_scale=self.f_scale, n_init=self.n_init,
        )
        for law, theta, cov in zip(laws, thetas, covs, strict=True):
            law._set_fit_stats(theta, cov, f_scale)
        return float(np.exp(thetas[0][3]))

    def _mix(self, mixtures: Any) -> np.ndarray:
        check_fitted(self, "laws_")
        if isinstance(mixtures, (Mixture, Mapping)):
            mixtures = [mixtures]
        R, _ = as_matrix(mixtures, self.domains_, "mixtures")
        return R

    def predict(self, mixtures: Any, steps: Any) -> np.ndarray:
        """Predicted losses ``[n, m]`` (columns = ``loss_domains_``) for ``n`` mixtures at ``steps``
        (one step per mixture, or a scalar); steps past the fitted range extrapolate the law."""
        R = self._mix(mixtures)
        s = np.broadcast_to(np.asarray(steps, dtype=float), (R.shape[0],))
        return np.stack(
            [self.laws_[d].predict(R[:, self.domains_.index(d)], s) for d in self.loss_domains_], axis=1
        )

    def predict_interval(self, mixtures: Any, steps: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, lower, upper)``, each ``[n, m]``; see :meth:`BiMixLaw.predict_interval`."""
        R = self._mix(mixtures)
        s = np.broadcast_to(np.asarray(steps, dtype=float), (R.shape[0],))
        parts = [self.laws_[d].predict_interval(R[:, self.domains_.index(d)], s, **kwargs) for d in self.loss_domains_]
        return tuple(np.stack([p[k] for p in parts], axis=1) for k in range(3))  # type: ignore[return-value]

    def _objective_terms(self, step: float, weights: Mapping[str, float] | None):
        ldoms = self.loss_domains_
        c = objective_weights(ldoms, weights)
        k = len(self.domains_)
        cvec = np.zeros(k)
        alpha = np.zeros(k)
        K = np.zeros(k)
        for d in ldoms:
            i = self.domains_.index(d)
            law = self.laws_[d]
            cvec[i] = c[d]
            alpha[i] = law.alpha_
            K[i] = law.A_ * (law.B_ * float(step) ** -law.beta_ + law.C_)
        return cvec, alpha, K

    def closed_form(self, step: float, weights: Mapping[str, float] | None = None) -> np.ndarray:
        """The unconstrained optimum over the simplex by the Lagrangian (paper Sec. 3.3).

        At fixed ``s`` each ``L_i = K_i r_i^-alpha_i`` with ``K_i = A_i (B_i s^-beta_i + C_i)``, so
        stationarity of ``sum_i c_i L_i + lambda (sum_i r_i - 1)`` gives
        ``r_i = (c_i alpha_i K_i / lambda)^(1 / (1 + alpha_i))``; ``sum_i r_i`` decreases in ``lambda``,
        which is found by bracketing and Brent's method on ``log lambda``. The objective is convex, so
        this stationary point is the global minimum. Domains without a loss term get 0.
        """

        cvec, alpha, K = self._objective_terms(step, weights)
        act = cvec > 0
        g = np.log(cvec[act] * alpha[act] * K[act])
        e = 1.0 / (1.0 + alpha[act])

        def excess(log_lam: float) -> float:
            return float(np.sum(np.exp(e * (g - log_lam)))) - 1.0

        lo, hi = -50.0, 50.0
        while excess(lo) < 0:
            lo -= 50.0
        while excess(hi) > 0:
            hi += 50.0
        log_lam = brentq(excess, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500)
        r = np.zeros(len(self.domains_))
        r[act] = np.exp(e * (g - log_lam))
        return r / r.sum()

    def objective(self, r: np.ndarray, step: float, weights: Mapping[str, float] | None = None) -> float:
        """``sum_i c_i L_i(r_i, step)`` for a weight vector aligned with ``domains_``."""
        cvec, alpha, K = self._objective_terms(step, weights)
        act = cvec > 0
        r = np.asarray(r, dtype=float)
        if np.any(r[act] <= 0):
            return float("inf")
        return float(np.sum(cvec[act] * K[act] * r[act] ** -alpha[act]))

    def optimize(
        self,
        step: float,
        weights: Mapping[str, float] | None = None,
        constraints: MixtureConstraints | None = None,
        *,
        method: str = "auto",
    ) -> Mixture:
        """The mixture minimising the weighted sum of predicted domain losses at ``step``.

        ``weights`` c_i over the loss domains (default equal); ``constraints`` (bounds and availability
        caps, :class:`~mixlab.mixture.MixtureConstraints`) are matched to ``domains_`` by name.
        ``method="auto"`` uses :meth:`closed_form` when it satisfies every bound and SLSQP otherwise;
        ``"closed_form"`` / ``"numerical"`` force one. Sets ``optimize_method_`` to what was used.
        """
        check_fitted(self, "laws_")
        if step <= 0:
            raise ConfigError(f"target step must be positive, got {step}")
        cons = resolve_constraints(self.domains_, constraints)
        cvec, alpha, K = self._objective_terms(step, weights)
        if method not in ("auto", "closed_form", "numerical"):
            raise ConfigError(f"optimize method must be auto, closed_form or numerical, got {method!r}")
        r0 = self.closed_form(step, weights)
        if method == "closed_form" or (method == "auto" and cons.satisfied(r0, tol=1e-9)):
            if method == "closed_form" and not cons.satisfied(r0, tol=1e-9):
                raise ConfigError("the closed-form optimum violates the bounds; use method='auto' or 'numerical'")
            self.optimize_method_ = "closed_form"
            return Mixture.from_weights(r0, self.domains_)
        act = cvec > 0
        lower = cons.lower.copy()
        lower[act] = np.maximum(lower[act], 1e-12)

        def fun(r):
            return float(np.sum(cvec[act] * K[act] * np.maximum(r[act], 1e-300) ** -alpha[act]))

        def jac(r):
            gr = np.zeros_like(r)
            gr[act] = -cvec[act] * alpha[act] * K[act] * np.maximum(r[act], 1e-300) ** (-alpha[act] - 1)
            return gr

        uniform = np.full(len(self.domains_), 1.0 / len(self.domains_))
        r = minimize_on_simplex(fun, jac, r0, lower, cons.upper, extra_starts=[uniform])
        self.optimize_method_ = "numerical"
        return Mixture.from_weights(np.clip(r, 0, None), self.domains_)

    def get_params(self) -> dict[str, Any]:
        return {**self._law_params(), "share_beta": self.share_beta}

    def to_state(self) -> dict[str, Any]:
        """The fitted model as plain JSON-able data (:meth:`from_state` rebuilds it; no pickle)."""
        check_fitted(self, "laws_")
        laws = {}
        for d in self.loss_domains_:
            law = self.laws_[d]
            laws[d] = {"theta": law.theta_.tolist(), "cov": law.cov_.tolist(),
                       "stats": {k: getattr(law, k) for k in STAT_ATTRS if hasattr(law, k)}}
        return {"params": self.get_params(), "domains": list(self.domains_),
                "loss_domains": list(self.loss_domains_), "laws": laws}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BiMixModel:
        """A fitted model from :meth:`to_state` output; it predicts and optimises exactly as the saved one."""
        model = cls(**state["params"])
        model.domains_ = list(state["domains"])
        model.loss_domains_ = list(state["loss_domains"])
        model.laws_ = {}
        for d in model.loss_domains_:
            entry = state["laws"][d]
            law = BiMixLaw(**model._law_params())
            law._set_fitted(np.asarray(entry["theta"], dtype=float), np.asarray(entry["cov"], dtype=float))
            for k, v in entry.get("stats", {}).items():
                setattr(law, k, v)
            model.laws_[d] = law
        if model.share_beta:
            model.beta_ = model.laws_[model.loss_domains_[0]].beta_
        return model

    def summary(self) -> list[dict[str, Any]]:
        """One row per loss domain: coefficients, standard errors and fit statistics."""
        check_fitted(self, "laws_")
        rows = []
        for d in self.loss_domains_:
            law = self.laws_[d]
            row: dict[str, Any] = {"domain": d}
            row.update(law.params_)
            row.update({f"se_{k}": v for k, v in law.stderr_.items() if k != "C"})
            row.update({"r2": law.r2_, "r2_log": law.r2_log_, "mre": law.mre_, "n": law.n_points_})
            rows.append(row)
        return rows

