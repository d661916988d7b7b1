"""Gradient-boosted trees from mixture to loss (RegMix's regressor) and TiKMiX-M's surrogate.

RegMix (arXiv 2407.01492, Sec. 3 and sail-sg/regmix) fits one LightGBM regressor per target loss on
the raw mixture weights: gbdt boosting, learning rate 0.01, 1000 rounds. The published code stops
early after 3 rounds without improvement on a held-out split; mixlab's figures on RegMix's
published runs (`bench/regmix_data.py`) use no early stopping, which is mixlab's default
(``early_stopping_rounds`` turns it on).

TiKMiX-M (arXiv 2508.17677, Sec. 3.3) fits "a LightGBM regression model" from a mixture to its
aggregate influence over a few hundred Latin-Hypercube candidates; the paper gives no hyper-parameters.
mixlab's ``tikmix-m`` configuration is a LightGBM tuned for that small-sample regime: smaller trees
(15 leaves, 5 samples per leaf), row and feature subsampling, 500 rounds at learning rate 0.03.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixlab.errors import ConfigError
from mixlab.predictors.base import Predictor


def lightgbm_module() -> Any:
    """``lightgbm``, or a ConfigError saying how to install it (it is the ``lgbm`` extra, not a core dependency)."""
    try:
        import lightgbm
    except ModuleNotFoundError:
        raise ConfigError(
            "the LightGBM predictor needs the lightgbm package, which is not installed: "
            "pip install 'mixlab[lgbm]' (or pip install lightgbm)"
        ) from None
    return lightgbm


class LightGBMPredictor(Predictor):
    """One LightGBM booster per target column (RegMix's setting by default)."""

    name = "lightgbm"

    def __init__(
        self,
        n_estimators: int = 1000,
        learning_rate: float = 0.01,
        num_leaves: int = 31,
        min_data_in_leaf: int = 20,
        feature_fraction: float = 1.0,
        bagging_fraction: float = 1.0,
        early_stopping_rounds: int | None = None,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.num_threads = num_threads

    def min_runs(self, n_domains: int) -> int:
        return 2

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": "regression",
            "boosting_type": "gbdt",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "verbose": -1,
            "deterministic": True,
        }
        if self.bagging_fraction < 1.0:
            params.update(bagging_fraction=self.bagging_fraction, bagging_freq=1)
        return params

    def _fit_one(self, X: np.ndarray, y: np.ndarray, column: int) -> Any:
        lgb = lightgbm_module()

        if self.early_stopping_rounds:
            # RegMix's code: hold out a fifth of the runs to pick the number of rounds.
            rng = np.random.default_rng(self.seed)
            order = rng.permutation(len(y))
            cut = max(1, len(y) // 5)
            val, tr = order[:cut], order[cut:]
            train = lgb.Dataset(X[tr], y[tr])
            valid = lgb.Dataset(X[val], y[val], reference=train)
            return lgb.train(
                self._params(),
                train,
                num_boost_round=self.n_estimators,
                valid_sets=[valid],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
        return lgb.train(self._params(), lgb.Dataset(X, y), num_boost_round=self.n_estimators)

    def _predict_one(self, model: Any, X: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(X), dtype=float)


class TiKMiXMPredictor(LightGBMPredictor):
    """TiKMiX-M's LightGBM surrogate, configured for a few hundred samples (see the module docstring)."""

    name = "tikmix-m"

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_data_in_leaf: int = 5,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        early_stopping_rounds: int | None = None,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_data_in_leaf=min_data_in_leaf,
            feature_fraction=feature_fraction,
            bagging_fraction=bagging_fraction,
            early_stopping_rounds=early_stopping_rounds,
            seed=seed,
            num_threads=num_threads,
        )
