"""The dynamic stage-by-stage pipeline behind ``mixlab run`` (TiKMiX's schedule, any mixer).

The token budget is split into stages. The default is the TiKMiX paper's plan: stage 0 trains on the
natural mixture for the first half, and the mixture is re-chosen once, at half the budget. The plan is
configurable: ``stages`` equal stages, ``first_boundary`` (an earlier first decision, the remaining
boundaries evenly spaced after it) or explicit ``boundaries``. At every boundary the pipeline checkpoints the run, hands the live model to the chosen
mixer (TiKMiX-D/-M measure Group Influence on it; a static mixer may run proxies), and continues the
*same* model and optimizer on the proposed mixture. The boundary itself (random states, the mixer's
proposal, the record) is the stage engine's (:mod:`mixlab.pipeline.stages`), shared with the Hugging
Face callback. Every stage's :class:`~mixlab.pipeline.stages.StageRecord` (mixture, influence matrix
with its split-half stability and every measurement of its budget, the solver's status and message,
losses, compute, timings) is written to ``<run_dir>/stages/stage_<k>/`` and to the run store.

Resume: the trainer resumes from its latest checkpoint; a boundary whose record exists is replayed
from the record (never re-decided), and one without a record is decided again from the checkpoint at
that boundary, which gives the same answer because influence batches are drawn from a fixed seed.
So a killed pipeline ends with the same schedule as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mixlab.data.corpus import Corpus
from mixlab.data.targets import load_targets, resolve_target_paths
from mixlab.errors import ConfigError, MixlabError
from mixlab.mixers import ComputeLedger, MixingContext, get_mixer
from mixlab.mixers.base import Proposal
from mixlab.mixture import Mixture, MixtureSpec, Schedule
from mixlab.pipeline.stages import LiveState, StageEngine, StageRecord, warn_decisions_in_warmup
from mixlab.train import LocalProxyRunner, TrainConfig, Trainer
from mixlab.train.lr import warmup_steps
from mixlab.utils.config import parse_config
from mixlab.utils.io import atomic_write_json, read_json, read_yaml

log = logging.getLogger(__name__)


PLAN_KEYS = ("stages", "first_boundary", "initial")
"""The stage-plan settings of :class:`PipelineConfig` (a bench variant may name them)."""


class PipelineConfig(BaseModel):
    """A dynamic-mixture run: the training run plus how and when its mixture is re-chosen."""

    model_config = ConfigDict(extra="forbid")

    train: dict[str, Any]
    """Settings of the run itself, exactly as for ``mixlab train`` (:class:`~mixlab.train.TrainConfig`);
    its ``mixture`` is ignored in favour of ``initial``."""
    mixer: str = "tikmix-d"
    """Method that chooses each later stage's mixture (a name from ``mixlab.mixers.REGISTRY``)."""
    mixer_params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the mixer (e.g. ``{"gamma": 0.5, "tokens_per_domain": 65536}``)."""
    stages: int = Field(2, ge=1)
    """Number of stages (ignored when ``boundaries`` is given). The default 2 with no
    ``first_boundary`` is the TiKMiX paper's plan: one change of mixture, at half the budget."""
    first_boundary: float | None = Field(None, gt=0, lt=1)
    """Fraction of the budget at which stage 1 starts; the later boundaries are spaced evenly over the
    rest (e.g. ``stages: 3, first_boundary: 0.2`` gives 0.2 and 0.6). None = equal stages."""
    boundaries: list[float] | None = None
    """Stage starts after the first, as fractions of the budget in (0, 1), or as optimizer steps
    (values >= 1), increasing."""
    initial: str | dict[str, float] = "natural"
    """Stage-0 mixture: ``natural``, ``uniform``, another static mixer's name, or domain weights."""
    max_epochs: float | dict[str, float] | None = None
    """Availability cap handed to the mixer (at most this many passes over a domain's tokens)."""
    lower: dict[str, float] | None = None
    """Per-domain lower bounds on the weights."""
    upper: dict[str, float] | None = None
    """Per-domain upper bounds on the weights."""
    target_domains: list[str] | None = None
    """Validation domains whose loss the mixture should lower (default: all)."""
    target_weights: dict[str, float] | None = None
    """Weights of the target domains (default: equal)."""
    targets: list[str | dict[str, Any]] | None = None
    """A target set (``mixlab.data.targets``: ``PATH[=WEIGHT]``, ``builtin:pydoc``, ``domain:NAME`` or
    mappings) in place of ``target_domains``/``target_weights``: evaluated in the run (never trained on)
    and handed to the mixer as its targets."""
    proxy: dict[str, Any] | None = None
    """Settings of the proxy runner for mixers that train proxies (``LocalProxyRunner`` keywords)."""

    @model_validator(mode="after")
    def _check_boundaries(self) -> PipelineConfig:
        b = self.boundaries
        if b is not None:
            if any(x <= 0 for x in b) or any(y <= x for x, y in zip(b, b[1:], strict=False)):
                raise ValueError("boundaries must be positive and strictly increasing")
            if any(x < 1 for x in b) and any(x >= 1 for x in b):
                raise ValueError("boundaries must be all fractions in (0, 1) or all step numbers")
            if self.first_boundary is not None:
                raise ValueError("give either boundaries or first_boundary, not both")
        if self.first_boundary is not None and self.stages < 2:
            raise ValueError("first_boundary needs stages >= 2")
        if self.targets and (self.target_domains or self.target_weights):
            raise ValueError("give targets or target_domains/target_weights, not both")
        return self

    @classmethod
    def parse(cls, data: Any, *, where: str = "pipeline config") -> PipelineConfig:
        return parse_config(cls, data, where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PipelineConfig:
        p = Path(path)
        cfg = cls.parse(read_yaml(p), where=str(p))
        train = dict(cfg.train)
        for key in ("corpus", "workspace", "out_dir"):
            value = train.get(key)
            if value and not Path(value).is_absolute():
                train[key] = str(p.parent / value)
        targets = resolve_target_paths(cfg.targets, p.parent) if cfg.targets else cfg.targets
        return cfg.model_copy(update={"train": train, "targets": targets})

    def boundary_steps(self, total_steps: int) -> list[int]:
        """Optimizer steps at which stages 1, 2, ... start."""
        if self.boundaries is None and self.first_boundary is not None:
            f, n = self.first_boundary, self.stages
            raw = [round(total_steps * (f + (1 - f) * k / (n - 1))) for k in range(n - 1)]
        elif self.boundaries is None:
            raw = [round(total_steps * k / self.stages) for k in range(1, self.stages)]
        elif self.boundaries[0] < 1:
            raw = [round(total_steps * f) for f in self.boundaries]
        else:
            raw = [int(x) for x in self.boundaries]
        steps = sorted({s for s in raw if 0 < s < total_steps})
        if len(steps) != len(raw):
            log.warning("some stage boundaries fell outside (0, %d) or coincided and were dropped", total_steps)
        return steps


@dataclass
class PipelineResult:
    run_id: str
    run_dir: Path
    schedule: Schedule
    stages: list[StageRecord]
    curve: dict[int, dict[str, float]]
    compute: ComputeLedger
    tokens: int
    flops: float
    seconds: float
    end_domain_counts: dict[str, int]

    @property
    def final(self) -> dict[str, float]:
        return self.curve[max(self.curve)] if self.curve else {}

    def stage_domain_counts(self) -> list[dict[str, int]]:
        """Sequences drawn per domain within each stage (this rank), from the cumulative counts the
        records hold at each boundary and at the end."""
        marks = [r.domain_counts or {} for r in self.stages[1:]] + [self.end_domain_counts]
        out, prev = [], dict.fromkeys(self.end_domain_counts, 0)
        for cur in marks:
            out.append({d: int(cur[d]) - int(prev.get(d, 0)) for d in cur})
            prev = cur
        return out


def _initial_mixture(cfg: PipelineConfig, ctx: MixingContext) -> Mixture:
    spec = cfg.initial
    if isinstance(spec, dict):
        return Mixture(spec)
    if spec == "natural":
        return ctx.natural()
    if spec == "uniform":
        return Mixture.uniform(ctx.domains)
    mixer = get_mixer(spec)
    if mixer.dynamic:
        raise ConfigError(f"pipeline initial={spec!r}: a dynamic method cannot choose stage 0 (no model yet)")
    return Proposal.of(mixer.propose(ctx), mixer=mixer).stage_mixture(f"pipeline initial={spec!r}")


class DynamicPipeline:
    """Runs one dynamic-mixture training run; ``DynamicPipeline(cfg).run()``."""

    def __init__(self, config: PipelineConfig, *, store: Any = None, corpus: Any = None) -> None:
        self.config = config
        self.store = store
        self.corpus = corpus
        self.mixer = get_mixer(config.mixer, **config.mixer_params)
        self.compute = ComputeLedger()
        self.target_set: Any = None

    def _open_corpus(self) -> Any:
        if self.corpus is not None:
            return self.corpus
        path = self.config.train.get("corpus")
        if not path:
            raise ConfigError("pipeline config: train.corpus is required (a prepared corpus directory)")
        return Corpus.open(path)

    def _target_set(self, corpus: Any) -> Any:
        if self.target_set is None and self.config.targets:
            self.target_set = load_targets(corpus, self.config.targets)
        return self.target_set

    def _context(self, corpus: Any, total_tokens: int, **kw: Any) -> MixingContext:
        cfg = self.config
        ts = self._target_set(corpus)
        targets = ts.context_fields() if ts is not None else {
            "target_domains": cfg.target_domains, "target_weights": cfg.target_weights}
        return MixingContext(
            domains=list(corpus.domains),
            available_tokens=corpus.token_counts(),
            total_tokens=total_tokens,
            max_epochs=cfg.max_epochs,
            lower=cfg.lower,
            upper=cfg.upper,
            **targets,
            seed=int(cfg.train.get("seed", 0)),
            corpus=corpus,
            compute=self.compute,
            device=str(cfg.train.get("device", "auto")),
            **kw,
        )

    def _proxy_runner(self, corpus: Any, train_cfg: Any) -> Any:
        params = {"seq_len": train_cfg.seq_len, "batch_size": train_cfg.batch_size,
                  "workspace": train_cfg.workspace, "store": self.store, "targets": list(train_cfg.targets)
                  } | (self.config.proxy or {})
        return LocalProxyRunner(corpus, **params)

    def run(self) -> PipelineResult:
        cfg = self.config
        corpus = self._open_corpus()
        extra: dict[str, Any] = {"mixture": None}
        if cfg.targets:
            extra["targets"] = list(cfg.targets)
        base = TrainConfig.parse(dict(cfg.train) | extra, where="pipeline config: train")
        initial_ctx = self._context(corpus, base.tokens, proxy=None)
        if cfg.initial not in ("natural", "uniform") and not isinstance(cfg.initial, dict):
            initial_ctx.proxy = self._proxy_runner(corpus, base)
        initial = _initial_mixture(cfg, initial_ctx)
        train_cfg = base.model_copy(update={
            "mixture": MixtureSpec.parse(initial), "kind": "pipeline", "method": cfg.mixer,
        })
        trainer = Trainer(train_cfg, self.store, corpus=corpus)
        try:
            return self._run_stages(trainer, corpus, initial)
        finally:
            trainer.close()

    def _run_stages(self, trainer: Any, corpus: Any, initial: Mixture) -> PipelineResult:
        cfg = self.config
        run_dir = Path(trainer.run_dir)
        stages_dir = run_dir / "stages"
        boundaries = cfg.boundary_steps(trainer.total_steps)
        warn_decisions_in_warmup(boundaries, warmup_steps(trainer.config.warmup, trainer.total_steps), trainer.total_steps)
        atomic_write_json(run_dir / "pipeline.json", cfg.model_dump(mode="json"))
        ledger_path = run_dir / "choose_compute.json"
        if ledger_path.is_file():
            saved = read_json(ledger_path)
            self.compute = ComputeLedger(**{k: saved[k] for k in ("flops", "tokens", "seconds")})
        engine = StageEngine(self.mixer, method=cfg.mixer, stages_dir=stages_dir)
        engine.given(0, 0, initial, method=cfg.initial if isinstance(cfg.initial, str) else "given")
        proxy = None
        for k, boundary in enumerate(boundaries, start=1):
            trainer.train_until(boundary)
            if trainer.step < boundary:
                raise MixlabError(f"run {trainer.run_id} stopped at step {trainer.step} before boundary {boundary}")
            record = engine.recorded(k)
            if record is not None:
                engine.replay(record)
            else:
                if trainer.step > boundary:
                    raise MixlabError(
                        f"{run_dir}: the checkpoint is past stage boundary {boundary} but stage {k} has no record; "
                        "the run directory is inconsistent: delete it to start over"
                    )
                trainer.save_checkpoint()
                if proxy is None and not self.mixer.dynamic:
                    proxy = self._proxy_runner(corpus, trainer.config)
                record = self._decide(engine, trainer, corpus, k, boundary, proxy)
                atomic_write_json(ledger_path, self.compute.to_dict())
            mixture = record.mixture
            if trainer.step == boundary and trainer.sampler.schedule.mixture_at(boundary) != mixture:
                trainer.set_schedule(mixture)
        records = engine.records
        result = trainer.fit()
        schedule = trainer.sampler.schedule
        end_counts = trainer.sampler.domain_counts()
        if trainer.store is not None:
            trainer.store.set_artifact(trainer.run_id, "stages", [r.to_dict() for r in records])
            trainer.store.set_artifact(trainer.run_id, "choose_compute", self.compute.to_dict())
        return PipelineResult(
            run_id=trainer.run_id, run_dir=run_dir, schedule=schedule, stages=records, curve=result.curve,
            compute=self.compute, tokens=result.tokens, flops=result.flops, seconds=result.seconds,
            end_domain_counts=end_counts,
        )

    def _decide(self, engine: StageEngine, trainer: Any, corpus: Any, k: int, boundary: int, proxy: Any) -> StageRecord:
        """Ask the stage engine for stage ``k``'s mixture at the live checkpoint."""
        tc = trainer.config
        previous = trainer.sampler.schedule.mixture_at(boundary - 1)
        live = LiveState(model=trainer.model, optimizer=trainer.optimizer, seq_len=tc.seq_len,
                         batch_size=tc.batch_size, device=trainer.device, step=trainer.step,
                         total_steps=trainer.total_steps,
                         boundaries=tuple(self.config.boundary_steps(trainer.total_steps)))
        remaining = (trainer.total_steps - boundary) * trainer.tokens_per_step
        losses = trainer.curve.get(max(trainer.curve)) if trainer.curve else None
        ctx = self._context(corpus, tc.tokens, remaining_tokens=remaining, stage=k, previous=previous,
                            live=live, proxy=proxy, history=engine.history())
        record = engine.decide(ctx, live, start_step=boundary, val_losses=losses,
                               domain_counts=trainer.sampler.domain_counts())
        if trainer.store is not None:
            trainer.store.set_artifact(trainer.run_id, f"stage_{k}", record.to_dict())
        return record


def run_pipeline(config: PipelineConfig | dict[str, Any], *, store: Any = None, corpus: Any = None) -> PipelineResult:
    """Run (or resume) a dynamic-mixture training run and return its schedule and losses."""
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig.parse(config)
    return DynamicPipeline(cfg, store=store, corpus=corpus).run()


__all__ = ["PLAN_KEYS", "DynamicPipeline", "LiveState", "PipelineConfig", "PipelineResult", "StageRecord", "run_pipeline"]

