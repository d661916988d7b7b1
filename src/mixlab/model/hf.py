"""Build any Hugging Face ``transformers`` causal LM from a config, with no weight download.

The wrapper gives it the mixlab model interface (``forward(input_ids, labels=None)`` and
``token_losses``), so the trainer, the evaluator and the influence code treat it exactly like
:class:`~mixlab.model.gpt.GPT`: users can pick proxies with the architecture they train at scale
(Llama, Qwen2, GPT-NeoX, ...). Labels are already shifted by the mixlab sampler, so the loss is
computed here from the logits instead of by the HF model (which would shift a second time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixlab.errors import ConfigError
from mixlab.model.gpt import IGNORE_INDEX


class HFCausalLM(nn.Module):
    """A ``transformers`` ``AutoModelForCausalLM`` behind the mixlab model interface."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf = hf_model
        self.config = hf_model.config

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids, use_cache=False).logits  # [B, T, V]

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(input_ids)
        if labels is None:
            return logits
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    def token_losses(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.logits(input_ids)
        losses = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        )
        return losses.view(labels.shape)


def hf_config(config: Any, *, vocab_size: int | None = None) -> Any:
    """A ``transformers.PretrainedConfig`` from one, or from a mapping with ``model_type``."""
    try:
        import transformers
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("Hugging Face models need `pip install mixlab[hf]` (transformers)") from None
    if isinstance(config, transformers.PretrainedConfig):
        cfg = config
    elif isinstance(config, Mapping):
        spec = dict(config)
        model_type = spec.pop("model_type", None)
        if not model_type:
            raise ConfigError("hf model config needs a 'model_type' (e.g. llama, qwen2, gpt_neox, gpt2)")
        try:
            cfg = transformers.AutoConfig.for_model(model_type, **spec)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"hf model config: {exc}") from None
    else:
        raise ConfigError(f"hf model config must be a mapping or a PretrainedConfig, got {type(config).__name__}")
    if vocab_size is not None:
        cfg.vocab_size = int(vocab_size)
    return cfg


def build_hf_model(config: Any, *, vocab_size: int | None = None, seed: int | None = None) -> HFCausalLM:
    """Randomly initialised causal LM from ``config`` (nothing is downloaded).

    ``build_hf_model({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2}, vocab_size=512)``
    """
    import transformers

    cfg = hf_config(config, vocab_size=vocab_size)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    except ValueError as exc:
        raise ConfigError(f"hf model config: {exc}") from None
    return HFCausalLM(model)
