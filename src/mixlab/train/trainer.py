"""The trainer: a model trained for a token budget on a mixture or schedule drawn by the sampler.

AdamW with linear warmup and cosine / WSD / constant decay, gradient clipping and accumulation,
autocast (bf16 on GPU), optional ``torch.compile``, per-domain validation on fixed batches,
atomic checkpoints with exact resume, the SQLite run store, and DistributedDataParallel under
``torchrun`` (gloo on CPU, nccl on GPU; each rank draws its own share of the sampler's global
stream, and only rank 0 writes the store and the shared checkpoint files).

The stage-wise API (:meth:`Trainer.train_until`, :meth:`Trainer.set_schedule`,
:meth:`Trainer.save_checkpoint`) lets the dynamic pipeline stop at a stage boundary, look at the live
model, change the mixture and go on in the same run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixlab.data.targets import load_targets
from mixlab.errors import ConfigError, DataError, TrainingError
from mixlab.mixture import Mixture, Schedule
from mixlab.train import checkpoint as ckpt_io
from mixlab.train.config import TrainConfig
from mixlab.train.evaluate import loss_on_windows, validation_windows
from mixlab.train.lr import lr_at, warmup_steps
from mixlab.utils.lock import DirLock

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


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_pref: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, True)


def _resolve_device(pref: str, dist: DistInfo) -> torch.device:
    if pref == "auto":
        return torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train config: device={pref!r} but no CUDA GPU is available; use device: cpu")
    if pref == "cuda":
        return torch.device(f"cuda:{dist.local_rank}")
    try:
        return torch.device(pref)
    except RuntimeError:
        raise ConfigError(f"train config: device {pref!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None


def _resolve_dtype(pref: str, device: torch.device) -> torch.dtype:
    if pref == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[pref]


def build_model(spec: str | dict[str, Any], *, vocab_size: int, seq_len: int, seed: int) -> tuple[torch.nn.Module, dict]:
    """Model and its JSON description from a preset name, GPTConfig mapping or HF config mapping."""
    from mixlab.model import GPT, GPTConfig, preset

    torch.manual_seed(seed)
    if isinstance(spec, dict) and "model_type" in spec:
        from mixlab.model.hf import build_hf_model

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


def corpus_identity(corpus: Any) -> str:
    """Which corpus a run trains on, as part of its config hash: the resolved directory and the token
    counts per domain (so a re-prepared corpus with other counts never resumes an old run)."""
    root = getattr(corpus, "root", None)
    counts = corpus.token_counts() if hasattr(corpus, "token_counts") else {}
    return f"{Path(root).resolve() if root else id(corpus)}|{sorted(counts.items())}"


class Trainer:
    """Trains one run; ``Trainer(TrainConfig(corpus="corpus", tokens=2_000_000)).fit()``.

    Building a Trainer creates (or reopens) the run directory; if it holds a checkpoint of the same
    config, training resumes from it. ``store`` is a :class:`~mixlab.store.RunStore` (default: the
    workspace's ``mixlab.db``; pass ``False`` to record nothing). ``corpus`` may be an opened
    ``Corpus`` to use instead of ``config.corpus``.
    """

    def __init__(self, config: TrainConfig | dict[str, Any], store: Any = None, *, corpus: Any = None) -> None:
        self.config = cfg = config if isinstance(config, TrainConfig) else TrainConfig.parse(config)
        self.dist = _setup_distributed(cfg.device)
        self.device = _resolve_device(cfg.device, self.dist)
        self.amp_dtype = _resolve_dtype(cfg.dtype, self.device)
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
        self.run_dir = self._run_dir()
        self.ckpt_root = self.run_dir / "checkpoints"

        self.target_sources = load_targets(self.corpus, cfg.targets).eval_sources() if cfg.targets else {}
        self.model, self.model_desc = build_model(
            cfg.model, vocab_size=int(self.corpus.vocab_size), seq_len=cfg.seq_len, seed=cfg.seed
        )
        self.model.to(self.device)
        self.flops_per_token = self._flops_per_token()
        self.optimizer = self._build_optimizer()
        self._train_model = self._wrap_model()

        from mixlab.data.sampler import MixtureSampler

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
        self.train_losses: dict[int, float] = {}
        self.seconds = 0.0
        self._pending_metrics: list[dict[str, Any]] = []
        self._windows: dict[str, torch.Tensor] | None = None
        self._seg_start: float | None = None

        self.store = self._open_store(store) if self.dist.is_main else None
        # one owner per run directory: a second process training here gets an error naming this one
        self._lock = DirLock(self.run_dir).acquire() if self.dist.is_main else None
        try:
            self.resumed_from = self._maybe_resume()
        except BaseException as exc:
            self._mark(exc)
            self._release()
            raise
        if self.dist.is_main:
            self._write_run_files()

    # ------------------------------------------------------------------------------- setup
    @staticmethod
    def _open_corpus(path: str | None) -> Any:
        if not path:
            raise ConfigError("train config: corpus is required (the path of a prepared corpus)")
        from mixlab.data.corpus import Corpus

        return Corpus.open(path)

    def _workspace(self) -> Path:
        from mixlab.store import default_workspace

        return Path(self.config.workspace) if self.config.workspace else default_workspace()

    def _run_dir(self) -> Path:
        if self.config.out_dir:
            return Path(self.config.out_dir)
        return self._workspace() / "runs" / self.run_id

    def _open_store(self, store: Any) -> Any:
        if store is False:
            return None
        if store is None:
            from mixlab.store import RunStore

            store = RunStore(self._workspace())
        return store

    def _flops_per_token(self) -> float:
        from mixlab.model import count_params, flops_per_token
        from mixlab.model.gpt import GPT

        if isinstance(self.model, GPT):
            return flops_per_token(self.model.config, self.config.seq_len)
        return 6.0 * count_params(self.model)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for _, p in self.model.named_parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        kwargs: dict[str, Any] = {"lr": self.config.lr, "betas": (self.config.beta1, self.config.beta2)}
        if self.device.type == "cuda":
            kwargs["fused"] = True
        return torch.optim.AdamW(groups, **kwargs)

    def _wrap_model(self) -> torch.nn.Module:
        model: torch.nn.Module = self.model
        if self.config.compile:
            model = torch.compile(model)
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return model

    def _write_run_files(self) -> None:
        from mixlab.utils.io import atomic_write_json, atomic_write_yaml

        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_yaml(self.run_dir / "config.yaml", self.config.model_dump(mode="json"))
        atomic_write_json(self.run_dir / "model.json", self.model_desc)
        if self.store is not None:
            self.store.create_run(
                self.config.kind,
                self.config.method,
                self.sampler.schedule.to_json(),
                self.model_desc,
                self.config.tokens,
                run_id=self.run_id,
                name=self.config.run_name,
                train_config=self.config.model_dump(mode="json"),
                config_hash=self.config_hash,
                seed=self.config.seed,
                run_dir=self.run_dir.resolve(),
            )

    # ------------------------------------------------------------------------------- resume
    def _maybe_resume(self) -> int | None:
        """Resume from the newest checkpoint that reads; a damaged one is skipped with a warning (and
        ``latest`` pointed at the one used), so one corrupt file costs a checkpoint interval, not the run."""
        candidates = ckpt_io.checkpoint_candidates(self.ckpt_root)
        if not candidates:
            if (self.ckpt_root / ckpt_io.LATEST).is_file():
                log.warning("%s: no complete checkpoint to resume from; starting the run over", self.ckpt_root)
            return None
        problems = []
        for ckpt in candidates:
            try:
                self._load_checkpoint(ckpt)
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

    def _load_checkpoint(self, latest: Path) -> None:
        """Load every piece of one checkpoint (model, optimizer, sampler, RNG, curves) or raise."""
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
            self.curve = {int(k): v for k, v in state["curve"].items()}
            self.train_losses = {int(k): float(v) for k, v in state["train_losses"].items()}
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
        if self.store is not None:
            self.store.set_artifact(self.run_id, "schedule", self.sampler.schedule.to_json())

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
        if self.store is not None:
            self.store.update_status(self.run_id, "running")
        cfg = self.config
        model = self._train_model
        model.train()
        accum = cfg.grad_accum
        ddp = self.dist.world_size > 1
        t_start = self._seg_start = time.perf_counter()
        seg_tokens = 0
        try:
            with self._progress_bar(target) as bar:
                while self.step < target:
                    lr = self.lr_at(self.step)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    loss_sum = torch.zeros((), device=self.device)
                    for micro in range(accum):
                        batch = self.sampler.next_batch()
                        x = batch.input_ids.to(self.device, non_blocking=True)
                        y = batch.labels.to(self.device, non_blocking=True)
                        sync = contextlib.nullcontext() if (not ddp or micro == accum - 1) else model.no_sync()
                        with sync:
                            with self._autocast():
                                _, loss = model(x, y)
                            (loss / accum).backward()
                        loss_sum += loss.detach()
                    mean_loss = loss_sum / accum
                    if ddp:
                        import torch.distributed as dist

                        dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)
                    value = float(mean_loss.item())
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
                    seg_tokens += self.tokens_per_step
                    self.train_losses[self.step] = value
                    self._pending_metrics.append(
                        {"split": "train", "step": self.step, "tokens": self.tokens, "domain": "all", "loss": value}
                    )
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
                self._flush_metrics()
            self._mark(exc)
            raise
        self.seconds += time.perf_counter() - t_start
        self._seg_start = None

    def _mark(self, exc: BaseException) -> None:
        """Record in the store that the run stopped: ``interrupted`` (Ctrl-C, SIGTERM) or ``failed``.
        (A run killed outright cannot say so; ``mixlab runs list`` shows it ``interrupted`` because no
        live process holds its directory's lock.)"""
        if self.store is None:
            return
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        with contextlib.suppress(Exception):
            self.store.update_status(self.run_id, status, error=str(exc)[:2000] or type(exc).__name__)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def elapsed(self) -> float:
        """Training seconds so far, including the segment in progress."""
        running = time.perf_counter() - self._seg_start if self._seg_start is not None else 0.0
        return self.seconds + running

    def _record_eval(self) -> None:
        losses = self.evaluate()
        self.curve[self.step] = losses
        self._pending_metrics.extend(
            {"split": "val", "step": self.step, "tokens": self.tokens, "domain": d, "loss": v}
            for d, v in losses.items()
        )
        log.info(
            "step %d/%d val loss %s", self.step, self.total_steps, ", ".join(f"{d}={v:.3f}" for d, v in losses.items())
        )
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        if self.store is not None and self._pending_metrics:
            self.store.log_metrics(self.run_id, self._pending_metrics)
        self._pending_metrics = []

    def save_checkpoint(self) -> Path:
        """Write a complete checkpoint of the current step and point ``latest`` at it."""
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
                "curve": {str(k): v for k, v in self.curve.items()},
                "train_losses": {str(k): v for k, v in self.train_losses.items()},
                "schedule": self.sampler.schedule.to_json(),
            }
            ckpt_io.write_main_files(path, self.model, self.optimizer, state)
        self._barrier()
        if self.dist.is_main:
            ckpt_io.publish(self.ckpt_root, path, self.config.keep_checkpoints)
            self._flush_metrics()
        self._barrier()
        return path

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    @contextlib.contextmanager
    def _progress_bar(self, target: int) -> Any:
        if not (self.config.progress and self.dist.is_main):
            yield None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn(f"[bold]{self.run_id}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[tps]:,.0f} tok/s"),
            TimeRemainingColumn(),
            transient=True,
        )
        with progress:
            progress.add_task("train", total=self.total_steps, completed=self.step, loss=float("nan"), tps=0.0)
            yield progress

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
            if self.store is not None:
                self._flush_metrics()
                self.store.update_status(
                    self.run_id, "finished", tokens=result.tokens, flops=result.flops, seconds=result.seconds,
                    final=result.final,
                )
            if self.dist.is_main:
                from mixlab.utils.io import atomic_write_json

                atomic_write_json(
                    self.run_dir / "result.json",
                    {"run_id": result.run_id, "steps": result.steps, "tokens": result.tokens, "flops": result.flops,
                     "seconds": result.seconds, "final": result.final,
                     "curve": {str(k): v for k, v in result.curve.items()}},
                )
            return result
        finally:
            self.close()

    def close(self) -> None:
        """Release the run directory and leave the process group if this trainer created it."""
        self._release()
        if self.dist.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.dist.owns_group = False


