"""BiMix with cross-domain transfer: an effective proportion in BiMix's own-proportion term.

BiMix (arXiv 2405.14908, Eq. 3; :mod:`mixlab.laws.bimix`) models domain i's loss through its own
proportion only, ``L_i(r_i, s) = (A_i / r_i^alpha_i) * (B_i / s^beta_i + C_i)``. On real mixtures a
domain's loss also falls when *other* domains are trained on (on the Pile five-group curves, prose
loss falls with the internet share), and the own-proportion term cannot express that. This module
adds a law that keeps BiMix's form and replaces ``r_i`` by an effective proportion

    r_eff,i = r_i + sum_{j != i} tau_ij r_j,      tau_ij >= 0,
    L_i(r, s) = (A_i / r_eff,i^alpha_i) * (B_i / s^beta_i + C_i),

so ``tau_ij`` is how much one unit of domain j's data counts as domain i's data. With every
``tau = 0`` it is exactly BiMix, and it is an *additional* law: :class:`~mixlab.laws.bimix.BiMixModel`
is unchanged. The gauge and parameterisation follow BiMix (``C_i = 1``; ``log A, log alpha, log B,
log beta``) and the transfer coefficients are fitted directly with the bound ``tau >= 0`` (so a
transfer of exactly 0 is reachable). Each domain's fit starts from the plain BiMix fit with
``tau = 0`` and from a few uniform ``tau`` starts; the same robust loss (Huber by default), residual
space, late-point weight and warm-up cut as :class:`~mixlab.laws.bimix_law.BiMixLaw` apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, DataError
from mixlab.laws._inputs import as_matrix, check_fitted, long_table_inputs, objective_weights
from mixlab.laws._nls import robust_least_squares
from mixlab.laws._shared_beta import refit_with_shared_beta
from mixlab.laws._simplex import minimize_on_simplex, resolve_constraints
from mixlab.laws.bimix_law import LAW_PARAMS, LOG_BOUNDS, BiMixLaw
from mixlab.mixture import Mixture, MixtureConstraints

TAU_MAX = 10.0
_STATE_ARRAYS = ("A_", "alpha_", "B_", "beta_", "C_", "tau_")
_TAU_STARTS = (0.03, 0.1, 0.3)


def _log_predict(theta: np.ndarray, r_own: np.ndarray, R_other: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """``log L`` for ``theta = [log A, log alpha, log B, log beta, tau_1 .. tau_{k-1}]``."""
    log_a, log_alpha, log_b, log_beta = theta[:4]
    r_eff = r_own + R_other @ theta[4:]
    return log_a - np.exp(log_alpha) * np.log(r_eff) + np.logaddexp(0.0, log_b - np.exp(log_beta) * ls)


def _log_jacobian(theta: np.ndarray, r_own: np.ndarray, R_other: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """d log L / d theta, ``[n, 4 + k - 1]``."""
    _, log_alpha, log_b, log_beta = theta[:4]
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    r_eff = r_own + R_other @ theta[4:]
    sig = 1.0 / (1.0 + np.exp(-(log_b - beta * ls)))
    head = np.stack([np.ones_like(ls), -alpha * np.log(r_eff), sig, -sig * beta * ls], axis=1)
    return np.concatenate([head, -alpha * R_other / r_eff[:, None]], axis=1)


class BiMixTransferModel:
    """BiMix with cross-domain transfer (module docstring), one law per modelled loss domain.

    ``fit(mixtures, steps, losses)`` takes the same long table as
    :meth:`BiMixModel.fit <mixlab.laws.bimix.BiMixModel.fit>`: row ``n`` is one evaluation of one run
    (mixture ``[n, k]`` over ``domains``, step, per-domain losses ``[n, m]`` over ``loss_domains``,
    NaN = not measured); every loss domain must be a mixture domain. Points where a domain's own
    proportion is 0 are left out of that domain's fit, as in BiMix. The arguments ``loss``,
    ``f_scale``, ``n_init``, ``space``, ``step_weight``, ``min_points``, ``min_step`` mean what they
    mean for :class:`~mixlab.laws.bimix_law.BiMixLaw`; ``share_beta`` ties the step exponent across loss
    domains as in :class:`~mixlab.laws.bimix.BiMixModel`; ``tau_max`` bounds each transfer
    coefficient above.

    Fitted attributes: ``domains_``, ``loss_domains_``, ``tau_`` (``[m, k]``, row = loss domain,
    column = mixture domain, 0 on a domain's own column), ``A_, alpha_, B_, beta_, C_`` (``[m]``,
    ``C_ = 1``), ``params_`` (loss domain -> dict of its coefficients and its ``tau`` by domain),
    ``theta_`` (loss domain -> fitted vector), ``cov_`` (loss domain -> its covariance), ``mre_``
    (loss domain -> mean relative error on its fitted points), ``n_points_``, ``base_laws_`` (the
    plain BiMix fits, ``tau = 0``, that started each domain) and, with ``share_beta``, ``shared_beta_``.
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
        tau_max: float = TAU_MAX,
    ) -> None:
        self.loss = loss
        self.f_scale = f_scale
        self.n_init = n_init
        self.space = space
        self.step_weight = step_weight
        self.min_points = min_points
        self.min_step = min_step
        self.share_beta = share_beta
        self.tau_max = tau_max

    def _law_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in LAW_PARAMS}

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
    ) -> BiMixTransferModel:
        """Fit one law per loss domain (class docstring); ``runs`` is accepted for the common law
        interface (:mod:`mixlab.laws.registry`) and not used: the law pools the runs' points."""
        if not float(self.tau_max) > 0:
            raise ConfigError(f"tau_max must be positive, got {self.tau_max}")
        R, doms, s, Y, ldoms = long_table_inputs(
            mixtures, steps, losses, domains, loss_domains, why="the transfer law extends BiMix's own-proportion term"
        )
        if len(doms) < 2:
            raise DataError("the transfer law needs at least two mixture domains")
        if np.any(~np.isfinite(R)) or np.any(R < 0):
            raise DataError("mixture proportions must be finite and >= 0")
        w_all = np.ones(s.size) if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        if w_all.shape != s.shape:
            raise DataError("sample_weight must have one value per row")
        self.base_laws_: dict[str, BiMixLaw] = {}
        fits = []
        for j, d in enumerate(ldoms):
            i = doms.index(d)
            ok = np.isfinite(Y[:, j])
            # the plain BiMix fit validates the domain's data and gives the tau = 0 start
            base = BiMixLaw(**self._law_params()).fit(
                R[ok, i], s[ok], Y[ok, j], None if sample_weight is None else w_all[ok], name=f"loss domain {d!r}"
            )
            self.base_laws_[d] = base
            rows = np.nonzero(ok)[0][base._rows]  # the points the BiMix fit kept (r > 0, past min_step)
            others = [q for q in range(len(doms)) if q != i]
            n_mix = np.unique(R[rows], axis=0).shape[0]
            if n_mix < len(doms) + 2:
                raise DataError(
                    f"loss domain {d!r}: the transfer law fits {len(doms) + 1} mixture coefficients (A, alpha and "
                    f"{len(others)} transfers) from {n_mix} distinct mixtures; it needs at least {len(doms) + 2}: "
                    "add proxy runs with other mixtures (the bimix mixer: n_runs)"
                )
            r_own, s_kept, y, w = base._data
            data = (r_own, R[np.ix_(rows, others)], np.log(s_kept), y, w)
            resid, jac = self._residual_fns(data)
            starts = [np.r_[base.theta_, np.full(len(others), t)] for t in (0.0, *_TAU_STARTS)]
            res = robust_least_squares(resid, starts, bounds=self._bounds(len(others)), loss=self.loss,
                                       f_scale=self.f_scale, jac_fn=jac)
            fits.append({"data": data, "others": others, "theta": res.theta, "cov": res.cov})
        if self.share_beta:
            self.shared_beta_ = self._fit_shared_beta(fits)
        self.domains_ = doms
        self.loss_domains_ = ldoms
        self._set_fitted(fits)
        return self

    def _bounds(self, n_tau: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.r_[LOG_BOUNDS[0], np.zeros(n_tau)], np.r_[LOG_BOUNDS[1], np.full(n_tau, float(self.tau_max))])

    def _residual_fns(self, data):
        r_own, R_other, ls, y, w = data
        ly, sw = np.log(y), np.sqrt(w)
        if self.space == "log":
            def resid(theta):
                return sw * (_log_predict(theta, r_own, R_other, ls) - ly)

            def jac(theta):
                return sw[:, None] * _log_jacobian(theta, r_own, R_other, ls)
        elif self.space == "linear":
            def resid(theta):
                return sw * (np.exp(_log_predict(theta, r_own, R_other, ls)) - y)

            def jac(theta):
                pred = np.exp(_log_predict(theta, r_own, R_other, ls))
                return (sw * pred)[:, None] * _log_jacobian(theta, r_own, R_other, ls)
        else:
            raise ConfigError(f"space must be 'log' or 'linear', got {self.space!r}")
        return resid, jac

    def _fit_shared_beta(self, fits: list[dict[str, Any]]) -> float:
        """Refit every domain jointly with one step exponent, as :meth:`BiMixModel._fit_shared_beta`
        (:func:`~mixlab.laws._shared_beta.refit_with_shared_beta`; each domain's transfers stay its own)."""
        thetas, covs, _ = refit_with_shared_beta(
            [self._residual_fns(f["data"]) for f in fits],
            [f["theta"] for f in fits],
            [f["data"][0].size for f in fits],
            [self._bounds(len(f["others"])) for f in fits],
            loss=self.loss, f_scale=self.f_scale, n_init=self.n_init,
        )
        for f, theta, cov in zip(fits, thetas, covs, strict=True):
            f["theta"], f["cov"] = theta, cov
        return float(np.exp(thetas[0][3]))

    def _set_fitted(self, fits: list[dict[str, Any]]) -> None:
        m, k = len(self.loss_domains_), len(self.domains_)
        self.tau_ = np.zeros((m, k))
        self.theta_: dict[str, np.ndarray] = {}
        self.cov_: dict[str, np.ndarray] = {}
        self.params_: dict[str, dict[str, Any]] = {}
        self.mre_: dict[str, float] = {}
        self.n_points_: dict[str, int] = {}
        nat = np.array([np.exp(f["theta"][:4]) for f in fits])
        self.A_, self.alpha_, self.B_, self.beta_ = (nat[:, c].copy() for c in range(4))
        self.C_ = np.ones(m)
        for j, (d, f) in enumerate(zip(self.loss_domains_, fits, strict=True)):
            self.tau_[j, f["others"]] = f["theta"][4:]
            self.theta_[d] = f["theta"]
            self.cov_[d] = f["cov"]
            self.params_[d] = {
                "A": float(nat[j, 0]), "alpha": float(nat[j, 1]), "B": float(nat[j, 2]), "beta": float(nat[j, 3]),
                "C": 1.0, "tau": {self.domains_[q]: float(self.tau_[j, q]) for q in f["others"]},
            }
            r_own, R_other, ls, y, _ = f["data"]
            pred = np.exp(_log_predict(f["theta"], r_own, R_other, ls))
            self.mre_[d] = float(np.mean(np.abs(pred - y) / y))
            self.n_points_[d] = int(y.size)

    def _own_columns(self) -> np.ndarray:
        """Each loss domain's column among ``domains_``, ``[m]``."""
        return np.array([self.domains_.index(d) for d in self.loss_domains_])

    def _effect_matrix(self) -> np.ndarray:
        """``E`` ``[m, k]`` with ``r_eff = E r``: each loss domain's own column plus its ``tau`` row."""
        E = self.tau_.copy()
        E[np.arange(len(self.loss_domains_)), self._own_columns()] += 1.0
        return E

    def effective_proportions(self, mixtures: Any) -> np.ndarray:
        """``r_eff`` ``[n, m]`` (columns = ``loss_domains_``) for ``n`` mixtures."""
        check_fitted(self, "tau_")
        if isinstance(mixtures, (Mixture, dict)):
            mixtures = [mixtures]
        R, _ = as_matrix(mixtures, self.domains_, "mixtures")
        return R @ self._effect_matrix().T

    def predict(self, mixtures: Any, steps: Any) -> np.ndarray:
        """Predicted losses ``[n, m]`` (columns = ``loss_domains_``) for ``n`` mixtures at ``steps`` (one
        per mixture, or a scalar); ``inf`` where the effective proportion is 0."""
        r_eff = self.effective_proportions(mixtures)
        s = np.broadcast_to(np.asarray(steps, dtype=float), (r_eff.shape[0],))
        with np.errstate(divide="ignore"):
            log_r = np.log(r_eff)
        step_term = self.B_[None, :] * s[:, None] ** -self.beta_[None, :] + self.C_[None, :]
        out = self.A_[None, :] * np.exp(-self.alpha_[None, :] * log_r) * step_term
        return np.where(r_eff > 0, out, np.inf)

    def optimize(
        self,
        step: float,
        weights: Mapping[str, float] | None = None,
        constraints: MixtureConstraints | None = None,
    ) -> Mixture:
        """The mixture minimising ``sum_j c_j L_j`` at ``step`` under the simplex, bounds and caps.

        With ``r_eff = E r`` (``E`` = each loss domain's own column plus its ``tau`` row) the objective
        is ``sum_j c_j K_j (E r)_j^-alpha_j`` with ``K_j = A_j (B_j s^-beta_j + C_j)``: a convex function
        of a linear map of ``r``, so the SLSQP optimum (analytic gradient ``E^T g``) is the global one.
        There is no closed form once a ``tau`` is positive. ``weights`` and ``constraints`` mean what
        they mean for :meth:`BiMixModel.optimize <mixlab.laws.bimix.BiMixModel.optimize>`.
        """
        check_fitted(self, "tau_")
        if step <= 0:
            raise ConfigError(f"target step must be positive, got {step}")
        cons = resolve_constraints(self.domains_, constraints)
        c = np.array(list(objective_weights(self.loss_domains_, weights).values()))
        K = self.A_ * (self.B_ * float(step) ** -self.beta_ + self.C_)
        E = self._effect_matrix()
        act = c > 0
        own_act = self._own_columns()[act]
        lower = cons.lower.copy()
        lower[own_act] = np.maximum(lower[own_act], 1e-12)

        def fun(r):
            r_eff = E[act] @ r
            if np.any(r_eff <= 0):
                return float("inf")
            return float(np.sum(c[act] * K[act] * r_eff ** -self.alpha_[act]))

        def jac(r):
            r_eff = np.maximum(E[act] @ r, 1e-300)
            return E[act].T @ (-c[act] * K[act] * self.alpha_[act] * r_eff ** (-self.alpha_[act] - 1))

        k = len(self.domains_)
        uniform = np.full(k, 1.0 / k)
        weighted = np.bincount(own_act, weights=c[act], minlength=k) + 1e-3
        r = minimize_on_simplex(fun, jac, uniform, lower, cons.upper, extra_starts=[weighted / weighted.sum()])
        self.optimize_method_ = "numerical"
        return Mixture.from_weights(np.clip(r, 0, None), self.domains_)

    def get_params(self) -> dict[str, Any]:
        return {**self._law_params(), "share_beta": self.share_beta, "tau_max": self.tau_max}

    def to_state(self) -> dict[str, Any]:
        """The fitted law as plain JSON-able data (:meth:`from_state` rebuilds it; no pickle)."""
        check_fitted(self, "tau_")
        return {
            "params": self.get_params(), "domains": list(self.domains_), "loss_domains": list(self.loss_domains_),
            "coef": {k: getattr(self, k).tolist() for k in _STATE_ARRAYS},
            "mre": dict(self.mre_), "n_points": dict(self.n_points_),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BiMixTransferModel:
        """A fitted law from :meth:`to_state` output; it predicts and optimises exactly as the saved one."""
        model = cls(**state["params"])
        model.domains_ = list(state["domains"])
        model.loss_domains_ = list(state["loss_domains"])
        for k in _STATE_ARRAYS:
            setattr(model, k, np.asarray(state["coef"][k], dtype=float))
        model.mre_ = dict(state.get("mre", {}))
        model.n_points_ = dict(state.get("n_points", {}))
        model.params_ = {
            d: {"A": float(model.A_[j]), "alpha": float(model.alpha_[j]), "B": float(model.B_[j]),
                "beta": float(model.beta_[j]), "C": float(model.C_[j]),
                "tau": {q: float(model.tau_[j, i]) for i, q in enumerate(model.domains_) if q != d}}
            for j, d in enumerate(model.loss_domains_)
        }
        return model

    def __repr__(self) -> str:
        return f"BiMixTransferModel({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
