"""Mixing methods behind one interface (:class:`~mixlab.mixers.base.Mixer`).

``REGISTRY`` maps a method name to ``"module:Class"``; classes are imported only when asked for,
so importing mixlab stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from mixlab.errors import ConfigError
from mixlab.mixers.base import Mixer, MixingContext
from mixlab.proxy import ComputeLedger, ProxyResult, ProxyRunner

REGISTRY: dict[str, str] = {
    "uniform": "mixlab.mixers.baselines:UniformMixer",
    "natural": "mixlab.mixers.baselines:NaturalMixer",
    "unimax": "mixlab.mixers.baselines:UniMaxMixer",
    "doremi": "mixlab.mixers.doremi:DoReMiMixer",
    "regmix": "mixlab.mixers.regmix:RegMixMixer",
    "tikmix-d": "mixlab.mixers.tikmix_d:TiKMiXDMixer",
    "tikmix-m": "mixlab.mixers.tikmix_m:TiKMiXMMixer",
    "bimix": "mixlab.mixers.bimix:BiMixMixer",
    "bimix-entropy-se": "mixlab.mixers.bimix_entropy:EntropySEMixer",
    "bimix-entropy-ce": "mixlab.mixers.bimix_entropy:EntropyCEMixer",
    "bimix-entropy-je": "mixlab.mixers.bimix_entropy:EntropyJEMixer",
    "bimix-entropy-vne": "mixlab.mixers.bimix_entropy:EntropyVNEMixer",
    "dml": "mixlab.mixers.dml:DataMixingLawMixer",
}


def mixer_class(name: str) -> type[Mixer]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown mixing method {name!r}; choose one of {sorted(REGISTRY)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_mixer(name: str, **params: Any) -> Mixer:
    """Build a mixer by registry name, e.g. ``get_mixer("tikmix-d", gamma=0.5)``."""
    cls = mixer_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"method {name!r}: {exc}") from None


__all__ = ["REGISTRY", "ComputeLedger", "Mixer", "MixingContext", "ProxyResult", "ProxyRunner", "get_mixer", "mixer_class"]
