"""Group Influence on an evaluation-only target (a token array that is no corpus domain)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixlab.errors import ConfigError
from mixlab.influence import measure_group_influence
from mixlab.influence.batches import corpus_batches, lm_loss, token_batches
from mixlab.model import GPT, GPTConfig

torch.set_num_threads(1)
V = 32


class TwoDomainCorpus:
    """Two training domains (a cyclic pattern and uniform noise); duck-types the read API influence needs."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        cyc = (np.arange(6000) * 7) % V
        self.data = {"cyclic": (cyc, cyc[:1000]), "noise": (rng.integers(0, V, 6000), rng.integers(0, V, 1000))}
        self.domains = list(self.data)

    def train_tokens(self, d):
        return self.data[d][0]

    def val_tokens(self, d):
        return self.data[d][1]


def _flat_grad(model, batches):
    params = [p for p in model.parameters() if p.requires_grad]
    loss = sum(lm_loss(model, b) for b in batches) / len(batches)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@torch.no_grad()
def _target_loss(model, batches):
    return float(sum(lm_loss(model, b) for b in batches) / len(batches))


def test_influence_on_an_evaluation_only_target_matches_finite_differences():
    """With the identity preconditioner the influence of domain i on target T is g_T . g_i, the
    first-order drop of T's loss per unit step along -g_i; check it against a central difference of
    the target loss after moving the weights by -/+ eps g_i."""
    corpus = TwoDomainCorpus()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    model.eval()
    target = ((np.arange(3000) * 7) % V)[::-1].copy()  # related to "cyclic" (reversed), never a domain
    common = dict(tokens_per_domain=16 * 4 * 2, seq_len=16, batch_size=4, seed=5)
    gi = measure_group_influence(
        model, corpus, target_domains=["target:rev"], target_sources={"target:rev": target},
        preconditioner="identity", **common,
    )
    assert gi.target_domains == ["target:rev"] and gi.batches["target"] == {"target:rev": 2}
    t_batches = list(token_batches(target, "target:rev", tokens=128, seq_len=16, batch_size=4, seed=5))
    params = [p for p in model.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    for i, d in enumerate(corpus.domains):
        batches = list(corpus_batches(corpus, d, split="train", tokens=128, seq_len=16, batch_size=4, seed=5))
        g = _flat_grad(model, batches)
        eps = 1e-2 / float(g.norm())
        losses = []
        for sign in (-1.0, 1.0):
            with torch.no_grad():
                offset = 0
                for p, p0 in zip(params, base, strict=True):
                    n = p.numel()
                    p.copy_(p0 + sign * eps * g[offset : offset + n].view_as(p))
                    offset += n
            losses.append(_target_loss(model, t_batches))
        with torch.no_grad():
            for p, p0 in zip(params, base, strict=True):
                p.copy_(p0)
        fd = (losses[1] - losses[0]) / (2 * eps)  # = g_T . g_i to first order
        assert gi.matrix[i, 0] == pytest.approx(fd, rel=2e-2, abs=1e-4), (d, gi.matrix[i, 0], fd)
    # the reversed cycle shares the cyclic domain's tokens: it helps more than noise
    assert gi.matrix[0, 0] > gi.matrix[1, 0]


def test_unknown_target_names_are_rejected():
    corpus = TwoDomainCorpus()
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ConfigError, match="target:missing"):
        measure_group_influence(
            model, corpus, target_domains=["target:missing"], target_sources={"target:rev": np.arange(100) % V},
            tokens_per_domain=64, seq_len=16, batch_size=4, preconditioner="identity",
        )
