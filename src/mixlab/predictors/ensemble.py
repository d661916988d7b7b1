"""mixlab's default predictor: the average of a law and a Gaussian process.

The joint mixing law (``logmix``: ``L = c + exp(b + t . log(r + eps) + u . r)``, see
:mod:`mixlab.predictors.laws`) captures the global shape (irreducible loss, power-law returns of each
domain, exponential interactions) with few parameters, so it extrapolates well but cannot bend where the
data departs from the law. The GP (:mod:`mixlab.predictors.gp`) bends where the runs say so but falls
back to its linear-in-log mean away from them. Their errors are weakly correlated, so the plain average
of the two (equal weights: nothing to tune, nothing fitted on held-out data) ranks unseen mixtures
better than either (bench/regmix_data.py). With fewer runs than the law has parameters (``2m + 2``),
the law is left out and the GP alone predicts.
"""

from __future__ import annotations

import numpy as np

from mixlab.predictors.base import Predictor
from mixlab.predictors.gp import SimplexGPPredictor
from mixlab.predictors.laws import LogMixLawPredictor


class MixlabPredictor(Predictor):
    """Equal-weight average of :class:`LogMixLawPredictor` and :class:`SimplexGPPredictor`."""

    name = "mixlab"

    def __init__(self, eps: float = 1e-3, restarts: int = 3, seed: int = 0) -> None:
        self.eps = eps
        self.restarts = restarts
        self.seed = seed

    def min_runs(self, n_domains: int) -> int:
        return 3

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        gp = SimplexGPPredictor(eps=self.eps, restarts=self.restarts, seed=self.seed)
        self.members_: list[Predictor] = [gp.fit(X, Y)]
        law = LogMixLawPredictor(eps=self.eps)
        if X.shape[0] >= law.min_runs(X.shape[1]):
            self.members_.append(law.fit(X, Y))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        preds = [np.asarray(m.predict(X)).reshape(X.shape[0], -1) for m in self.members_]
        return np.mean(preds, axis=0)
