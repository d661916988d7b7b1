"""Group Influence: how much up-weighting each training domain lowers each target domain's loss.

``compute_group_influence(model, train_batches, target_batches, preconditioner=...)`` works for any
``loss_fn(model, batch)``; ``measure_group_influence(model, corpus, ...)`` reads a prepared corpus.
See :mod:`mixlab.influence.group` for the estimator (TiKMiX, arXiv 2508.17677, Eq. 8) and
:mod:`mixlab.influence.matrix` for the one layout of the matrix (rows = training domains, columns =
targets). Names are imported on use, so reading a saved matrix (:class:`GroupInfluence`) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LMBatch": "mixlab.influence.batches",
    "corpus_batches": "mixlab.influence.batches",
    "lm_loss": "mixlab.influence.batches",
    "lm_sampled_loss": "mixlab.influence.batches",
    "GroupInfluence": "mixlab.influence.matrix",
    "split_half_stability": "mixlab.influence.matrix",
    "compute_group_influence": "mixlab.influence.group",
    "measure_group_influence": "mixlab.influence.group",
    "PRECONDITIONERS": "mixlab.influence.preconditioners",
    "AdamPreconditioner": "mixlab.influence.preconditioners",
    "CallablePreconditioner": "mixlab.influence.preconditioners",
    "DiagonalGNPreconditioner": "mixlab.influence.preconditioners",
    "ExactHessianPreconditioner": "mixlab.influence.preconditioners",
    "IdentityPreconditioner": "mixlab.influence.preconditioners",
    "KFACPreconditioner": "mixlab.influence.preconditioners",
    "Preconditioner": "mixlab.influence.preconditioners",
    "make_preconditioner": "mixlab.influence.preconditioners",
    "GradientProjector": "mixlab.influence.projection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mixlab.influence' has no attribute {name!r}")
