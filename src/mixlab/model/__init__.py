"""Proxy models: the readable :class:`GPT`, its size presets and the Hugging Face adapter."""

from __future__ import annotations

from mixlab.model.gpt import GPT, GPTConfig, config_params, count_params, flops_per_token
from mixlab.model.hf import build_hf_model
from mixlab.model.presets import list_presets, preset

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