def load_trained_model(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, TrainConfig, int]:
    """The model of a run's newest checkpoint, the run's config and the checkpoint's step.

    ``model, cfg, step = load_trained_model("mixlab-workspace/runs/train-1a2b3c")``
    """
    from mixlab.model import GPT, GPTConfig
    from mixlab.utils.io import read_json, read_yaml

    root = Path(run_dir)
    if not (root / "model.json").is_file():
        raise TrainingError(f"{root}: not a run directory (no model.json); give a run id or a run dir")
    cfg = TrainConfig.parse(read_yaml(root / "config.yaml"), where=str(root / "config.yaml"))
    desc = read_json(root / "model.json")
    candidates = ckpt_io.checkpoint_candidates(root / "checkpoints")
    if not candidates:
        raise TrainingError(f"{root}: the run has no checkpoint yet")
    if "gpt" in desc:
        model: torch.nn.Module = GPT(GPTConfig.from_dict(desc["gpt"], where=str(root / "model.json")))
    elif "hf" in desc:
        from mixlab.model.hf import build_hf_model

        model = build_hf_model(desc["hf"])
    else:
        raise TrainingError(f"{root / 'model.json'}: unknown model description {sorted(desc)}")
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


def train(config: TrainConfig | dict[str, Any], store: Any = None, *, corpus: Any = None) -> TrainResult:
    """Build a :class:`Trainer` and run it to the end of its budget."""
    return Trainer(config, store, corpus=corpus).fit()


__all__ = ["TrainResult", "Trainer", "build_model", "load_trained_model", "train"]
