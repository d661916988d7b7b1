"""BiMix's training-free entropy proxies as mixers (arXiv 2405.14908 Sec. 4).

Each mixer reads the prepared corpus (``ctx.corpus``), computes one entropy measure per domain on its
training shard in packed ``seq_len``-token sequences (:mod:`mixlab.laws.entropy`), and returns
``r_i = exp(H_i) / sum_j exp(H_j)``, projected onto the context's bounds/availability caps only when
it breaks them. The only compute is one streaming pass over (at most ``max_tokens`` of) each domain,
recorded as tokens read and seconds in ``ctx.compute`` (no FLOPs of model training).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from mixlab.errors import MixlabError
from mixlab.laws.entropy import corpus_entropies, entropy_mixture
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture

log = logging.getLogger(__name__)


class _EntropyMixer(Mixer):
    """Shared logic; subclasses set ``measure``. ``max_tokens`` caps tokens read per domain (None:
    all), ``temperature`` divides the entropies before the softmax (1 = the paper)."""

    measure: ClassVar[str]

    def __init__(self, seq_len: int = 1024, max_tokens: int | None = 50_000_000, temperature: float = 1.0) -> None:
        self.seq_len = seq_len
        self.max_tokens = max_tokens
        self.temperature = temperature

    def propose(self, ctx: MixingContext) -> Proposal:
        if ctx.corpus is None:
            raise MixlabError(f"{self.name} reads the corpus: pass MixingContext(corpus=Corpus.open(path))")
        with ctx.compute.timed():
            res = corpus_entropies(
                ctx.corpus, list(ctx.domains), measures=(self.measure,) if self.measure == "vne" else ("se", "je", "ce"),
                seq_len=self.seq_len, max_tokens=self.max_tokens,
            )
        ctx.compute.add(tokens=sum(r.tokens for r in res.values()))
        self.entropies_ = {d: r.get(self.measure) for d, r in res.items()}
        mixture = Mixture(entropy_mixture(self.entropies_, self.temperature))
        cons = ctx.constraints()
        w = mixture.to_array(ctx.domains)
        if not cons.satisfied(w):
            log.info("%s mixture breaks the bounds/epoch cap; projected onto them", self.name)
            mixture = Mixture.from_weights(cons.clip_and_renormalise(w), ctx.domains)
        return Proposal(mixture)


class EntropySEMixer(_EntropyMixer):
    """Unigram Shannon entropy (SE)."""

    name = "bimix-entropy-se"
    measure = "se"


class EntropyCEMixer(_EntropyMixer):
    """Conditional entropy of a token given its predecessor (CE), the paper's best proxy."""

    name = "bimix-entropy-ce"
    measure = "ce"


class EntropyJEMixer(_EntropyMixer):
    """Joint entropy of adjacent token pairs (JE)."""

    name = "bimix-entropy-je"
    measure = "je"


class EntropyVNEMixer(_EntropyMixer):
    """Von Neumann entropy of the sample kernel (VNE; hashed n-gram embeddings replace FastText)."""

    name = "bimix-entropy-vne"
    measure = "vne"
