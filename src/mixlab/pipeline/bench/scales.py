"""The named sizes of the benchmark: the settings schema and ``bench_scales.yaml`` (a data file next to
the :mod:`mixlab.pipeline` package, edited by hand), read once per process."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mixlab.errors import ConfigError
from mixlab.utils.config import parse_config


class ModelSettings(BaseModel):
    """How one kind of model (proxy or target) is trained in a bench scale."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """GPT preset name (``mixlab.model.list_presets()``)."""
    seq_len: int = Field(128, ge=8)
    """Tokens per training sequence."""
    batch_size: int = Field(16, ge=1)
    """Sequences per optimizer step."""
    tokens: int = Field(..., gt=0)
    """Training tokens per run."""
    lr: float = Field(2e-3, gt=0)
    """Peak AdamW learning rate (warmup then cosine decay)."""
    eval_batches: int = Field(4, ge=1)
    """Validation batches per domain at each evaluation."""
    warmup: float | None = Field(None, ge=0)
    """Linear LR warmup (TrainConfig ``warmup``: a fraction of the steps when < 1, else steps);
    None = the trainer's default."""


class ScaleSpec(BaseModel):
    """One named size of the benchmark (an entry of ``bench_scales.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    """One line shown in ``mixlab bench --help``."""
    seeds: int = Field(3, ge=1)
    """Target runs per method (seeds 0..seeds-1 offset by the bench seed)."""
    proxy: ModelSettings
    """Proxy models trained by methods while choosing."""
    target: ModelSettings
    """The model each chosen mixture is judged by."""
    dynamic: dict[str, Any] = Field(default_factory=dict)
    """Extra settings for the dynamic pipeline (e.g. ``stages``)."""
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method parameters for ``get_mixer(name, **params)``."""
    proxy_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method extra :class:`~mixlab.train.LocalProxyRunner` keywords (e.g. ``eval_interval``)."""
    oracle_candidates: int = Field(0, ge=0)
    """Static mixtures the oracle row chooses from (0 = no oracle row)."""
    controls: bool = False
    """Add the two control rows of every dynamic method."""


@cache
def _scales() -> dict[str, dict[str, Any]]:
    text = resources.files("mixlab.pipeline").joinpath("bench_scales.yaml").read_text()
    return {str(k): dict(v) for k, v in yaml.safe_load(text).items()}


def list_scales() -> dict[str, str]:
    """Scale name -> description."""
    return {k: str(v.get("description", "")) for k, v in _scales().items()}


def load_scale(name: str) -> ScaleSpec:
    """The :class:`ScaleSpec` named ``name`` (``tiny``, ``default``, ``gpu``)."""
    scales = _scales()
    if name not in scales:
        raise ConfigError(f"unknown bench scale {name!r}; choose one of {sorted(scales)}")
    return parse_config(ScaleSpec, scales[name], f"bench_scales.yaml: scale {name!r}")

