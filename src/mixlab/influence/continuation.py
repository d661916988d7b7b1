"""Measured value of a mixture: the target-loss decrease of a short continuation from the live model.

Group Influence predicts the effect of a mixture to first order, linearly in w. A short continuation
measures it: copy the live model and its optimizer state, train ``steps`` optimizer steps on batches
drawn from mixture w, and evaluate the weighted target loss on fixed batches. The label

    y(w) = L_T(theta_0) - L_T(theta_steps(w))

contains every order of the effect (diminishing returns of one domain, interactions between
domains), so a surrogate fitted on it learns the shape the linear influence prediction cannot. TiKMiX-M
(:mod:`mixlab.mixers.tikmix_m`) uses it as its default label.

Candidates share common random numbers: the i-th training batch of every candidate is built from the
same per-(step, domain) windows, so label differences reflect the mixtures rather than sampling
noise. The live model and optimizer are never modified (the optimizer state is deep-copied).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mixlab.errors import ConfigError
from mixlab.influence.batches import LMBatch, count_terms, lm_loss, model_device, to_device
from mixlab.influence.preconditioners import trainable_params

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


def clone_for_continuation(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A deep copy of ``model`` and an optimizer of the same kind over the copy with a deep copy of the
    live optimizer's state and hyper-parameters (its current learning rate included)."""
    clone = copy.deepcopy(model)
    mapping = dict(zip((id(p) for p in model.parameters()), clone.parameters(), strict=True))
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [mapping[id(p)] for p in g["params"]]}
        for g in optimizer.param_groups
    ]
    opt = type(optimizer)(groups)
    opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return clone, opt


def weighted_loss(
    model: torch.nn.Module,
    eval_batches: Mapping[str, Sequence[Any]],
    weights: Mapping[str, float],
    loss_fn: LossFn = lm_loss,
) -> float:
    """sum_j c_j mean_b loss_fn(model, b) over each target's fixed batches (no gradients)."""
    device = model_device(model)
    total = 0.0
    with torch.no_grad():
        for name, batches in eval_batches.items():
            losses = [float(loss_fn(model, to_device(b, device))) for b in batches]
            total += float(weights.get(name, 0.0)) * float(np.mean(losses))
    return total


def continuation_labels(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    mixtures: np.ndarray,
    *,
    train_batch: Callable[[np.ndarray, int], Any],
    eval_batches: Mapping[str, Sequence[Any]],
    target_weights: Mapping[str, float],
    steps: int,
    loss_fn: LossFn = lm_loss,
) -> tuple[np.ndarray, dict[str, float]]:
    """The measured target-loss decrease of ``steps`` optimizer steps on each row of ``mixtures``.

    ``train_batch(w, step)`` returns the training batch of a step for mixture w. Returns the labels
    and the cost ``{flops, tokens, seconds}`` (6 x params per trained token, 2 x params per evaluated
    token)."""
    if steps < 1:
        raise ConfigError(f"continuation steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    n_params = sum(p.numel() for p in trainable_params(model))
    device = model_device(model)
    eval_tokens = sum(count_terms(b) for bs in eval_batches.values() for b in bs)
    base = weighted_loss(model, eval_batches, target_weights, loss_fn)
    labels, trained = [], 0
    for w in np.atleast_2d(mixtures):
        clone, opt = clone_for_continuation(model, optimizer)
        clone.train()
        for step in range(steps):
            batch = to_device(train_batch(np.asarray(w, float), step), device)
            trained += count_terms(batch)
            loss = loss_fn(clone, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        clone.eval()
        labels.append(base - weighted_loss(clone, eval_batches, target_weights, loss_fn))
        del clone, opt
    n_eval = eval_tokens * (len(labels) + 1)
    cost = {
        "flops": 6.0 * n_params * trained + 2.0 * n_params * n_eval,
        "tokens": float(trained + n_eval),
        "seconds": time.perf_counter() - t0,
    }
    return np.array(labels), cost


def mixture_batch_fn(
    arrays: Sequence[Any], *, seq_len: int, batch_size: int, seed: int = 0
) -> Callable[[np.ndarray, int], LMBatch]:
    """``train_batch(w, step)`` for token arrays (one per training domain): the step's sequences are
    split among domains by a multinomial draw, and domain i's windows come from a generator seeded by
    (seed, step, i), the same for every mixture (common random numbers)."""
    for i, arr in enumerate(arrays):
        if len(arr) < seq_len + 2:
            raise ConfigError(f"training domain #{i} has {len(arr)} tokens, fewer than seq_len + 2")

    def batch(w: np.ndarray, step: int) -> LMBatch:
        p = np.clip(np.asarray(w, float), 0, None)
        counts = np.random.default_rng([int(seed), int(step)]).multinomial(batch_size, p / p.sum())
        rows = []
        for i, n in enumerate(counts):
            starts = np.random.default_rng([int(seed), int(step), i]).integers(
                0, len(arrays[i]) - seq_len - 1, size=batch_size
            )[:n]
            rows.extend(np.asarray(arrays[i][s : s + seq_len + 1], dtype=np.int64) for s in starts)
        t = torch.from_numpy(np.stack(rows))
        return LMBatch(t[:, :-1].contiguous(), t[:, 1:].contiguous())

    return batch


__all__ = ["clone_for_continuation", "continuation_labels", "mixture_batch_fn", "weighted_loss"]
