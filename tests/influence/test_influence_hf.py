"""Group Influence on a Hugging Face causal LM, called directly (lm_loss computes the shifted CE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixlab.influence import compute_group_influence, lm_loss
from mixlab.influence.batches import LMBatch

torch.set_num_threads(1)


def test_hf_gpt2_influence_matches_its_own_gradients():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)  # in train mode: dropout on, which influence must switch off
    g = torch.Generator().manual_seed(0)

    def batches(n, hi):
        rows = [torch.randint(0, hi, (2, 9), generator=g) for _ in range(n)]
        return [LMBatch(r[:, :-1], r[:, 1:]) for r in rows]

    train, target = {"low": batches(2, 8), "all": batches(2, 32)}, {"low": batches(2, 8)}
    gi = compute_group_influence(model, train, target, preconditioner="identity")
    assert model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]

    def mean_grad(bs):
        gs = [torch.cat([x.reshape(-1) for x in torch.autograd.grad(lm_loss(model, b), params)]) for b in bs]
        return torch.stack(gs).mean(0)

    t = mean_grad(target["low"])
    for i, d in enumerate(train):
        assert gi.matrix[i, 0] == pytest.approx(float(t @ mean_grad(train[d])), rel=1e-4)
    # HF's own loss (which shifts labels internally) agrees with lm_loss on mixlab's pre-shifted labels
    full = torch.randint(0, 32, (2, 9), generator=g)
    with torch.no_grad():
        hf = model(input_ids=full, labels=full).loss.item()
        ours = lm_loss(model, LMBatch(full[:, :-1], full[:, 1:])).item()
    assert ours == pytest.approx(hf, rel=1e-5)
    gn = compute_group_influence(model, train, target, preconditioner="ekfac")
    assert np.isfinite(gn.matrix).all() and gn.preconditioner == "ekfac"
