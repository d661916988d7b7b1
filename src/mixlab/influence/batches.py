"""Batches and losses for influence measurement, independent of the model family.

Group Influence only needs ``loss_fn(model, batch) -> scalar mean loss``. For language models mixlab
provides :func:`lm_loss`, which works for mixlab's :class:`~mixlab.model.GPT` and Hugging Face causal
LMs alike because it calls ``model(input_ids)`` and computes the token cross-entropy itself against
labels that are already shifted (mixlab's convention; Hugging Face models would shift again if given
``labels``). :func:`corpus_batches` draws fixed-seed random windows from a corpus split.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from mixlab.errors import ConfigError, DataError

IGNORE_INDEX = -100


class LMBatch(NamedTuple):
    """``input_ids``/``labels`` ``[B, T]`` int64, labels = inputs shifted by one."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def _fields(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        return batch["input_ids"], batch["labels"]
    if hasattr(batch, "input_ids") and hasattr(batch, "labels"):
        return batch.input_ids, batch.labels
    if isinstance(batch, Sequence) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ConfigError(
        f"cannot read input_ids/labels from a batch of type {type(batch).__name__}; pass a loss_fn that "
        "understands your batches"
    )


def is_lm_batch(batch: Any) -> bool:
    """True for batches with integer ``input_ids``/``labels`` (mapping, attributes or a pair)."""
    try:
        ids, labels = _fields(batch)
    except (ConfigError, KeyError, TypeError, IndexError):
        return False
    return all(isinstance(t, torch.Tensor) and not t.is_floating_point() for t in (ids, labels))


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a batch (tensor, tuple/NamedTuple, mapping) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    raise ConfigError(f"model returned {type(out).__name__}; expected logits or an object with .logits")


def lm_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """Mean next-token cross-entropy of ``model`` on an LM batch (labels already shifted)."""
    input_ids, labels = _fields(batch)
    logits = _logits(model(input_ids))
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def lm_sampled_loss(
    model: torch.nn.Module, batch: Any, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mean cross-entropy against labels *sampled from the model's own predictions*.

    Its gradient's second moment is the (per-token) Gauss-Newton / true Fisher matrix of the LM loss,
    which is what the Gauss-Newton preconditioners estimate (Martens & Grosse 2015, Sec. 3; Grosse et
    al. 2023, Eq. 14), rather than the empirical Fisher of the observed labels.
    """
    input_ids, labels = _fields(batch)
    logits = _logits(model(input_ids)).float()
    with torch.no_grad():
        probs = torch.softmax(logits.reshape(-1, logits.size(-1)), dim=-1)
        sampled = torch.multinomial(probs, 1, generator=generator).view(labels.shape)
        sampled = torch.where(labels == IGNORE_INDEX, labels, sampled)
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), sampled.reshape(-1), ignore_index=IGNORE_INDEX
    )


def count_terms(batch: Any) -> int:
    """Number of loss terms the batch's mean loss averages over: non-ignored label tokens for LM
    batches, else the leading dimension of the first tensor."""
    if is_lm_batch(batch):
        _, labels = _fields(batch)
        return int((labels != IGNORE_INDEX).sum())
    first = batch
    while not isinstance(first, torch.Tensor):
        if isinstance(first, Mapping):
            first = next(iter(first.values()))
        elif isinstance(first, (list, tuple)):
            first = first[0]
        else:
            return 1
    return int(first.shape[0]) if first.dim() else 1


def corpus_batches(
    corpus: Any,
    domain: str,
    *,
    split: str,
    tokens: int,
    seq_len: int,
    batch_size: int,
    seed: int = 0,
) -> Iterator[LMBatch]:
    """Yield ``ceil(tokens / (seq_len * batch_size))`` batches of random ``seq_len + 1`` windows from one
    domain's split, drawn with a generator seeded by ``(seed, domain, split)`` so every rank and every
    re-run sees the same batches."""
    arr = corpus.train_tokens(domain) if split == "train" else corpus.val_tokens(domain)
    return token_batches(arr, f"{domain}/{split}", tokens=tokens, seq_len=seq_len, batch_size=batch_size,
                         seed=seed, what=f"domain {domain!r} has only {{n}} {split} tokens")


def token_batches(
    arr: Any,
    key: str,
    *,
    tokens: int,
    seq_len: int,
    batch_size: int,
    seed: int = 0,
    what: str | None = None,
) -> Iterator[LMBatch]:
    """:func:`corpus_batches` over any 1-D token array (an evaluation-only target's tokens), the
    generator seeded by ``(seed, key)``."""
    if tokens <= 0 or seq_len <= 0 or batch_size <= 0:
        raise ConfigError(
            f"tokens_per_domain, seq_len and batch_size must be positive, got {tokens}, {seq_len}, {batch_size}"
        )
    n = int(arr.shape[0])
    if n < seq_len + 1:
        head = (what or f"{key!r} has only {{n}} tokens").format(n=n)
        raise DataError(f"{head}, fewer than seq_len + 1 = {seq_len + 1}; lower seq_len or add data")
    n_batches = max(1, math.ceil(tokens / (seq_len * batch_size)))
    rng = np.random.default_rng([int(seed), *np.frombuffer(key.encode(), dtype=np.uint8).astype(np.uint32).tolist()])
    for _ in range(n_batches):
        starts = rng.integers(0, n - seq_len, size=batch_size)
        rows = np.stack([np.asarray(arr[s : s + seq_len + 1], dtype=np.int64) for s in starts])
        t = torch.from_numpy(rows)
        yield LMBatch(t[:, :-1].contiguous(), t[:, 1:].contiguous())


def iterate(batches: Any) -> Iterator[Any]:
    """Batches from a list/iterable or a zero-argument factory returning one."""
    yield from (batches() if callable(batches) else batches)
