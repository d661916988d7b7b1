"""Baseline mixtures every mixing method is measured against: uniform, natural and UniMax.

None of them trains anything, so they spend no choosing compute. Each result is projected onto the
context's constraints (bounds and the availability cap) only when it breaks them, so an
unconstrained context returns the textbook mixture exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np

from mixlab.errors import ConfigError
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture

log = logging.getLogger(__name__)


def _respect_constraints(name: str, mixture: Mixture, ctx: MixingContext) -> Mixture:
    """Return ``mixture`` if it satisfies ``ctx.constraints()``, else its Euclidean projection."""
    cons = ctx.constraints()
    w = mixture.to_array(ctx.domains)
    if cons.satisfied(w):
        return mixture
    projected = cons.clip_and_renormalise(w)
    log.info("%s mixture breaks the context's bounds/epoch cap; projected onto them", name)
    return Mixture.from_weights(projected, ctx.domains)


class UniformMixer(Mixer):
    """Every domain gets weight 1/k."""

    name = "uniform"

    def propose(self, ctx: MixingContext) -> Proposal:
        return Proposal(_respect_constraints(self.name, Mixture.uniform(ctx.domains), ctx))


class NaturalMixer(Mixer):
    """Weights proportional to the training tokens available per domain (sampling the concatenated
    corpus uniformly at random)."""

    name = "natural"

    def propose(self, ctx: MixingContext) -> Proposal:
        total = sum(float(ctx.available_tokens.get(d, 0)) for d in ctx.domains)
        if total <= 0:
            raise ConfigError("natural mixture: the corpus reports no training tokens in any domain")
        return Proposal(_respect_constraints(self.name, ctx.natural(), ctx))


def unimax_allocation(
    available: Mapping[str, float], budget: float, max_epochs: float
) -> dict[str, float]:
    """UniMax (Chung et al. 2023, arXiv 2304.09151, Algorithm 1) token allocation per domain.

    Domains are visited from smallest to largest; each gets an equal share of the budget still
    unassigned, ``B_rem / k_rem``, capped at ``max_epochs * available``. What a small domain cannot
    use is thereby spread over the larger ones. Returns tokens per domain (summing to at most
    ``budget``; less only when every domain hits its cap).
    """
    if budget <= 0:
        raise ConfigError(f"UniMax needs a positive token budget, got {budget}")
    if not (max_epochs > 0):
        raise ConfigError(f"UniMax max_epochs must be > 0, got {max_epochs}")
    order = sorted(available, key=lambda d: (float(available[d]), d))
    remaining = float(budget)
    alloc: dict[str, float] = {}
    for i, d in enumerate(order):
        share = remaining / (len(order) - i)
        alloc[d] = min(share, max_epochs * float(available[d]))
        remaining -= alloc[d]
    return alloc


class UniMaxMixer(Mixer):
    """UniMax: as uniform as possible with at most ``max_epochs`` passes over any domain.

    ``max_epochs`` defaults to the context's availability cap, or 1 epoch (the setting the UniMax
    paper found best for its largest models) when the context sets none. ``budget_tokens`` defaults
    to the tokens the run has left (``ctx.remaining``). If the whole corpus at the cap cannot fill the
    budget, the mixture is proportional to the capped amounts (the paper's final normalisation).
    """

    name = "unimax"

    def __init__(self, max_epochs: float | None = None, budget_tokens: int | None = None) -> None:
        self.max_epochs = max_epochs
        self.budget_tokens = budget_tokens

    def propose(self, ctx: MixingContext) -> Proposal:
        epochs = self.max_epochs
        if epochs is None:
            epochs = ctx.max_epochs if isinstance(ctx.max_epochs, (int, float)) else None
        if isinstance(ctx.max_epochs, Mapping) and self.max_epochs is None:
            raise ConfigError("unimax: per-domain max_epochs in the context; give unimax a single max_epochs")
        epochs = 1.0 if epochs is None else float(epochs)
        budget = float(self.budget_tokens if self.budget_tokens is not None else ctx.remaining)
        available = {d: float(ctx.available_tokens.get(d, 0)) for d in ctx.domains}
        if sum(available.values()) <= 0:
            raise ConfigError("unimax: the corpus reports no training tokens in any domain")
        alloc = unimax_allocation(available, budget, epochs)
        if not math.isclose(sum(alloc.values()), budget, rel_tol=1e-9):
            log.info("unimax: all domains capped at %g epochs; budget %.3g not filled", epochs, budget)
        w = np.array([alloc[d] for d in ctx.domains])
        return Proposal(_respect_constraints(self.name, Mixture.from_weights(w, ctx.domains), ctx))
