"""Group Influence: how much up-weighting each training domain lowers each target domain's loss.

``compute_group_influence(model, train_batches, target_batches, preconditioner=...)`` works for any
``loss_fn(model, batch)``; ``measure_group_influence(model, corpus, ...)`` reads a prepared corpus.
See :mod:`mixlab.influence.group` for the estimator (TiKMiX, arXiv 2508.17677, Eq. 8).
"""

from __future__ import annotations

from mixlab.influence.batches import LMBatch, corpus_batches, lm_loss, lm_sampled_loss
from mixlab.influence.group import GroupInfluence, compute_group_influence, measure_group_influence
from mixlab.influence.preconditioners import (
    PRECONDITIONERS,
    AdamPreconditioner,
    CallablePreconditioner,
    DiagonalGNPreconditioner,
    ExactHessianPreconditioner,
    IdentityPreconditioner,
    KFACPreconditioner,
    Preconditioner,
    make_preconditioner,
)
from mixlab.influence.projection import GradientProjector

__all__ = [
    "PRECONDITIONERS",
    "AdamPreconditioner",
    "CallablePreconditioner",
    "DiagonalGNPreconditioner",
    "ExactHessianPreconditioner",
    "GradientProjector",
    "GroupInfluence",
    "IdentityPreconditioner",
    "KFACPreconditioner",
    "LMBatch",
    "Preconditioner",
    "compute_group_influence",
    "corpus_batches",
    "lm_loss",
    "lm_sampled_loss",
    "make_preconditioner",
    "measure_group_influence",
]
