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

T_MAX = 3.0
_STATE_ARRAYS = ("A_", "alpha_", "B_", "beta_", "C_", "t_")


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


class BiMixCrossModel:
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

    def _law_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in LAW_PARAMS}

    def get_params(self) -> dict[str, Any]:
        return {**self._law_params(), "share_beta": self.share_beta, "t_max": self.t_max}

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
    ) -> BiMixCrossModel:
        """Fit one law per loss domain (class docstring); ``runs`` is accepted for the common law
        interface (:mod:`mixlab.laws.registry`) and not used: the law pools the runs' points."""
        if not float(self.t_max) > 0:
            raise ConfigError(f"t_max must be positive, got {self.t_max}")
        if self.space not in ("log", "linear"):
            raise ConfigError(f"space must be 'log' or 'linear', got {self.space!r}")
        R, doms, s, Y, ldoms = long_table_inputs(
            mixtures, steps, losses, domains, loss_domains, why="the cross law extends BiMix's own-proportion term"
        )
        if len(doms) < 2:
            raise DataError("the cross law needs at least two mixture domains")
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
            # the plain BiMix fit validates the domain's data and gives the t = 0 start
            base = BiMixLaw(**self._law_params()).fit(
                R[ok, i], s[ok], Y[ok, j], None if sample_weight is None else w_all[ok], name=f"loss domain {d!r}"
            )
            self.base_laws_[d] = base
            rows = np.nonzero(ok)[0][base._rows]  # the points the BiMix fit kept (r > 0, past min_step)
            others = [q for q in range(len(doms)) if q != i]
            n_mix = np.unique(R[rows], axis=0).shape[0]
            if n_mix < len(doms) + 2:
                raise DataError(
                    f"loss domain {d!r}: the cross law fits {len(doms) + 1} mixture coefficients (A, alpha and "
                    f"{len(others)} cross terms) from {n_mix} distinct mixtures; it needs at least {len(doms) + 2}: "
                    "add proxy runs with other mixtures"
                )
            r_own, s_kept, y, w = base._data
            data = (np.log(r_own), R[np.ix_(rows, others)], np.log(s_kept), y, w)
            resid, jac = self._residual_fns(data)
            res = robust_least_squares(resid, self._starts(base, data), bounds=self._bounds(len(others)),
                                       loss=self.loss, f_scale=self.f_scale, jac_fn=jac)
            fits.append({"data": data, "others": others, "theta": res.theta, "cov": res.cov})
        if self.share_beta:
            self.shared_beta_ = self._fit_shared_beta(fits)
        self.domains_ = doms
        self.loss_domains_ = ldoms
        self._set_fitted(fits)
        return self

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

    def _residual_fns(self, data):
        lr_own, R_other, ls, y, w = data
        ly, sw = np.log(y), np.sqrt(w)
        if self.space == "log":
            def resid(theta):
                return sw * (_log_predict(theta, lr_own, R_other, ls) - ly)

            def jac(theta):
                return sw[:, None] * _log_jacobian(theta, lr_own, R_other, ls)
        else:
            def resid(theta):
                return sw * (np.exp(_log_predict(theta, lr_own, R_other, ls)) - y)

            def jac(theta):
                pred = np.exp(_log_predict(theta, lr_own, R_other, ls))
                return (sw * pred)[:, None] * _log_jacobian(theta, lr_own, R_other, ls)
        return resid, jac

    def _fit_shared_beta(self, fits: list[dict[str, Any]]) -> float:
        """Refit every domain jointly with one step exponent (:func:`~mixlab.laws._shared_beta.refit_with_shared_beta`;
        each domain's cross terms stay its own)."""
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
        self.t_ = np.zeros((m, k))
        self.theta_: dict[str, np.ndarray] = {}
        self.cov_: dict[str, np.ndarray] = {}
        self.mre_: dict[str, float] = {}
        self.n_points_: dict[str, int] = {}
        nat = np.array([np.exp(f["theta"][:4]) for f in fits])
        self.A_, self.alpha_, self.B_, self.beta_ = (nat[:, c].copy() for c in range(4))
        self.C_ = np.ones(m)
        for j, (d, f) in enumerate(zip(self.loss_domains_, fits, strict=True)):
            self.t_[j, f["others"]] = f["theta"][4:]
            self.theta_[d] = f["theta"]
            self.cov_[d] = f["cov"]
            lr_own, R_other, ls, y, _ = f["data"]
            pred = np.exp(_log_predict(f["theta"], lr_own, R_other, ls))
            self.mre_[d] = float(np.mean(np.abs(pred - y) / y))
            self.n_points_[d] = int(y.size)
        self._set_params()

    def _set_params(self) -> None:
        self.params_ = {
            d: {"A": float(self.A_[j]), "alpha": float(self.alpha_[j]), "B": float(self.B_[j]),
                "beta": float(self.beta_[j]), "C": float(self.C_[j]),
                "t": {q: float(self.t_[j, i]) for i, q in enumerate(self.domains_) if q != d}}
            for j, d in enumerate(self.loss_domains_)
        }

    def _own_columns(self) -> np.ndarray:
        """Each loss domain's column among ``domains_``, ``[m]``."""
        return np.array([self.domains_.index(d) for d in self.loss_domains_])

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

    def to_state(self) -> dict[str, Any]:
        """The fitted law as plain JSON-able data (:meth:`from_state` rebuilds it; no pickle)."""
        check_fitted(self, "t_")
        return {
            "params": self.get_params(), "domains": list(self.domains_), "loss_domains": list(self.loss_domains_),
            "coef": {k: getattr(self, k).tolist() for k in _STATE_ARRAYS},
            "mre": dict(self.mre_), "n_points": dict(self.n_points_),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BiMixCrossModel:
        """A fitted law from :meth:`to_state` output; it predicts and optimises exactly as the saved one."""
        model = cls(**state["params"])
        model.domains_ = list(state["domains"])
        model.loss_domains_ = list(state["loss_domains"])
        for k in _STATE_ARRAYS:
            setattr(model, k, np.asarray(state["coef"][k], dtype=float))
        model.mre_ = dict(state.get("mre", {}))
        model.n_points_ = dict(state.get("n_points", {}))
        model._set_params()
        return model

    def __repr__(self) -> str:
        return f"BiMixCrossModel({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
