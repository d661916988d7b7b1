"""Learning-rate schedules as pure functions of the step (so resuming needs no scheduler state)."""

from __future__ import annotations

import math


def warmup_steps(warmup: float, total_steps: int) -> int:
    """``warmup`` is a fraction of ``total_steps`` when < 1, else a number of steps."""
    w = int(round(warmup * total_steps)) if warmup < 1 else int(warmup)
    return max(0, min(w, total_steps))


def lr_at(
    step: int,
    *,
    total_steps: int,
    lr: float,
    min_lr: float,
    warmup: int,
    schedule: str = "cosine",
    decay_frac: float = 0.2,
) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warmup to ``lr`` over ``warmup`` steps, then: ``cosine`` decays to ``min_lr`` at the last
    step (Loshchilov & Hutter 2017); ``wsd`` (warmup-stable-decay, Hu et al. 2024 MiniCPM) holds ``lr``
    and decays linearly to ``min_lr`` over the last ``decay_frac`` of the steps; ``constant`` holds ``lr``.
    """
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup - 1)
        p = min(1.0, (step - warmup) / span)
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))
    if schedule == "wsd":
        decay = max(1, int(round(decay_frac * total_steps)))
        start = max(warmup, total_steps - decay)
        if step < start:
            return lr
        p = min(1.0, (step - start + 1) / max(1, total_steps - start))
        return lr + (min_lr - lr) * p
    raise ValueError(f"unknown lr schedule {schedule!r}")
