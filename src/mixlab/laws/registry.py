"""Mixing laws behind one interface, and the registry that names them.

Every law is fitted on a *long table* (:class:`LongTable`): one row per evaluation of a proxy run,
with the run's mixture ``r_*``, the step and the per-domain losses ``loss_*``. A fitted law has

- ``predict(mixtures, steps) -> [n, m]`` losses over its ``loss_domains_``,
- ``optimize(step, weights=None, constraints=None) -> Mixture``,
- ``to_state() -> dict`` (plain JSON) and ``from_state(state)`` (the class method that rebuilds it).

:data:`REGISTRY` maps a law's name to a :class:`LawSpec`: its estimator, the fitting settings that
:class:`~mixlab.laws.select.LawSelector` chooses among (the first candidate of each is the default)
and the checks that say whether the law applies to a table. Two settings are the same for every
BiMix-type law and are applied here, before the estimator sees the data:

- ``min_step_frac``: the warm-up cut. Points before ``min_step_frac x`` the median of the runs' last
  steps are dropped (the loss does not follow a power law in steps during warm-up).
- ``step_weight``: the late-point weight ``p``. A point at step ``s`` of a run whose last step is
  ``S_run`` gets weight ``(s / S_run)^p``, normalised to mean 1 within the run. Relative to the run's
  *own* end, so a few long runs do not take the fit over (a weight ``(s / max s)^p`` over the whole
  table would give the points of the long runs almost all the weight).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, DataError
from mixlab.laws._run_effects import run_index
from mixlab.laws.bimix import BiMixModel
from mixlab.laws.bimix_cross import BiMixCrossModel
from mixlab.laws.bimix_transfer import BiMixTransferModel
from mixlab.laws.dml import NestedDataMixingLaw

_TABLE_SETTINGS = ("min_step_frac", "step_weight")


@dataclass
class LongTable:
    """Proxy-run evaluations: mixtures ``R [n, k]`` over ``domains``, ``steps [n]``, losses ``Y [n, m]``
    over ``loss_domains`` (NaN = not measured) and run indices ``runs [n]`` (0..runs-1)."""

    R: np.ndarray
    steps: np.ndarray
    Y: np.ndarray
    runs: np.ndarray
    domains: list[str]
    loss_domains: list[str]

    @classmethod
    def from_arrays(
        cls, R: Any, steps: Any, Y: Any, *, domains: Sequence[str], loss_domains: Sequence[str] | None = None,
        runs: Any = None,
    ) -> LongTable:
        """Check and wrap arrays; ``runs`` labels each row's run (default: one run per distinct mixture)."""
        R = np.atleast_2d(np.asarray(R, dtype=float))
        s = np.asarray(steps, dtype=float).ravel()
        Y = np.asarray(Y, dtype=float)
        Y = Y[:, None] if Y.ndim == 1 else Y
        ldoms = list(loss_domains) if loss_domains is not None else list(domains)
        if R.shape[1] != len(domains):
            raise DataError(f"mixtures have {R.shape[1]} columns for {len(domains)} domains {list(domains)}")
        if Y.shape[1] != len(ldoms):
            raise DataError(f"losses have {Y.shape[1]} columns for {len(ldoms)} loss domains {ldoms}")
        if not (R.shape[0] == s.size == Y.shape[0]):
            raise DataError(f"mixtures ({R.shape[0]} rows), steps ({s.size}) and losses ({Y.shape[0]}) differ in length")
        if R.shape[0] == 0:
            raise DataError("the table has no rows")
        if not np.all(np.isfinite(R)) or np.any(R < 0):
            raise DataError("mixture proportions must be finite and >= 0")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise DataError("steps must be finite and positive (drop step-0 evaluations)")
        if np.any(Y[np.isfinite(Y)] <= 0):
            raise DataError("losses must be positive")
        labels = np.round(R, 12) if runs is None else np.asarray(runs)
        if labels.shape[0] != R.shape[0]:
            raise DataError(f"runs has {labels.shape[0]} labels for {R.shape[0]} rows")
        return cls(R, s, Y, run_index(labels), list(domains), ldoms)

    @classmethod
    def from_wide(cls, table: Any) -> LongTable:
        """From a :class:`~mixlab.laws.table.WideTable` (``mixlab fit-law``'s CSV)."""
        return cls.from_arrays(table.R, table.steps, table.Y, domains=table.domains,
                               loss_domains=table.loss_domains, runs=table.runs)

    @property
    def n_runs(self) -> int:
        return int(self.runs.max()) + 1

    def take_runs(self, keep: Sequence[int]) -> LongTable:
        """The rows of the runs ``keep`` (run indices are renumbered)."""
        rows = np.isin(self.runs, np.asarray(list(keep), dtype=int))
        return LongTable(self.R[rows], self.steps[rows], self.Y[rows], run_index(self.runs[rows]),
                         self.domains, self.loss_domains)

    def last_rows(self) -> np.ndarray:
        """The row of each run's last step, ``[runs]`` (a run's latest evaluation)."""
        order = np.lexsort((self.steps, self.runs))
        last = np.r_[self.runs[order][1:] != self.runs[order][:-1], True]
        return order[last]

    def last_steps(self) -> np.ndarray:
        """Each row's run's last step, ``[n]``."""
        last = np.zeros(self.n_runs)
        np.maximum.at(last, self.runs, self.steps)
        return last[self.runs]

    def scored(self) -> np.ndarray:
        """``[n, m]`` mask of the losses a prediction is judged on: measured, and for a loss domain
        that is a mixture domain, only where its proportion is > 0 (BiMix predicts no finite loss at
        ``r = 0``, and the issue's metric skips those points for every law)."""
        ok = np.isfinite(self.Y)
        for j, d in enumerate(self.loss_domains):
            if d in self.domains:
                ok[:, j] &= self.R[:, self.domains.index(d)] > 0
        return ok


