"""The optimizer every training loop in mixlab uses: the trainer's and those of the mixers that train
models themselves (DoReMi's reference and Group-DRO proxy), so a method's proxies are optimised
exactly as any other run. The model comes from :mod:`mixlab.train.models`, the device from
:mod:`mixlab.train.distributed`, the learning rate from :mod:`mixlab.train.lr`."""

from __future__ import annotations

from typing import Any

import torch


def build_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    device: torch.device | None = None,
) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices (parameters of two or more dimensions) and none on the
    biases and norm gains (the GPT-2/nanoGPT recipe); frozen parameters are left out. On a CUDA
    ``device`` the fused kernel is used."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = {"lr": lr, "betas": betas}
    if device is not None and device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)
