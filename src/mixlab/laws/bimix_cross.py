"""BiMix with a cross-domain term in the whole mixture: ``L_i = A_i r_i^-alpha_i exp(t_i . r) (B_i s^-beta_i + 1)``.

Derivation. BiMix (arXiv 2405.14908, Eq. 3; :mod:`mixlab.laws.bimix`) separates the proportion and
step effects, ``L_i(r, s) = f_i(r) g_i(s)`` with ``g_i(s) = B_i s^-beta_i + C_i``, and takes the
proportion factor from the domain's own share only, ``f_i = A_i r_i^-alpha_i``. Data Mixing Laws
(arXiv 2403.16952, Eq. 6) instead let the *whole* mixture act, log-linearly:
``L_i(r) = c_i + k_i exp(sum_j t_ij r_j)``. On real mixtures both effects are there: a domain's loss
diverges as its own share goes to 0 (BiMix's power law, which DML's exponential cannot produce) and
falls or rises with the other domains' shares (on the Pile five-group curves, prose loss falls with
the internet share), which the own-share term cannot express. Keeping BiMix's separation in steps
and taking ``log f_i`` as BiMix's own-share term plus the first-order (DML) term in the other shares,

    log f_i(r) = log A_i - alpha_i log r_i + sum_{j != i} t_ij r_j,

gives the law of this module (``C_i = 1``, BiMix's gauge):

    L_i(r, s) = A_i r_i^-alpha_i exp(sum_{j != i} t_ij r_j) (B_i s^-beta_i + 1).

``t_ij < 0``: training on domain j lowers domain i's loss (transfer); ``t_ij > 0``: it competes with
domain i beyond taking its share. With every ``t = 0`` it is exactly BiMix. The own column is left
out of the exponent: ``log r_i`` already carries the own-share effect, and since the other shares sum
to ``1 - r_i`` an own linear term would be nearly collinear with them. Unlike the transfer law
(:mod:`mixlab.laws.bimix_transfer`, ``r_eff = r_i + sum tau_ij r_j``, ``tau >= 0``) the cross term
can be of either sign and does not move the own-share singularity at ``r_i = 0``.

Fit: per loss domain, robust (Huber) least squares on ``log L`` in ``[log A, log alpha, log B,
log beta, t_i1 .. t_i(k-1)]``, ``|t| <= t_max``, started from the plain BiMix fit with ``t = 0`` and
from that fit plus the least-squares regression of its log residuals on the other shares (the exact
``t`` for BiMix's other coefficients held fixed). The late-point weight, warm-up cut and shared step
exponent are BiMix's. The law is regularised by its selection, not by a penalty: it has ``k - 1``
more coefficients per domain than BiMix, and :func:`~mixlab.laws.select.fit_law` chooses it over a
law with fewer only when leave-runs-out cross-validation says it predicts unseen mixtures better by
more than a standard error. (A quadratic penalty on ``t`` would not stay quadratic under the Huber
loss, which treats every residual row alike.)

Optimal mixture: each term ``c_i K_i r_i^-alpha_i exp(t_i . r)`` (``K_i = A_i (B_i s^-beta_i + 1)``)
is log-convex in ``r`` (``-alpha_i log r_i`` is convex, ``t_i . r`` linear), so the weighted sum is
convex and SLSQP's optimum on the simplex is the global one; with ``t = 0`` it is BiMix's closed form.
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

T_MAX = 3.0


def _log_predict(theta: np.ndarray, lr_own: np.ndarray, R_other: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """``log L`` for ``theta = [log A, log alpha, log B, log beta, t_1 .. t_{k-1}]``."""
    log_a, log_alpha, log_b, log_beta = theta[:4]
    return log_a - np.exp(log_alpha) * lr_own + R_other @ theta[4:] + np.logaddexp(0.0, log_b - np.exp(log_beta) * ls)


def _log_jacobian(theta: np.ndarray, lr_own: np.ndarray, R_other: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """d log L / d theta, ``[n, 4 + k - 1]``."""
    _, log_alpha, log_b, log_beta = theta[:4]
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    sig = 1.0 / (1.0 + np.exp(-(log_b - beta * ls)))
    head = np.stack([np.ones_like(ls), -alpha * lr_own, sig, -sig * beta * ls], axis=1)
    return np.concatenate([head, R_other], axis=1)


class BiMixCrossModel(BiMixExtension):
    """BiMix with a cross-domain term (module docstring), one law per modelled loss domain.

    ``fit(mixtures, steps, losses)`` takes the same long table as
    :meth:`BiMixModel.fit <mixlab.laws.bimix.BiMixModel.fit>` (mixture ``[n, k]`` over ``domains``,
    step, per-domain losses ``[n, m]`` over ``loss_domains``, NaN = not measured); every loss domain
    must be a mixture domain, and the points where its own proportion is 0 are left out of its fit.
    ``loss``, ``f_scale``, ``n_init``, ``space``, ``step_weight``, ``min_points``, ``min_step`` mean
    what they mean for :class:`~mixlab.laws.bimix_law.BiMixLaw`; ``share_beta`` ties the step exponent
    across loss domains as in :class:`~mixlab.laws.bimix.BiMixModel`; ``t_max`` bounds ``|t_ij|``.

    Fitted attributes: ``domains_``, ``loss_domains_``, ``t_`` (``[m, k]``, row = loss domain,
    column = mixture domain, 0 on the own column), ``A_, alpha_, B_, beta_, C_`` (``[m]``, ``C_ = 1``),
    ``params_`` (loss domain -> its coefficients and its ``t`` by domain), ``theta_``, ``cov_``,
    ``mre_``, ``n_points_`` (by loss domain), ``base_laws_`` (the plain BiMix fits that started each
    domain) and, with ``share_beta``, ``shared_beta_``.
    """

    coef = "t"
    law_name = "cross"
    coef_words = "cross terms"

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
        t_max: float = T_MAX,
    ) -> None:
        self.loss = loss
        self.f_scale = f_scale
        self.n_init = n_init
        self.space = space
        self.step_weight = step_weight
        self.min_points = min_points
        self.min_step = min_step
        self.share_beta = share_beta
        self.t_max = t_max

    @staticmethod
    def _own_feature(r_own: np.ndarray) -> np.ndarray:
        return np.log(r_own)

    _log_predict = staticmethod(_log_predict)
    _log_jacobian = staticmethod(_log_jacobian)

    def _bounds(self, n_t: int) -> tuple[np.ndarray, np.ndarray]:
        t = float(self.t_max)
        return np.r_[LOG_BOUNDS[0], np.full(n_t, -t)], np.r_[LOG_BOUNDS[1], np.full(n_t, t)]

    def _starts(self, base: BiMixLaw, data) -> list[np.ndarray]:
        """The BiMix fit with ``t = 0``, and with ``t`` from regressing its log residuals on the other
        shares (weighted least squares; centred, so ``log A`` takes the mean)."""
        lr_own, R_other, ls, y, w = data
        zero = np.r_[base.theta_, np.zeros(R_other.shape[1])]
        res = np.log(y) - _log_predict(zero, lr_own, R_other, ls)
        sw = np.sqrt(w / w.sum())
        Xc = R_other - np.average(R_other, axis=0, weights=w)
        A = Xc * sw[:, None]
        t = np.linalg.solve(A.T @ A + 1e-10 * np.eye(A.shape[1]), A.T @ (res * sw))
        t = np.clip(t, -0.9 * self.t_max, 0.9 * self.t_max)
        shift = float(np.average(res - R_other @ t, weights=w))
        reg = np.r_[base.theta_[0] + shift, base.theta_[1:], t]
        return [zero, reg]

    def predict(self, mixtures: Any, steps: Any) -> np.ndarray:
        """Predicted losses ``[n, m]`` (columns = ``loss_domains_``) for ``n`` mixtures at ``steps`` (one
        per mixture, or a scalar); ``inf`` where a loss domain's own proportion is 0."""
        check_fitted(self, "t_")
        if isinstance(mixtures, (Mixture, dict)):
            mixtures = [mixtures]
        R, _ = as_matrix(mixtures, self.domains_, "mixtures")
        s = np.broadcast_to(np.asarray(steps, dtype=float), (R.shape[0],))
        r_own = R[:, self._own_columns()]
        with np.errstate(divide="ignore"):
            log_r = np.log(r_own)
        step_term = self.B_[None, :] * s[:, None] ** -self.beta_[None, :] + self.C_[None, :]
        out = self.A_[None, :] * np.exp(-self.alpha_[None, :] * log_r + R @ self.t_.T) * step_term
        return np.where(r_own > 0, out, np.inf)

    def optimize(
        self,
        step: float,
        weights: Mapping[str, float] | None = None,
        constraints: MixtureConstraints | None = None,
    ) -> Mixture:
        """The mixture minimising ``sum_i c_i L_i`` at ``step`` under the simplex, bounds and caps.

        The objective ``sum_i c_i K_i r_i^-alpha_i exp(t_i . r)`` is convex (module docstring), so the
        SLSQP optimum (analytic gradient) is the global one. ``weights`` and ``constraints`` mean what
        they mean for :meth:`BiMixModel.optimize <mixlab.laws.bimix.BiMixModel.optimize>`.
        """
        check_fitted(self, "t_")
        if step <= 0:
            raise ConfigError(f"target step must be positive, got {step}")
        cons = resolve_constraints(self.domains_, constraints)
        c = np.array(list(objective_weights(self.loss_domains_, weights).values()))
        K = self.A_ * (self.B_ * float(step) ** -self.beta_ + self.C_)
        act = c > 0
        own = self._own_columns()[act]
        T, alpha, logc = self.t_[act], self.alpha_[act], np.log(c[act] * K[act])
        lower = cons.lower.copy()
        lower[own] = np.maximum(lower[own], 1e-12)

        def terms(r):
            return np.exp(logc - alpha * np.log(np.maximum(r[own], 1e-300)) + T @ r)

        def fun(r):
            return float(np.sum(terms(r))) if np.all(r[own] > 0) else float("inf")

        def jac(r):
            f = terms(r)
            g = T.T @ f
            np.add.at(g, own, -alpha * f / np.maximum(r[own], 1e-300))
            return g

        k = len(self.domains_)
        uniform = np.full(k, 1.0 / k)
        weighted = np.bincount(own, weights=c[act], minlength=k) + 1e-3
        r = minimize_on_simplex(fun, jac, uniform, lower, cons.upper, extra_starts=[weighted / weighted.sum()])
        self.optimize_method_ = "numerical"
        return Mixture.from_weights(np.clip(r, 0, None), self.domains_)