def run_step_weights(table: LongTable, p: float) -> np.ndarray | None:
    """``(s / S_run)^p`` normalised to mean 1 within each run (module docstring); ``None`` for ``p = 0``."""
    if not p:
        return None
    w = (table.steps / table.last_steps()) ** float(p)
    mean = np.bincount(table.runs, weights=w) / np.bincount(table.runs)
    return w / mean[table.runs]


@dataclass(frozen=True)
class LawSpec:
    """One registered law: ``estimator`` (fitted with ``fit(R, steps, Y, domains=, loss_domains=,
    sample_weight=, runs=)``), its settings ``grid`` (setting -> candidates, the first the default;
    ``min_step_frac`` and ``step_weight`` are applied by :func:`fit_spec`), ``rank`` (lower = fewer
    coefficients, preferred by the one-standard-error rule), ``own_domain`` (every loss domain must be
    a mixture domain) and ``min_runs(k)`` (runs the law needs for ``k`` mixture domains)."""

    name: str
    formula: str
    estimator: type
    grid: Mapping[str, tuple]
    rank: int
    own_domain: bool
    min_runs: Callable[[int], int]
    paper: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {k: v[0] for k, v in self.grid.items()}

    def check(self, table: LongTable) -> str | None:
        """Why the law cannot be fitted on ``table`` (``None`` when it can)."""
        if self.own_domain:
            missing = [d for d in table.loss_domains if d not in table.domains]
            if missing:
                return (f"models a domain's loss through its own proportion; loss domain(s) {missing} have no "
                        "proportion column")
        need = self.min_runs(len(table.domains))
        if table.n_runs < need:
            return f"needs at least {need} runs with {len(table.domains)} mixture domains, the table has {table.n_runs}"
        return None


def fit_spec(
    spec: LawSpec, table: LongTable, settings: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
) -> Any:
    """Fit ``spec``'s estimator on ``table`` with ``settings`` (missing ones at their defaults) and
    ``params`` (other arguments of the estimator, passed as given: ``loss``, ``n_init``, ...)."""
    unknown = [k for k in (settings or {}) if k not in spec.grid]
    if unknown:
        raise ConfigError(f"law {spec.name!r} has no setting(s) {unknown}; its settings are {list(spec.grid)}")
    full = {**spec.defaults(), **(settings or {})}
    kw = {**spec.fixed, **(params or {}), **{k: v for k, v in full.items() if k not in _TABLE_SETTINGS}}
    if "min_step_frac" in full:
        kw["min_step"] = float(full["min_step_frac"]) * float(np.median(table.steps[table.last_rows()]))
    est = spec.estimator(**kw)
    return est.fit(table.R, table.steps, table.Y, domains=table.domains, loss_domains=table.loss_domains,
                   sample_weight=run_step_weights(table, full.get("step_weight", 0.0)), runs=table.runs)


_BIMIX_GRID = {"min_step_frac": (0.0, 0.15, 0.3), "step_weight": (0.0, 1.0), "share_beta": (False, True)}

REGISTRY: dict[str, LawSpec] = {
    "bimix": LawSpec(
        "bimix", "L_i = A_i / r_i^alpha_i * (B_i / s^beta_i + C_i)", BiMixModel,
        {**_BIMIX_GRID, "run_effects": (False, True)}, rank=0, own_domain=True, min_runs=lambda k: 2,
        paper="arXiv 2405.14908 Eq. 3",
    ),
    "bimix-transfer": LawSpec(
        "bimix-transfer", "L_i = A_i / (r_i + sum_j tau_ij r_j)^alpha_i * (B_i / s^beta_i + C_i)",
        BiMixTransferModel, _BIMIX_GRID, rank=1, own_domain=True, min_runs=lambda k: k + 2,
        paper="BiMix with cross-domain transfer (mixlab)",
    ),
    "bimix-cross": LawSpec(
        "bimix-cross", "L_i = A_i / r_i^alpha_i * exp(sum_{j != i} t_ij r_j) * (B_i / s^beta_i + C_i)",
        BiMixCrossModel, _BIMIX_GRID, rank=2, own_domain=True, min_runs=lambda k: k + 2,
        paper="BiMix (arXiv 2405.14908 Eq. 3) x Data Mixing Laws' exp term (arXiv 2403.16952 Eq. 6), mixlab",
    ),
    "dml": LawSpec(
        "dml", "L_j = c_j + k_j exp(sum_i t_ij r_i), nested with L(s) = E + B s^-b per run", NestedDataMixingLaw,
        {}, rank=3, own_domain=False, min_runs=lambda k: k + 2, paper="arXiv 2403.16952 Eq. 6 and Sec. 4",
    ),
}


def get_law(name: str) -> LawSpec:
    """The registered law ``name``; a :class:`ConfigError` lists the names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown law {name!r}; choose one of {['auto', *REGISTRY]}") from None


def register(spec: LawSpec) -> None:
    """Add a law to the registry (its name must be new)."""
    if spec.name in REGISTRY or spec.name == "auto":
        raise ConfigError(f"a law named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
