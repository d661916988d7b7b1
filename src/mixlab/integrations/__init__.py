"""Where mixlab meets other training stacks.

:mod:`mixlab.integrations.export` writes mixtures and schedules as Megatron-LM/NeMo, MosaicML,
OLMo and Hugging Face blends (``mixlab export``); :mod:`mixlab.integrations.hf` holds the
``datasets`` mixture dataset and the ``transformers`` Trainer callback. Both are imported on use,
so ``import mixlab.integrations`` pulls in neither transformers nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EXPORT_FORMATS": "mixlab.integrations.export",
    "ExportFormat": "mixlab.integrations.export",
    "FORMATS": "mixlab.integrations.export",
    "register_format": "mixlab.integrations.export",
    "export_mixture": "mixlab.integrations.export",
    "parse_prefixes": "mixlab.integrations.export",
    "write_export": "mixlab.integrations.export",
    "MixtureStream": "mixlab.integrations.hf",
    "MixtureScheduleCallback": "mixlab.integrations.hf",
    "LiveState": "mixlab.integrations.hf",
    "mixture_dataset": "mixlab.integrations.hf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mixlab.integrations' has no attribute {name!r}")
