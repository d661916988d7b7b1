"""The trainer: a model trained for a token budget on a mixture or schedule drawn by the sampler.

AdamW with linear warmup and cosine / WSD / constant decay, gradient clipping and accumulation,
autocast (bf16 on GPU), optional ``torch.compile``, per-domain validation on fixed batches,
atomic checkpoints with exact resume and DistributedDataParallel under ``torchrun``. The loop lives
here; the pieces around it have their own modules: processes and devices (:mod:`.distributed`),
building and loading models (:mod:`.models`), what the run leaves in its run directory and the store
(:mod:`.recorder`, through :class:`~mixlab.store.RunArtifacts`), checkpoint files (:mod:`.checkpoint`)
and the progress bar (:mod:`.progress`).

The stage-wise API (:meth:`Trainer.train_until`, :meth:`Trainer.set_schedule`,
:meth:`Trainer.save_checkpoint`) lets the dynamic pipeline stop at a stage boundary, look at the live
model, change the mixture and go on in the same run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from mixlab.data.corpus import Corpus
from mixlab.data.sampler import MixtureSampler
from mixlab.data.targets import load_targets
from mixlab.errors import ConfigError, DataError, TrainingError
from mixlab.mixture import Mixture, Schedule
from mixlab.store import RunArtifacts, RunCurve
from mixlab.train import checkpoint as ckpt_io
from mixlab.train.config import TrainConfig
from mixlab.train.distributed import resolve_device, resolve_dtype, setup_distributed
from mixlab.train.evaluate import loss_on_windows, validation_windows
from mixlab.train.lr import lr_at, warmup_steps
from mixlab.train.models import build_model, corpus_identity, model_flops_per_token
from mixlab.train.optim import build_optimizer
from mixlab.train.progress import progress_bar
from mixlab.train.recorder import RunRecorder, run_dir_of

log = logging.getLogger(__name__)


class _WrongRun(TrainingError):
    """The run directory's checkpoints belong to another config or world size: no fallback helps."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    run_id: str
    run_dir: Path
    curve: dict[int, dict[str, float]]
    """Validation loss per domain at every evaluated step."""
    tokens: int
    """Training tokens consumed (all ranks)."""
    flops: float
    """Training FLOPs (``flops_per_token * tokens``)."""
    seconds: float
    """Wall-clock training seconds, summed over resumed segments."""
    train_losses: dict[int, float] = field(default_factory=dict)
    """Mean training loss of every optimizer step (1-based step numbers)."""
    steps: int = 0

    @property
    def final(self) -> dict[str, float]:
        return self.curve[max(self.curve)] if self.curve else {}


