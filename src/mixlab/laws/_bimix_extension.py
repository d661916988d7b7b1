"""What the laws that extend BiMix's own-share term by the other shares have in common.

:class:`~mixlab.laws.bimix_transfer.BiMixTransferModel` (``r_eff = r_i + sum tau_ij r_j``) and
:class:`~mixlab.laws.bimix_cross.BiMixCrossModel` (``r_i^-alpha exp(sum t_ij r_j)``) are fitted the
same way: per loss domain, the plain BiMix fit (:class:`~mixlab.laws.bimix_law.BiMixLaw`) validates the
domain's points and gives the start with every cross-domain coefficient 0; robust least squares then
fits ``[log A, log alpha, log B, log beta, c_1 .. c_{k-1}]`` (one coefficient per other domain), in
log or linear space; ``share_beta`` refits every domain jointly with one step exponent. This base class
holds that fit, the fitted state and its JSON form; a law supplies its ``log L`` and Jacobian, the
bounds and starts of its coefficients, ``predict`` and ``optimize``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from mixlab.errors import ConfigError, DataError
from mixlab.laws._inputs import check_fitted, long_table_inputs
from mixlab.laws._nls import robust_least_squares
from mixlab.laws._shared_beta import refit_with_shared_beta
from mixlab.laws.bimix_law import LAW_PARAMS, BiMixLaw


class BiMixExtension:
    """Base of the BiMix laws with one cross-domain coefficient per (loss domain, other domain).

    A subclass sets ``coef`` (the coefficients' name: fitted as ``<coef>_`` ``[m, k]``, bounded by the
    argument ``<coef>_max``), ``law_name`` and ``coef_words`` (for messages), and implements
    ``_own_feature``, ``_log_predict``, ``_log_jacobian``, ``_bounds``, ``_starts``, ``predict`` and
    ``optimize``; its ``__init__`` only stores its arguments.
    """

    coef: ClassVar[str]
    law_name: ClassVar[str]
    coef_words: ClassVar[str]
    more_runs_hint: ClassVar[str] = ""

    # -- what a law supplies ----------------------------------------------------------------------
    @staticmethod
    def _own_feature(r_own: np.ndarray) -> np.ndarray:
        """The own-share column the law's ``log L`` takes (``r`` or ``log r``)."""
        raise NotImplementedError

    @staticmethod
    def _log_predict(theta: np.ndarray, own: np.ndarray, R_other: np.ndarray, ls: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _log_jacobian(theta: np.ndarray, own: np.ndarray, R_other: np.ndarray, ls: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _bounds(self, n_coef: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _starts(self, base: BiMixLaw, data: tuple) -> list[np.ndarray]:
        raise NotImplementedError

    # -- the shared fit ---------------------------------------------------------------------------
    @property
    def _coef_max(self) -> float:
        return getattr(self, f"{self.coef}_max")

    @property
    def _state_arrays(self) -> tuple[str, ...]:
        return ("A_", "alpha_", "B_", "beta_", "C_", f"{self.coef}_")

    def _law_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in LAW_PARAMS}

    def get_params(self) -> dict[str, Any]:
        return {**self._law_params(), "share_beta": self.share_beta, f"{self.coef}_max": self._coef_max}

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
    ) -> BiMixExtension:
        """Fit one law per loss domain (module docstring); ``runs`` is accepted for the common law
        interface (:mod:`mixlab.laws.registry`) and not used: the law pools the runs' points."""
        if not float(self._coef_max) > 0:
            raise ConfigError(f"{self.coef}_max must be positive, got {self._coef_max}")
        if self.space not in ("log", "linear"):
            raise ConfigError(f"space must be 'log' or 'linear', got {self.space!r}")
        R, doms, s, Y, ldoms = long_table_inputs(
            mixtures, steps, losses, domains, loss_domains,
            why=f"the {self.law_name} law extends BiMix's own-proportion term",
        )
        if len(doms) < 2:
            raise DataError(f"the {self.law_name} law needs at least two mixture domains")
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
            # the plain BiMix fit validates the domain's data and gives the start with no cross terms
            base = BiMixLaw(**self._law_params()).fit(
                R[ok, i], s[ok], Y[ok, j], None if sample_weight is None else w_all[ok], name=f"loss domain {d!r}"
            )
            self.base_laws_[d] = base
            rows = np.nonzero(ok)[0][base._rows]  # the points the BiMix fit kept (r > 0, past min_step)
            others = [q for q in range(len(doms)) if q != i]
            n_mix = np.unique(R[rows], axis=0).shape[0]
            if n_mix < len(doms) + 2:
                raise DataError(
                    f"loss domain {d!r}: the {self.law_name} law fits {len(doms) + 1} mixture coefficients (A, "
                    f"alpha and {len(others)} {self.coef_words}) from {n_mix} distinct mixtures; it needs at least "
                    f"{len(doms) + 2}: add proxy runs with other mixtures{self.more_runs_hint}"
                )
            r_own, s_kept, y, w = base._data
            data = (self._own_feature(r_own), R[np.ix_(rows, others)], np.log(s_kept), y, w)
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

    def _residual_fns(self, data: tuple):
        """Weighted residuals and their Jacobian in ``space`` (log: of ``log L``; linear: of ``L``)."""
        own, R_other, ls, y, w = data
        ly, sw = np.log(y), np.sqrt(w)
        if self.space == "log":
            def resid(theta):
                return sw * (self._log_predict(theta, own, R_other, ls) - ly)

            def jac(theta):
                return sw[:, None] * self._log_jacobian(theta, own, R_other, ls)
        else:
            def resid(theta):
                return sw * (np.exp(self._log_predict(theta, own, R_other, ls)) - y)

            def jac(theta):
                pred = np.exp(self._log_predict(theta, own, R_other, ls))
                return (sw * pred)[:, None] * self._log_jacobian(theta, own, R_other, ls)
        return resid, jac

    def _fit_shared_beta(self, fits: list[dict[str, Any]]) -> float:
        """Refit every domain jointly with one step exponent (:func:`~mixlab.laws._shared_beta.refit_with_shared_beta`;
        each domain's cross-domain coefficients stay its own)."""
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
        coef = np.zeros((m, k))
        self.theta_: dict[str, np.ndarray] = {}
        self.cov_: dict[str, np.ndarray] = {}
        self.mre_: dict[str, float] = {}
        self.n_points_: dict[str, int] = {}
        nat = np.array([np.exp(f["theta"][:4]) for f in fits])
        self.A_, self.alpha_, self.B_, self.beta_ = (nat[:, c].copy() for c in range(4))
        self.C_ = np.ones(m)
        for j, (d, f) in enumerate(zip(self.loss_domains_, fits, strict=True)):
            coef[j, f["others"]] = f["theta"][4:]
            self.theta_[d] = f["theta"]
            self.cov_[d] = f["cov"]
            own, R_other, ls, y, _ = f["data"]
            pred = np.exp(self._log_predict(f["theta"], own, R_other, ls))
            self.mre_[d] = float(np.mean(np.abs(pred - y) / y))
            self.n_points_[d] = int(y.size)
        setattr(self, f"{self.coef}_", coef)
        self._set_params()

    def _set_params(self) -> None:
        """``params_``: each loss domain's coefficients and its cross-domain coefficients by domain."""
        coef = getattr(self, f"{self.coef}_")
        self.params_ = {
            d: {"A": float(self.A_[j]), "alpha": float(self.alpha_[j]), "B": float(self.B_[j]),
                "beta": float(self.beta_[j]), "C": float(self.C_[j]),
                self.coef: {q: float(coef[j, i]) for i, q in enumerate(self.domains_) if q != d}}
            for j, d in enumerate(self.loss_domains_)
        }

    def _own_columns(self) -> np.ndarray:
        """Each loss domain's column among ``domains_``, ``[m]``."""
        return np.array([self.domains_.index(d) for d in self.loss_domains_])

    # -- state ------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The fitted law as plain JSON-able data (:meth:`from_state` rebuilds it; no pickle)."""
        check_fitted(self, f"{self.coef}_")
        return {
            "params": self.get_params(), "domains": list(self.domains_), "loss_domains": list(self.loss_domains_),
            "coef": {k: getattr(self, k).tolist() for k in self._state_arrays},
            "mre": dict(self.mre_), "n_points": dict(self.n_points_),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BiMixExtension:
        """A fitted law from :meth:`to_state` output; it predicts and optimises exactly as the saved one."""
        model = cls(**state["params"])
        model.domains_ = list(state["domains"])
        model.loss_domains_ = list(state["loss_domains"])
        for k in model._state_arrays:
            setattr(model, k, np.asarray(state["coef"][k], dtype=float))
        model.mre_ = dict(state.get("mre", {}))
        model.n_points_ = dict(state.get("n_points", {}))
        model._set_params()
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
