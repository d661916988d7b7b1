"""A run's model: built from its config's spec, and loaded back from a run directory's newest checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mixlab.errors import ConfigError, DataError, TrainingError
from mixlab.model import GPT, GPTConfig, count_params, flops_per_token, preset
from mixlab.model.hf import build_hf_model  # transformers itself is imported only when an HF model is built
from mixlab.store.rundir import CONFIG, MODEL, RunArtifacts
from mixlab.train import checkpoint as ckpt_io
from mixlab.train.config import TrainConfig

log = logging.getLogger(__name__)


def build_model(spec: str | dict[str, Any], *, vocab_size: int, seq_len: int, seed: int) -> tuple[torch.nn.Module, dict]:
    """Model and its JSON description from a preset name, GPTConfig mapping or HF config mapping."""
    torch.manual_seed(seed)
    if isinstance(spec, dict) and "model_type" in spec:
        model = build_hf_model(spec, vocab_size=vocab_size)
        return model, {"hf": model.config.to_dict() | {"model_type": model.config.model_type}}
    if isinstance(spec, str):
        cfg = preset(spec, vocab_size=vocab_size)
    elif isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("preset", None)
        spec.setdefault("vocab_size", vocab_size)
        cfg = preset(name, **spec) if name else GPTConfig.from_dict(spec, where="train config: model")
    else:
        raise ConfigError(f"train config: model must be a preset name or a mapping, got {type(spec).__name__}")
    if cfg.vocab_size < vocab_size:
        raise ConfigError(f"train config: model vocab_size {cfg.vocab_size} is below the corpus's {vocab_size}")
    if cfg.block_size < seq_len:
        cfg.block_size = seq_len
    return GPT(cfg), {"gpt": cfg.to_dict()}


def model_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: the GPT's exact count (attention included), else ``6 * params``."""
    if isinstance(model, GPT):
        return flops_per_token(model.config, seq_len)
    return 6.0 * count_params(model)


def corpus_identity(corpus: Any) -> str:
    """Which corpus a run trains on, as part of its config hash: the resolved directory and the token
    counts per domain (so a re-prepared corpus with other counts never resumes an old run)."""
    root = getattr(corpus, "root", None)
    counts = corpus.token_counts() if hasattr(corpus, "token_counts") else {}
    return f"{Path(root).resolve() if root else id(corpus)}|{sorted(counts.items())}"


def load_trained_model(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, TrainConfig, int]:
    """The model of a run's newest checkpoint, the run's config and the checkpoint's step.

    ``model, cfg, step = load_trained_model("mixlab-workspace/runs/train-1a2b3c")``
    """
    artifacts = RunArtifacts(run_dir)
    root = artifacts.root
    desc = artifacts.model()
    if desc is None:
        raise TrainingError(f"{root}: not a run directory (no {MODEL}); give a run id or a run dir")
    cfg = TrainConfig.parse(artifacts.config(), where=str(root / CONFIG))
    candidates = ckpt_io.checkpoint_candidates(artifacts.checkpoints)
    if not candidates:
        raise TrainingError(f"{root}: the run has no checkpoint yet")
    if "gpt" in desc:
        model: torch.nn.Module = GPT(GPTConfig.from_dict(desc["gpt"], where=str(root / MODEL)))
    elif "hf" in desc:
        model = build_hf_model(desc["hf"])
    else:
        raise TrainingError(f"{root / MODEL}: unknown model description {sorted(desc)}")
    problems = []
    for ckpt in candidates:
        try:
            step = int(ckpt_io.read_state(ckpt)["step"])
            ckpt_io.load_model_weights(model, ckpt / "model.safetensors")
        except (TrainingError, DataError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{ckpt.name}: {exc}")
            log.warning("checkpoint %s is unusable (%s); trying an older one", ckpt, exc)
            continue
        return model.to(device).eval(), cfg, step
    raise TrainingError(f"{root}: no checkpoint can be read ({'; '.join(problems)})")


__all__ = ["build_model", "corpus_identity", "load_trained_model", "model_flops_per_token"]
