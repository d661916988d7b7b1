"""The mixture -> loss predictor interface, input checks, metrics and cross-validation.

A predictor maps a mixture (a row of domain weights on the simplex) to one or more losses. It follows
scikit-learn's conventions: ``__init__`` only stores its arguments, :meth:`Predictor.fit` learns from
``X`` (runs x domains) and ``y`` (runs, or runs x targets) and returns ``self``, fitted state ends in
``_``, and :meth:`Predictor.predict` refuses to run before ``fit``. Multi-output is built in: a 2-D
``y`` fits one model per column (or one shared model, where a subclass knows how), and ``predict``
returns the same shape.

Every user-facing problem with the inputs (NaN losses, rows off the simplex, fewer runs than the model
has features, mixture columns that do not match the fitted domains) raises
:class:`~mixlab.errors.DataError` naming the problem and what to do.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.stats import rankdata

from mixlab.errors import ConfigError, DataError, NotFittedError

SIMPLEX_TOLERANCE = 1e-2
"""Rows may miss sum 1 by this much (published sweeps round weights to 3 decimals)."""


def _rows(bad: np.ndarray, lines: Sequence[int] | None) -> str:
    """The offending rows, as the file's 1-based line numbers when the rows came from a file
    (``lines[i]`` is row ``i``'s line), else as 0-based row indices of the array."""
    idx = np.flatnonzero(bad)[:10].tolist()
    if lines is None:
        return f"rows {idx}"
    nums = [int(lines[i]) for i in idx]
    return f"line{'s' if len(nums) > 1 else ''} {', '.join(map(str, nums))}"


def check_mixtures(
    X: Any, *, domains: Sequence[str] | None = None, where: str = "mixtures", tolerance: float = SIMPLEX_TOLERANCE,
    lines: Sequence[int] | None = None,
) -> np.ndarray:
    """Validate a runs x domains matrix of mixture weights (finite, >= 0, rows summing to 1 within
    ``tolerance``). Rows are returned as given, not renormalised, so results match other tools' on the
    same files. ``where`` names the source (a file path) and ``lines`` the file line of each row, so
    errors point at "line N" of the file."""
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{where}: mixture weights must be numbers") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{where}: expected a non-empty table of runs x domains, got shape {arr.shape}")
    if domains is not None and arr.shape[1] != len(domains):
        raise DataError(f"{where}: has {arr.shape[1]} mixture columns but the predictor uses {len(domains)} domains")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DataError(f"{where}: {_rows(bad, lines)} contain NaN or infinite weights")
    if (arr < 0).any():
        raise DataError(f"{where}: {_rows((arr < 0).any(axis=1), lines)} have negative weights; mixture weights must be >= 0")
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > tolerance
    if off.any():
        raise DataError(
            f"{where}: {_rows(off, lines)} do not sum to 1 (e.g. {sums[off][0]:.4g}); each row must be a mixture on the "
            "simplex (check that the first column is the index and the rest are domain weights)"
        )
    return arr


def check_targets(y: Any, n_runs: int, *, where: str = "losses", lines: Sequence[int] | None = None) -> np.ndarray:
    """Validate the losses aligned with ``n_runs`` mixtures; returns a float array (1-D or 2-D as given).
    ``where``/``lines`` as in :func:`check_mixtures`."""
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{where}: losses must be numbers") from None
    if arr.ndim not in (1, 2):
        raise DataError(f"{where}: expected one loss per run (or runs x targets), got shape {arr.shape}")
    if arr.shape[0] != n_runs:
        raise DataError(f"{where}: {arr.shape[0]} rows of losses for {n_runs} mixtures; rows must align by position")
    if not np.isfinite(arr).all():
        bad = ~np.isfinite(arr.reshape(n_runs, -1)).all(axis=1)
        raise DataError(f"{where}: NaN or infinite loss in {_rows(bad, lines)}; drop those runs or re-run them")
    return arr


