"""What a benchmark compares: the method list (with ``NAME[key=value,...]`` variants), the track and
the target set, and :class:`BenchConfig`, whose unset fields come from the named scale."""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mixlab.data.targets import DEFAULT_TARGET
from mixlab.errors import ConfigError
from mixlab.mixers import REGISTRY
from mixlab.pipeline.bench.scales import ScaleSpec, load_scale

TIKMIX_MIRROR = "tikmix-d[objective=mirror,budget=fixed,initial=uniform,stages=4]"
"""TiKMiX-D's exponentiated-gradient variant (:mod:`mixlab.mixers.tikmix_d`, ``objective="mirror"``):
the uniform mixture for the first quarter of the run, then decisions at 1/4, 1/2 and 3/4, each from
one Group Influence measurement of a fixed size, moving the mixture by a Hedge step scaled by the
measurement's split-half reliability."""

TIKMIX_MIRROR_EARLY = (
    "tikmix-d[objective=mirror,budget=fixed,initial=uniform,stages=4,first_boundary=0.03,search_steps=8]"
)
"""The mirror variant with its first decision at 3% of the run (the rest in three equal stages) and a
measured step: each Hedge step's size is the one of a few candidates whose 8-step continuation of the
live model lowered the weighted target loss most. Less of the run is spent on the uniform start (the
plan ceiling, ``experiments/plan_ceiling.py``, prices that start), at 15% of RegMix's choosing FLOPs.
Its risk is measured too: a decision inside the target's warm-up reads a transient state of the young
model, and the 8-step continuation rewards a large step on it (vim's ``pattern.txt``: scripture 0.5-0.8
from step 6 where the target wants code; worse than the plain mirror row there), so it is a row to
compare, not the recommended setting."""

DEFAULT_METHODS: tuple[str, ...] = (
    "uniform",
    "natural",
    "unimax",
    "doremi",
    "regmix",
    "bimix",
    "bimix-entropy-ce",
    "tikmix-d",
    TIKMIX_MIRROR,
    TIKMIX_MIRROR_EARLY,
    "tikmix-m",
)
"""What ``mixlab bench`` runs when no ``--methods`` are given (the paper's TiKMiX-D and its two mirror
variants are separate rows)."""

TRACKS = ("target", "balanced")
"""``target``: the weighted loss of the target set; ``balanced``: the mean over training domains."""


