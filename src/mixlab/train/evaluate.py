"""Per-domain validation loss on fixed batches.

The same windows of each domain's validation stream are used at every evaluation (and by every
run with the same ``seed``), so curves of different runs and steps are comparable and the noise of
the estimate does not change from one evaluation to the next.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mixlab.errors import DataError


def _windows_of(toks: Any, name: str, what: str, *, seq_len: int, want: int, rng: np.random.Generator) -> torch.Tensor:
    n_windows = (len(toks) - 1) // seq_len
    if n_windows < 1:
        raise DataError(
            f"{name} has {len(toks)} {what} tokens, fewer than one evaluation window of "
            f"{seq_len + 1}; lower seq_len or give it more text"
        )
    pick = np.sort(rng.choice(n_windows, size=min(want, n_windows), replace=False))
    rows = np.stack([np.asarray(toks[i * seq_len : i * seq_len + seq_len + 1], dtype=np.int64) for i in pick])
    return torch.from_numpy(rows)


def validation_windows(
    corpus: Any,
    *,
    seq_len: int,
    batches: int,
    batch_size: int,
    seed: int = 0,
    split: str = "val",
    extra: Mapping[str, Any] | None = None,
    extra_batches: int | None = None,
) -> dict[str, torch.Tensor]:
    """``{domain: LongTensor [N, seq_len + 1]}``: N = ``batches * batch_size`` windows per domain.

    Windows are non-overlapping ``seq_len + 1`` token slices of the domain's validation stream, chosen
    without replacement with a generator seeded by ``(seed, domain index)``; a domain with fewer
    windows than asked uses all it has (at least one is required). ``extra`` maps more names to token
    arrays (evaluation-only targets, ``mixlab.data.targets``), windowed the same way but with
    ``extra_batches`` batches (default ``batches``) and a generator seeded by the name alone: every run
    evaluates a target on the same windows whatever its seed, so the difference between two runs'
    target losses is the runs' difference, not a different sample of the target (adding a target
    changes no domain's windows either).
    """
    out: dict[str, torch.Tensor] = {}
    want = batches * batch_size
    for k, domain in enumerate(corpus.domains):
        rng = np.random.default_rng([seed, k, 0xE7A1])
        out[domain] = _windows_of(corpus.tokens(domain, split), f"domain {domain!r}", split, seq_len=seq_len,
                                  want=want, rng=rng)
    want_extra = (extra_batches or batches) * batch_size
    for name, toks in (extra or {}).items():
        rng = np.random.default_rng([zlib.crc32(name.encode("utf-8")), 0xE7A1])
        out[name] = _windows_of(toks, f"{name!r}", "evaluation", seq_len=seq_len, want=want_extra, rng=rng)
    return out


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def loss_on_windows(
    model: torch.nn.Module,
    windows: dict[str, torch.Tensor],
    *,
    batch_size: int,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Mean token loss of ``model`` on each domain's windows (model left in its previous mode)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    result: dict[str, float] = {}
    try:
        for domain, rows in windows.items():
            total = torch.zeros((), dtype=torch.float64, device=dev)
            count = 0
            for lo in range(0, rows.shape[0], batch_size):
                chunk = rows[lo : lo + batch_size].to(dev, non_blocking=True)
                x, y = chunk[:, :-1], chunk[:, 1:]  # [B, T] each
                with _autocast(dev, amp_dtype):
                    losses = model.token_losses(x, y)  # [B, T]
                total += losses.double().sum()
                count += losses.numel()
            result[domain] = float(total.item() / count)
    finally:
        model.train(was_training)
    return result


def evaluate_domains(
    model: torch.nn.Module,
    corpus: Any,
    *,
    seq_len: int,
    batches: int = 4,
    batch_size: int = 8,
    seed: int = 0,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Validation loss per domain of ``corpus`` on fixed batches, under ``torch.inference_mode``.

    ``evaluate_domains(model, Corpus.open("corpus"), seq_len=128, batches=4, batch_size=8)``
    returns ``{"web": 3.1, "code": 2.4, ...}`` (mean nats per token).
    """
    windows = validation_windows(corpus, seq_len=seq_len, batches=batches, batch_size=batch_size, seed=seed)
    return loss_on_windows(model, windows, batch_size=batch_size, device=device, amp_dtype=amp_dtype)
