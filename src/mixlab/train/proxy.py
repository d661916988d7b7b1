"""Proxy runs for mixing methods: :class:`LocalProxyRunner` implements ``ProxyRunner``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mixlab.data.corpus import Corpus
from mixlab.mixture import Mixture
from mixlab.proxy import ProxyResult
from mixlab.store import RunStore, default_workspace
from mixlab.train.config import TrainConfig
from mixlab.train.models import corpus_identity
from mixlab.train.trainer import Trainer

log = logging.getLogger(__name__)


class LocalProxyRunner:
    """Trains small proxy models in this process, one per mixture, recording each in the store.

    ``LocalProxyRunner(corpus, model="tiny-1m", seq_len=128, batch_size=8, workspace="ws")``;
    ``runner.train(mixture, tokens=2_000_000)`` returns a :class:`~mixlab.mixers.base.ProxyResult`
    with the per-domain validation curve. A proxy whose config (mixture, model, budget, seed, ...)
    matches a finished run in the store is read back from the store instead of being retrained.

    ``corpus`` is a prepared corpus path or an opened ``Corpus``; any other :class:`TrainConfig`
    field (``lr``, ``warmup``, ``lr_schedule``, ``eval_batches``, ``device``, ...) can be passed as a
    keyword and applies to every proxy.
    """

    def __init__(
        self,
        corpus: Any,
        *,
        model: str | dict[str, Any] = "tiny-1m",
        seq_len: int = 128,
        batch_size: int = 8,
        lr: float = 1e-3,
        workspace: str | Path | None = None,
        store: Any = None,
        kind: str = "proxy",
        method: str | None = None,
        progress: bool = False,
        **train_kwargs: Any,
    ) -> None:
        self.corpus = corpus
        self.model = model
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.lr = lr
        self.workspace = workspace
        self.store = store
        self.kind = kind
        self.method = method
        self.progress = progress
        self.train_kwargs = train_kwargs

    def _corpus(self) -> Any:
        if isinstance(self.corpus, (str, Path)):
            self.corpus = Corpus.open(self.corpus)
        return self.corpus

    def _store(self) -> Any:
        if self.store is None:
            self.store = RunStore(Path(self.workspace) if self.workspace else default_workspace())
        return self.store

    def config_for(
        self, mixture: Mixture, *, tokens: int, seed: int = 0, eval_every: int | None = None, name: str | None = None
    ) -> TrainConfig:
        """The :class:`TrainConfig` of the proxy run for ``mixture``."""
        corpus = self._corpus()
        data = {
            "corpus": str(Path(corpus.root).resolve()) if hasattr(corpus, "root") else None,
            "model": self.model,
            "mixture": mixture.to_dict() if isinstance(mixture, Mixture) else dict(mixture),
            "tokens": int(tokens),
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": seed,
            "eval_interval": eval_every,
            "workspace": str(self.workspace) if self.workspace else None,
            "run_name": name,
            "kind": self.kind,
            "method": self.method,
            "progress": self.progress,
        }
        data.update(self.train_kwargs)
        return TrainConfig.parse(data, where="proxy run")

    def train(
        self,
        mixture: Mixture,
        *,
        tokens: int,
        seed: int = 0,
        eval_every: int | None = None,
        name: str | None = None,
    ) -> ProxyResult:
        """Train (or reuse) the proxy for ``mixture``; ``eval_every`` counts optimizer steps."""
        mixture = mixture if isinstance(mixture, Mixture) else Mixture(mixture)
        cfg = self.config_for(mixture, tokens=tokens, seed=seed, eval_every=eval_every, name=name)
        corpus = self._corpus()
        store = self._store()
        done = store.find_runs(config_hash=cfg.config_hash(corpus_identity(corpus)), status="finished")
        for run in done:
            curve = store.curve(run["id"])
            if curve and run.get("tokens") is not None:
                log.info("reusing finished proxy run %s for %s", run["id"], mixture)
                return ProxyResult(
                    mixture=mixture, curve=curve, tokens=int(run["tokens"]), flops=float(run["flops"] or 0.0),
                    seconds=float(run["seconds"] or 0.0), run_id=run["id"],
                )
        result = Trainer(cfg, store, corpus=corpus).fit()
        return ProxyResult(
            mixture=mixture, curve=result.curve, tokens=result.tokens, flops=result.flops, seconds=result.seconds,
            run_id=result.run_id,
        )