_SPEC = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$")


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"tikmix-d[pareto=false,gamma=0.5]"`` -> ``("tikmix-d", {"pareto": False, "gamma": 0.5})``.

    A variant of a method is benchmarked as its own row under the full spec; values are read as YAML
    scalars (numbers, true/false, strings).
    """
    m = _SPEC.match(spec)
    if not m:
        raise ConfigError(f"bench: cannot read method {spec!r}; write NAME or NAME[key=value,...]")
    name, inner = m.group(1), m.group(2)
    params: dict[str, Any] = {}
    for item in (inner or "").split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"bench: method {spec!r}: {item.strip()!r} is not key=value")
        params[key.strip()] = yaml.safe_load(value.strip())
    return name, params


def registry_name(spec: str) -> str:
    """The method a spec runs: ``"tikmix-d"`` for ``"tikmix-d[pareto=false]"``."""
    return parse_method_spec(spec)[0]


def split_methods(text: str) -> list[str]:
    """Split a comma-separated method list, keeping commas inside ``[...]`` with their method."""
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i.strip() for i in items if i.strip()]


class BenchConfig(BaseModel):
    """Settings of one benchmark; anything left ``None`` comes from the scale."""

    model_config = ConfigDict(extra="forbid")

    corpus: str | None = None
    """Prepared corpus directory (``mixlab prepare``); None = the built-in corpus."""
    methods: list[str] | None = None
    """Methods to compare (registry names); None = :data:`DEFAULT_METHODS`."""
    scale: str = "default"
    """Named size from ``bench_scales.yaml``: ``tiny``, ``default`` or ``gpu``."""
    seeds: int | None = Field(None, ge=1)
    """Target runs per method (overrides the scale)."""
    seed: int = 0
    """Base seed: method choices use it, target runs use ``seed .. seed + seeds - 1``."""
    target_model: str | None = None
    """Target model preset (overrides the scale)."""
    target_tokens: int | None = Field(None, gt=0)
    """Target token budget per run (overrides the scale)."""
    proxy_model: str | None = None
    """Proxy model preset (overrides the scale)."""
    proxy_tokens: int | None = Field(None, gt=0)
    """Tokens per proxy run (overrides the scale)."""
    track: Literal["target", "balanced"] = "target"
    """``target``: ``target_loss`` is the weighted loss of ``targets``; ``balanced``: the mean over domains."""
    targets: list[str | dict[str, Any]] | None = None
    """The target set (``PATH[=WEIGHT]``, ``builtin:pydoc``, ``domain:NAME`` or mappings); None =
    ``target_domains`` when given, else the built-in target. Evaluated in every target run."""
    target_domains: list[str] | None = None
    """Target track: training domains (validation splits, equal weights) as the target set."""
    oracle_candidates: int | None = Field(None, ge=0)
    """Static mixtures the oracle chooses from (overrides the scale; 0 = no oracle row)."""
    controls: bool | None = None
    """Control rows for dynamic methods (overrides the scale)."""
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method parameter overrides, merged over the scale's."""
    max_epochs: float | None = Field(None, gt=0)
    """Availability cap given to methods and target runs (passes over a domain); None = no cap."""
    workspace: str | None = None
    """Workspace for the run store, proxy and target runs (default: mixlab's default workspace)."""
    device: str = "auto"
    """Torch device for every run: ``auto``, ``cpu``, ``cuda``."""
    progress: bool = False
    """Show the trainers' progress bars."""

    def resolved(self) -> tuple[ScaleSpec, list[str]]:
        """The effective scale (with this config's overrides applied) and method list."""
        spec = load_scale(self.scale)
        upd_p: dict[str, Any] = {}
        upd_t: dict[str, Any] = {}
        if self.proxy_model:
            upd_p["model"] = self.proxy_model
        if self.proxy_tokens:
            upd_p["tokens"] = self.proxy_tokens
        if self.target_model:
            upd_t["model"] = self.target_model
        if self.target_tokens:
            upd_t["tokens"] = self.target_tokens
        methods_params = {k: dict(v) for k, v in spec.methods.items()}
        for name, params in self.method_params.items():
            methods_params.setdefault(name, {}).update(params)
        spec = spec.model_copy(
            update={
                "proxy": spec.proxy.model_copy(update=upd_p),
                "target": spec.target.model_copy(update=upd_t),
                "seeds": self.seeds or spec.seeds,
                "methods": methods_params,
                "oracle_candidates": spec.oracle_candidates if self.oracle_candidates is None
                else self.oracle_candidates,
                "controls": spec.controls if self.controls is None else self.controls,
            }
        )
        methods = list(self.methods) if self.methods else list(DEFAULT_METHODS)
        if "uniform" not in methods:  # every row is paired against uniform
            methods.insert(0, "uniform")
        unknown = [m for m in methods if registry_name(m) not in REGISTRY]
        if unknown:
            raise ConfigError(f"bench: unknown method(s) {unknown}; choose from {sorted(REGISTRY)}")
        if len(set(methods)) != len(methods):
            raise ConfigError(f"bench: a method is listed twice in {methods}")
        if self.targets and self.target_domains:
            raise ConfigError("bench: give targets or target_domains, not both")
        return spec, methods

    def target_specs(self) -> list[Any]:
        """The target set evaluated in every target run (the target track's objective)."""
        if self.targets:
            return list(self.targets)
        if self.target_domains:
            return [f"domain:{d}" for d in self.target_domains]
        return [DEFAULT_TARGET]

