"""Proxy models: the readable :class:`GPT`, its size presets and the Hugging Face adapter."""

from __future__ import annotations

from typing import Any

from mixlab.model.gpt import GPT, GPTConfig, config_params, count_params, flops_per_token
from mixlab.model.presets import list_presets, preset


def build_hf_model(config: Any, **kwargs: Any) -> Any:
    """See :func:`mixlab.model.hf.build_hf_model` (imports transformers only when called)."""
    from mixlab.model.hf import build_hf_model as _build

    return _build(config, **kwargs)


__all__ = [
    "GPT",
    "GPTConfig",
    "build_hf_model",
    "config_params",
    "count_params",
    "flops_per_token",
    "list_presets",
    "preset",
]
