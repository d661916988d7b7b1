"""Named model sizes, read from ``presets.yaml`` (data, not code)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml

from mixlab.errors import ConfigError
from mixlab.model.gpt import GPTConfig


@functools.cache
def _load() -> dict[str, dict[str, Any]]:
    text = resources.files("mixlab.model").joinpath("presets.yaml").read_text()
    data = yaml.safe_load(text)
    return {str(k): dict(v) for k, v in data.items()}


def list_presets() -> dict[str, str]:
    """Preset name -> one-line description, smallest first."""
    return {name: spec.get("description", "") for name, spec in _load().items()}


def preset(name: str, **overrides: Any) -> GPTConfig:
    """The :class:`GPTConfig` of a named preset, e.g. ``preset("tiny-1m", vocab_size=8192)``."""
    presets = _load()
    if name not in presets:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(presets)}")
    spec = {k: v for k, v in presets[name].items() if k != "description"}
    spec.update(overrides)
    return GPTConfig.from_dict(spec, where=f"preset {name!r}")