class Predictor:
    """Mixture -> loss regressor (scikit-learn style, multi-output).

    Subclasses implement :meth:`_fit_one` / :meth:`_predict_one` for a single target column, or
    override :meth:`_fit` / :meth:`_predict` to share structure across columns. ``min_runs`` gives the
    fewest runs the model can be fitted on, as a function of the number of domains.
    """

    name: ClassVar[str] = ""
    log_target: ClassVar[bool] = False
    """Fit log(loss) instead of loss (losses are positive; log makes multiplicative laws additive)."""

    def min_runs(self, n_domains: int) -> int:
        """Fewest runs the model can be fitted on; by default one per feature (domain)."""
        return n_domains

    # -- scikit-learn protocol -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    def set_params(self, **params: Any) -> Predictor:
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ConfigError(f"predictor {self.name!r} has no parameter {k!r}; it has {sorted(valid)}")
            setattr(self, k, v)
        return self

    def fit(self, X: Any, y: Any, *, domains: Sequence[str] | None = None, targets: Sequence[str] | None = None) -> Predictor:
        """Fit on ``X`` (runs x domains, rows on the simplex) and ``y`` (runs, or runs x targets)."""
        Xa = check_mixtures(X, domains=domains, where="training mixtures")
        ya = check_targets(y, Xa.shape[0], where="training losses")
        need = self.min_runs(Xa.shape[1])
        if Xa.shape[0] < need:
            raise DataError(
                f"predictor {self.name!r} needs at least {need} runs for {Xa.shape[1]} domains, got "
                f"{Xa.shape[0]}; run more proxy runs or use a predictor with fewer parameters"
            )
        Y = ya.reshape(Xa.shape[0], -1)
        if self.log_target:
            if (Y <= 0).any():
                raise DataError(f"predictor {self.name!r} models log(loss) and needs positive losses")
        self.n_domains_ = Xa.shape[1]
        self.domains_ = list(domains) if domains is not None else [f"d{i}" for i in range(Xa.shape[1])]
        self.targets_ = list(targets) if targets is not None else [f"y{i}" for i in range(Y.shape[1])]
        if len(self.targets_) != Y.shape[1]:
            raise DataError(f"{len(self.targets_)} target names for {Y.shape[1]} loss columns")
        self.single_output_ = ya.ndim == 1
        self.x_min_ = Xa.min(axis=0)
        self.x_max_ = Xa.max(axis=0)
        self._fit(Xa, np.log(Y) if self.log_target else Y)
        self.fitted_ = True
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted loss for each row of ``X``: shape (runs,) or (runs, targets), as ``y`` was at fit."""
        self.check_fitted()
        Xa = check_mixtures(X, domains=self.domains_, where="mixtures to predict")
        out = self._predict(Xa)
        if self.log_target:
            out = np.exp(out)
        return out[:, 0] if self.single_output_ else out

    def score(self, X: Any, y: Any) -> float:
        """Mean Spearman correlation between predictions and ``y`` over the target columns."""
        pred = np.asarray(self.predict(X)).reshape(len(np.atleast_2d(X)), -1)
        truth = check_targets(y, pred.shape[0]).reshape(pred.shape[0], -1)
        return float(np.mean([spearman(truth[:, j], pred[:, j]) for j in range(pred.shape[1])]))

    def check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"predictor {self.name or type(self).__name__!r} is not fitted; call fit(X, y) first")

    # -- per-column hooks ------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.models_ = [self._fit_one(X, Y[:, j], j) for j in range(Y.shape[1])]

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([self._predict_one(m, X) for m in self.models_])

    def _fit_one(self, X: np.ndarray, y: np.ndarray, column: int) -> Any:
        raise NotImplementedError

    def _predict_one(self, model: Any, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def clone(predictor: Predictor) -> Predictor:
    """An unfitted copy with the same parameters."""
    return type(predictor)(**predictor.get_params())


# -- metrics -------------------------------------------------------------------------------------
def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation (Pearson on average ranks; ties share their mean rank)."""

    return pearson(rankdata(a), rankdata(b))