class Trainer:
    """Trains one run; ``Trainer(TrainConfig(corpus="corpus", tokens=2_000_000)).fit()``.

    Building a Trainer creates (or reopens) the run directory; if it holds a checkpoint of the same
    config, training resumes from it. ``store`` is a :class:`~mixlab.store.RunStore` (default: the
    workspace's ``mixlab.db``; pass ``False`` to record nothing in a store). ``corpus`` may be an
    opened ``Corpus`` to use instead of ``config.corpus``.
    """

    def __init__(self, config: TrainConfig | dict[str, Any], store: Any = None, *, corpus: Any = None) -> None:
        self.config = cfg = config if isinstance(config, TrainConfig) else TrainConfig.parse(config)
        self.dist = setup_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.dist)
        self.amp_dtype = resolve_dtype(cfg.dtype, self.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")

        self.corpus = corpus if corpus is not None else self._open_corpus(cfg.corpus)
        if cfg.corpus and not Path(cfg.corpus).is_absolute():
            # the run's config.yaml must name the corpus from anywhere (`mixlab eval RUN_DIR` in another folder)
            self.config = cfg = cfg.model_copy(update={"corpus": str(Path(cfg.corpus).resolve())})
        self.schedule = cfg.resolve_mixture(list(self.corpus.domains), self.corpus.token_counts())
        self.seqs_per_step = self.dist.world_size * cfg.grad_accum * cfg.batch_size
        self.tokens_per_step = self.seqs_per_step * cfg.seq_len
        self.total_steps = cfg.tokens // self.tokens_per_step
        if self.total_steps < 1:
            raise ConfigError(
                f"train config: tokens={cfg.tokens} is less than one optimizer step "
                f"({self.tokens_per_step} tokens = {self.dist.world_size} ranks x grad_accum {cfg.grad_accum} x "
                f"batch_size {cfg.batch_size} x seq_len {cfg.seq_len}); raise tokens or shrink the batch"
            )
        self.eval_interval = cfg.eval_interval or max(1, self.total_steps // 10)
        self.checkpoint_interval = cfg.checkpoint_interval or self.eval_interval

        self.config_hash = cfg.config_hash(corpus_identity(self.corpus))
        self.run_id = cfg.run_name or f"{cfg.kind}-{self.config_hash[:12]}"
        self.run_dir = run_dir_of(cfg, self.run_id)
        self.ckpt_root = RunArtifacts(self.run_dir).checkpoints

        self.target_sources = load_targets(self.corpus, cfg.targets).eval_sources() if cfg.targets else {}
        self.model, self.model_desc = build_model(
            cfg.model, vocab_size=int(self.corpus.vocab_size), seq_len=cfg.seq_len, seed=cfg.seed
        )
        self.model.to(self.device)
        self.flops_per_token = model_flops_per_token(self.model, cfg.seq_len)
        self.optimizer = self._build_optimizer()
        self._train_model = self._wrap_model()

        self.sampler = MixtureSampler(
            self.corpus,
            self.schedule,
            seq_len=cfg.seq_len,
            batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum,
            seed=cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            max_epochs=cfg.max_epochs,
            on_exceed=cfg.on_exceed,
        )
        self.step = 0
        self.curve: dict[int, dict[str, float]] = {}
        """Validation loss per domain at every evaluated step."""
        self.train_losses: dict[int, float] = {}
        """Mean training loss of every optimizer step (1-based)."""
        self.seconds = 0.0
        self._windows: dict[str, torch.Tensor] | None = None
        self._seg_start: float | None = None

        self.recorder = RunRecorder(self.run_dir, self.run_id, store, config=cfg, main=self.dist.is_main)
        self.store = self.recorder.store
        self.recorder.lock()
        try:
            self.resumed_from = self._maybe_resume()
        except BaseException as exc:
            self.recorder.stopped(exc)
            self.recorder.release()
            raise
        self.recorder.started(self.config, self.model_desc, self.sampler.schedule, self.config_hash)

    # ------------------------------------------------------------------------------- setup
    @staticmethod
    def _open_corpus(path: str | None) -> Any:
        if not path:
            raise ConfigError("train config: corpus is required (the path of a prepared corpus)")
        return Corpus.open(path)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        return build_optimizer(
            self.model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2), device=self.device
        )

    def _wrap_model(self) -> torch.nn.Module:
        model: torch.nn.Module = self.model
        if self.config.compile:
            model = torch.compile(model)
        if self.dist.distributed:
            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return model

    # ------------------------------------------------------------------------------- resume
    def _maybe_resume(self) -> int | None:
        """Resume from the newest checkpoint that reads; a damaged one is skipped with a warning (and
        ``latest`` pointed at the one used), so one corrupt file costs a checkpoint interval, not the run."""
        candidates = ckpt_io.checkpoint_candidates(self.ckpt_root)
        if not candidates:
            if (self.ckpt_root / ckpt_io.LATEST).is_file():
                log.warning("%s: no complete checkpoint to resume from; starting the run over", self.ckpt_root)
            return None
        # the run directory's curve runs at least to the newest checkpoint (it is written before each is published)
        saved_curve = self.recorder.artifacts.curve()
        problems = []
        for ckpt in candidates:
            try:
                self._load_checkpoint(ckpt, saved_curve)
            except (TrainingError, DataError) as exc:
                if isinstance(exc, _WrongRun):
                    raise
                problems.append(f"{ckpt.name}: {exc}")
                log.warning("checkpoint %s is unusable (%s); trying an older one", ckpt, exc)
                continue
            if ckpt != candidates[0] or problems:
                log.warning("run %s resumes from the older checkpoint %s (step %d); the newer one was damaged",
                            self.run_id, ckpt.name, self.step)
                if self.dist.is_main:
                    ckpt_io.repoint(self.ckpt_root, ckpt)
            log.info("resumed run %s from %s (step %d of %d)", self.run_id, ckpt.name, self.step, self.total_steps)
            return self.step
        raise TrainingError(
            f"{self.ckpt_root}: no checkpoint of run {self.run_id} can be read ({'; '.join(problems)}); "
            f"delete {self.run_dir} to start the run over"
        )

    def _load_checkpoint(self, latest: Path, saved_curve: RunCurve | None) -> None:
        """Load every piece of one checkpoint (model, optimizer, sampler, RNG) and the curve up to its step, or raise."""
        state = ckpt_io.read_state(latest)
        if state.get("config_hash") != self.config_hash:
            raise _WrongRun(
                f"{self.run_dir} holds a checkpoint of a different config; pick another out_dir/run_name "
                f"or delete {self.run_dir} to start over"
            )
        if int(state.get("world_size", 1)) != self.dist.world_size:
            raise _WrongRun(
                f"{latest}: written by {state.get('world_size')} processes, resuming with "
                f"{self.dist.world_size}; resume with the same number of processes"
            )
        ckpt_io.load_model_weights(self.model, latest / "model.safetensors")
        opt_state = ckpt_io.torch_load_safe(latest / "optimizer.pt")
        try:
            self.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise TrainingError(f"{latest}/optimizer.pt does not fit this model ({exc})") from None
        try:
            self.sampler.load_state_dict(ckpt_io.read_sampler_state(latest, self.dist.rank))
            rank_file = latest / f"rank-{self.dist.rank}.pt"
            ckpt_io.set_rng_state(ckpt_io.torch_load_safe(rank_file))
            self.step = int(state["step"])
            if "curve" in state:  # a checkpoint written when checkpoints carried the curve
                curve = RunCurve.from_json({"val": state["curve"], "train": state.get("train_losses", {})})
            else:
                curve = (saved_curve or RunCurve()).upto(self.step)
            self.curve, self.train_losses = curve.val, curve.train
            self.seconds = float(state.get("seconds", 0.0))
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise TrainingError(f"{latest}: damaged checkpoint state ({type(exc).__name__}: {exc})") from None
        if self.sampler.step != self.step:
            raise TrainingError(f"{latest}: sampler is at step {self.sampler.step}, the trainer at {self.step}")

    # ------------------------------------------------------------------------------- API
    @property
    def tokens(self) -> int:
        return self.step * self.tokens_per_step

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    def set_schedule(self, schedule: Schedule | Mixture) -> None:
        """Use ``schedule`` (or a mixture) from the current step on; earlier steps keep theirs."""
        schedule.check_domains(self.corpus.domains)
        self.sampler.set_schedule(schedule)
        self.recorder.schedule_changed(self.sampler.schedule)

    def lr_at(self, step: int) -> float:
        cfg = self.config
        return lr_at(
            step,
            total_steps=self.total_steps,
            lr=cfg.lr,
            min_lr=cfg.final_lr,
            warmup=warmup_steps(cfg.warmup, self.total_steps),
            schedule=cfg.lr_schedule,
            decay_frac=cfg.decay_frac,
        )

    def evaluate(self) -> dict[str, float]:
        """Per-domain validation loss of the current model on the run's fixed batches, and the loss on
        each evaluation-only target (``target:<name>``; read by evaluation only, never sampled)."""
        cfg = self.config
        bs = cfg.eval_batch_size or cfg.batch_size
        if self._windows is None:
            self._windows = validation_windows(
                self.corpus, seq_len=cfg.seq_len, batches=cfg.eval_batches, batch_size=bs, seed=cfg.seed,
                extra=self.target_sources, extra_batches=cfg.target_eval_batches or 4 * cfg.eval_batches,
            )
        return loss_on_windows(self.model, self._windows, batch_size=bs, device=self.device, amp_dtype=self._amp())

    def _amp(self) -> torch.dtype | None:
        return None if self.amp_dtype == torch.float32 else self.amp_dtype

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train_until(self, step: int) -> None:
        """Train up to optimizer step ``step`` (capped at ``total_steps``), evaluating and
        checkpointing at their intervals."""
        target = min(int(step), self.total_steps)
        if self.step >= target:
            return
        self.recorder.running()
        self._train_model.train()
        t_start = self._seg_start = time.perf_counter()
        seg_tokens = 0
        try:
            with progress_bar(self.run_id, total=self.total_steps, completed=self.step,
                              enabled=self.config.progress and self.dist.is_main) as bar:
                while self.step < target:
                    value = self._train_step()
                    seg_tokens += self.tokens_per_step
                    if bar is not None:
                        elapsed = time.perf_counter() - t_start
                        bar.update(bar.task_ids[0], completed=self.step, loss=value,
                                   tps=seg_tokens / max(elapsed, 1e-9))
                    if self.step % self.eval_interval == 0 or self.step == self.total_steps:
                        self._record_eval()
                    if self.step % self.checkpoint_interval == 0 or self.step == self.total_steps:
                        self.save_checkpoint()
        except BaseException as exc:
            self.seconds += time.perf_counter() - t_start
            self._seg_start = None
            with contextlib.suppress(Exception):
                self.recorder.curve(self.run_curve())
            self.recorder.stopped(exc)
            raise
        self.seconds += time.perf_counter() - t_start
        self._seg_start = None

    def _train_step(self) -> float:
        """One optimizer step over ``grad_accum`` micro-batches; returns its mean training loss."""
        cfg = self.config
        model = self._train_model
        accum = cfg.grad_accum
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(accum):
            batch = self.sampler.next_batch()
            x = batch.input_ids.to(self.device, non_blocking=True)
            y = batch.labels.to(self.device, non_blocking=True)
            # DDP averages gradients on the last micro-batch only
            last = not self.dist.distributed or micro == accum - 1
            with contextlib.nullcontext() if last else model.no_sync():
                with self._autocast():
                    _, loss = model(x, y)
                (loss / accum).backward()
            loss_sum += loss.detach()
        value = float(self.dist.mean(loss_sum / accum).item())
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingError(
                f"run {self.run_id}: training loss became {value} at step {self.step + 1} "
                f"(lr {lr:.3g}); the last good checkpoint is kept in {self.ckpt_root}. "
                "Lower lr, raise warmup or enable grad_clip, then delete the run dir or resume"
            )
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.train_losses[self.step] = value
        return value

    @property
    def elapsed(self) -> float:
        """Training seconds so far, including the segment in progress."""
        running = time.perf_counter() - self._seg_start if self._seg_start is not None else 0.0
        return self.seconds + running

    def run_curve(self) -> RunCurve:
        """The run's curve so far (what ``curve.json`` in its run directory holds)."""
        return RunCurve(self.curve, self.train_losses, self.tokens_per_step)

    def _record_eval(self) -> None:
        losses = self.evaluate()
        self.curve[self.step] = losses
        log.info(
            "step %d/%d val loss %s", self.step, self.total_steps, ", ".join(f"{d}={v:.3f}" for d, v in losses.items())
        )
        self.recorder.curve(self.run_curve())

    def save_checkpoint(self) -> Path:
        """Write a complete checkpoint of the current step and point ``latest`` at it. The run
        directory's curve is written first, so it always runs at least to the published checkpoint."""
        path = ckpt_io.step_dir(self.ckpt_root, self.step)
        ckpt_io.write_rank_files(path, self.dist.rank, self.sampler.state_dict())
        if self.dist.is_main:
            state = {
                "step": self.step,
                "total_steps": self.total_steps,
                "tokens": self.tokens,
                "seconds": self.elapsed,
                "world_size": self.dist.world_size,
                "config_hash": self.config_hash,
                "run_id": self.run_id,
                "schedule": self.sampler.schedule.to_json(),
            }
            ckpt_io.write_main_files(path, self.model, self.optimizer, state)
            self.recorder.curve(self.run_curve())
        self.dist.barrier()
        if self.dist.is_main:
            ckpt_io.publish(self.ckpt_root, path, self.config.keep_checkpoints)
        self.dist.barrier()
        return path

    def result(self) -> TrainResult:
        return TrainResult(
            run_id=self.run_id,
            run_dir=self.run_dir,
            curve=dict(self.curve),
            tokens=self.tokens,
            flops=self.flops_per_token * self.tokens,
            seconds=self.seconds,
            train_losses=dict(self.train_losses),
            steps=self.step,
        )

    def fit(self) -> TrainResult:
        """Train to the end of the budget (resuming if a checkpoint exists) and return the result."""
        try:
            self.train_until(self.total_steps)
            if self.step not in self.curve:
                self._record_eval()
            result = self.result()
            self.recorder.finished(
                {"run_id": result.run_id, "steps": result.steps, "tokens": result.tokens, "flops": result.flops,
                 "seconds": result.seconds, "final": result.final},
                self.run_curve(),
            )
            return result
        finally:
            self.close()

    def close(self) -> None:
        """Release the run directory and leave the process group if this trainer created it."""
        self.recorder.release()
        self.dist.close()


def train(config: TrainConfig | dict[str, Any], store: Any = None, *, corpus: Any = None) -> TrainResult:
    """Build a :class:`Trainer` and run it to the end of its budget."""
    return Trainer(config, store, corpus=corpus).fit()


__all__ = ["TrainResult", "Trainer", "train"]
