"""Mixture -> loss predictors (scikit-learn style), cross-validation, metrics and mixture search.

``get_predictor(name)`` builds one by name (``None``/``"best"``: mixlab's default); ``cross_validate``
scores it; :func:`mixlab.predictors.search.search` finds the mixture of least predicted loss.
"""

from mixlab.predictors.base import (
    DEFAULT_PREDICTOR,
    REGISTRY,
    CVResult,
    NotFittedError,
    Predictor,
    check_mixtures,
    check_targets,
    clone,
    cross_validate,
    get_predictor,
    mae,
    metrics,
    pearson,
    spearman,
)

__all__ = [
    "DEFAULT_PREDICTOR",
    "REGISTRY",
    "CVResult",
    "NotFittedError",
    "Predictor",
    "check_mixtures",
    "check_targets",
    "clone",
    "cross_validate",
    "get_predictor",
    "mae",
    "metrics",
    "pearson",
    "spearman",
]