def pearson(a: Any, b: Any) -> float:
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def mae(a: Any, b: Any) -> float:
    return float(np.mean(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))


def metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Spearman, Pearson and MAE, averaged over target columns when 2-D."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    t = t.reshape(t.shape[0], -1)
    p = p.reshape(t.shape[0], -1)
    cols = range(t.shape[1])
    return {
        "spearman": float(np.mean([spearman(t[:, j], p[:, j]) for j in cols])),
        "pearson": float(np.mean([pearson(t[:, j], p[:, j]) for j in cols])),
        "mae": float(np.mean([mae(t[:, j], p[:, j]) for j in cols])),
    }


@dataclass
class CVResult:
    """Per-fold metrics and out-of-fold predictions of :func:`cross_validate`."""

    folds: list[dict[str, float]]
    oof: np.ndarray
    """Out-of-fold prediction for every run (each run predicted by the model that did not see it)."""
    overall: dict[str, float] = field(default_factory=dict)
    """Metrics of the pooled out-of-fold predictions."""

    @property
    def mean(self) -> dict[str, float]:
        return {k: float(np.mean([f[k] for f in self.folds])) for k in self.folds[0]}


def cross_validate(predictor: Predictor, X: Any, y: Any, folds: int = 5, *, seed: int = 0) -> CVResult:
    """K-fold cross-validation: fit a clone on k-1 folds, predict the held-out fold (shuffled with ``seed``)."""
    Xa = check_mixtures(X, where="cross-validation mixtures")
    ya = check_targets(y, Xa.shape[0], where="cross-validation losses")
    n = Xa.shape[0]
    if folds < 2 or folds > n:
        raise ConfigError(f"folds must be between 2 and the number of runs ({n}), got {folds}")
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, folds)
    oof = np.zeros_like(ya, dtype=float)
    results = []
    for part in parts:
        train = np.setdiff1d(order, part)
        model = clone(predictor).fit(Xa[train], ya[train])
        pred = model.predict(Xa[part])
        oof[part] = pred
        results.append(metrics(ya[part], pred))
    return CVResult(results, oof, metrics(ya, oof))


# -- registry ------------------------------------------------------------------------------------
REGISTRY: dict[str, str] = {
    "lightgbm": "mixlab.predictors.lgbm:LightGBMPredictor",
    "tikmix-m": "mixlab.predictors.lgbm:TiKMiXMPredictor",
    "linear": "mixlab.predictors.linear:LinearPredictor",
    "loglinear": "mixlab.predictors.linear:LogLinearPredictor",
    "dml": "mixlab.predictors.laws:DataMixingLawPredictor",
    "bimix": "mixlab.predictors.laws:BiMixPredictor",
    "logmix": "mixlab.predictors.laws:LogMixLawPredictor",
    "gp": "mixlab.predictors.gp:SimplexGPPredictor",
    "mixlab": "mixlab.predictors.ensemble:MixlabPredictor",
}
DEFAULT_PREDICTOR = "mixlab"
"""mixlab's best predictor on the RegMix data (see bench/regmix_data.py)."""


def get_predictor(name: str | None = None, **params: Any) -> Predictor:
    """Build a predictor by registry name (``None`` or ``"best"`` = mixlab's default)."""
    key = DEFAULT_PREDICTOR if name in (None, "best", "default") else name
    if key not in REGISTRY:
        raise ConfigError(f"unknown predictor {name!r}; choose one of {sorted(REGISTRY)} (or 'best')")
    module, _, cls = REGISTRY[key].partition(":")
    klass = getattr(importlib.import_module(module), cls)
    try:
        return klass(**params)
    except TypeError as exc:
        raise ConfigError(f"predictor {key!r}: {exc}") from None

