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

from collections.abc import Mapping
from typing import Any

import numpy as np

from mixlab.errors import ConfigError
from mixlab.laws._bimix_extension import BiMixExtension
from mixlab.laws._inputs import as_matrix, check_fitted, objective_weights
from mixlab.laws._simplex import minimize_on_simplex, resolve_constraints
from mixlab.laws.bimix_law import LOG_BOUNDS, BiMixLaw
from mixlab.mixture import Mixture, MixtureConstraints

TAU_MAX = 10.0
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


class BiMixTransferModel(BiMixExtension):
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

    coef = "tau"
    law_name = "transfer"
    coef_words = "transfers"
    more_runs_hint = " (the bimix mixer: n_runs)"

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

    @staticmethod
    def _own_feature(r_own: np.ndarray) -> np.ndarray:
        return r_own

    _log_predict = staticmethod(_log_predict)
    _log_jacobian = staticmethod(_log_jacobian)

    def _bounds(self, n_tau: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.r_[LOG_BOUNDS[0], np.zeros(n_tau)], np.r_[LOG_BOUNDS[1], np.full(n_tau, float(self.tau_max))])

    def _starts(self, base: BiMixLaw, data: tuple) -> list[np.ndarray]:
        """The BiMix fit with every ``tau = 0``, and with every ``tau`` at each of a few small values."""
        return [np.r_[base.theta_, np.full(data[1].shape[1], t)] for t in (0.0, *_TAU_STARTS)]

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
