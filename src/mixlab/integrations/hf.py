"""Hugging Face integration: a ``datasets`` mixture dataset and a ``transformers`` Trainer callback.

:class:`MixtureStream` serves mixlab's :class:`~mixlab.data.MixtureSampler` as per-sequence
examples ``{"input_ids", "labels", "domain"}``; :meth:`MixtureStream.to_hf_dataset` wraps it in a
``datasets.IterableDataset`` that ``transformers.Trainer`` consumes like any other.
:class:`MixtureScheduleCallback` applies a mixlab :class:`~mixlab.mixture.Schedule` during
``Trainer.train()`` and, for dynamic methods (TiKMiX), asks a mixer for the next mixture at each
stage boundary with the live model, then switches the stream to it::

    stream = MixtureStream(corpus, Mixture.uniform(corpus.domains), seq_len=128, batch_size=8)
    callback = MixtureScheduleCallback(stream, mixer="tikmix-d", boundaries=[500, 1000])
    trainer = Trainer(model, args, train_dataset=stream.to_hf_dataset(), callbacks=[callback])

How the switch is timed. The sampler's stream is a pure function of (seed, schedule, position): a
stage starting at step ``b`` covers exactly the sequences of optimizer steps ``>= b``. A static
schedule is therefore installed on the sampler when training begins and switches at exactly its
start steps whatever the data loader prefetches. A dynamic stage must be decided before the data
loader reads its first micro-batch; ``transformers.Trainer`` (through ``accelerate``) reads one
micro-batch ahead, so the callback watches the sampler's own position and asks the mixer at the last
``on_step_end`` before the sampler would enter step ``b``: with the Trainer that is after ``b - 1``
optimizer steps, so Group Influence is measured on the model one step before the boundary and the new
mixture applies from step ``b`` exactly. (Were the sampler already past ``b``, the stage starts at
the sampler's next whole step and a warning says so.)

Labels. Hugging Face causal LMs shift labels inside the model, so by default ``labels`` equals
``input_ids`` (``labels="hf"``); ``labels="shifted"`` yields mixlab's convention (``labels[t]`` is
the token after ``input_ids[t]``) for models that do not shift.

Distributed and worker processes. Under ``torchrun``/``accelerate`` each rank's stream reads its own
slice of the global stream (``rank``/``world_size``, taken from the environment by default), and
``dataloader_num_workers=N`` splits a rank's micro-batches among the workers (worker ``w`` serves
micro-batches ``w, w+N, ...``, which the DataLoader returns in order), so nothing is read twice.
Build the dataset with ``stream.to_hf_dataset(num_workers=N)`` and give the Trainer
``accelerator_config={"dispatch_batches": False}`` when ``world_size > 1`` (the callback checks both).
A *dynamic* mixer needs ``dataloader_num_workers=0``: it switches the sampler in the training process.

Resume. The callback writes the stream's state at each Trainer checkpoint
(``checkpoint-<step>/mixlab_stream.rank<r>.json``: the sampler position after exactly ``<step>``
optimizer steps, the schedule including stages chosen live, and the stage records) and restores it
when ``trainer.train(resume_from_checkpoint=...)`` starts from it. With ``ignore_data_skip=True`` the
stream continues from the saved position directly; otherwise the Trainer replays and skips the
batches already trained, which gives the same data because the stream is a pure function of the
seed, the restored schedule and the position.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.utils.data

from mixlab.data import Corpus, MixtureSampler
from mixlab.errors import ConfigError, MixlabError
from mixlab.mixers import get_mixer
from mixlab.mixers.base import Mixer, MixingContext
from mixlab.mixture import Mixture, Schedule
from mixlab.model.hf import HFCausalLM
from mixlab.pipeline.stages import LiveState, StageEngine, StageRecord, warn_decisions_in_warmup
from mixlab.store import RunArtifacts, RunCurve
from mixlab.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

_STREAMS: weakref.WeakValueDictionary[int, MixtureStream] = weakref.WeakValueDictionary()
_NEXT_ID = itertools.count()
_EVAL_KEY = re.compile(r"eval_(.+)_loss")

try:  # the callback must subclass TrainerCallback for Trainer to accept it; transformers is optional
    from transformers import TrainerCallback as _CallbackBase
except ImportError:  # pragma: no cover - depends on the environment
    _CallbackBase = object  # type: ignore[misc,assignment]


class MixtureStream:
    """A mixture sampler over a prepared corpus, served one sequence at a time.

    ``batch_size`` and ``grad_accum`` must equal the Trainer's ``per_device_train_batch_size`` and
    ``gradient_accumulation_steps`` so that a sampler step is a Trainer optimizer step (the callback
    checks this). ``max_batches`` bounds the micro-batches one iteration yields (``None``: endless;
    give the Trainer ``max_steps``).
    """

    def __init__(
        self,
        corpus: Corpus | str | Path,
        mixture_or_schedule: Mixture | Schedule | Mapping[str, float] | None = None,
        *,
        seq_len: int,
        batch_size: int,
        grad_accum: int = 1,
        seed: int = 0,
        max_epochs: float | Mapping[str, float] | None = None,
        on_exceed: Literal["error", "warn"] = "error",
        labels: Literal["hf", "shifted"] = "hf",
        max_batches: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if labels not in ("hf", "shifted"):
            raise ConfigError(f"labels must be 'hf' (labels = input_ids) or 'shifted', got {labels!r}")
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
        if mixture_or_schedule is None:
            counts = self.corpus.token_counts("train")
            mixture_or_schedule = Mixture.from_weights({d: float(counts[d]) for d in self.corpus.domains})
        self.labels = labels
        self.max_batches = max_batches
        rank, world_size = _rank_and_world(rank, world_size)
        self._sampler_kw: dict[str, Any] = dict(
            seq_len=seq_len,
            batch_size=batch_size,
            grad_accum=grad_accum,
            seed=seed,
            max_epochs=max_epochs,
            on_exceed=on_exceed,
            rank=rank,
            world_size=world_size,
        )
        self.sampler: MixtureSampler = self.new_sampler(mixture_or_schedule)
        self.hf_workers: int | None = None
        """The ``num_workers`` the HF dataset was built for (None: not built)."""
        self.step_counts: dict[int, dict[str, int]] = {}
        """Sequences read per domain, by the optimizer step they belong to."""
        self._id = next(_NEXT_ID)
        _STREAMS[self._id] = self

    def new_sampler(self, mixture_or_schedule: Mixture | Schedule | Mapping[str, float]) -> MixtureSampler:
        """A fresh sampler with this stream's settings (rank, world size, shapes, seed, epochs)."""
        return MixtureSampler(self.corpus, mixture_or_schedule, **self._sampler_kw)

    @property
    def rank(self) -> int:
        return self.sampler.rank

    @property
    def world_size(self) -> int:
        return self.sampler.world_size

    @property
    def seq_len(self) -> int:
        return self.sampler.seq_len

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    @property
    def grad_accum(self) -> int:
        return self.sampler.grad_accum

    @property
    def domains(self) -> list[str]:
        return list(self.sampler.domains)

    @property
    def schedule(self) -> Schedule:
        return self.sampler.schedule

    def next_whole_step(self) -> int:
        """The first optimizer step the sampler has not started reading: a stage set now starts here."""
        return self.sampler.step + (1 if self.sampler.state_dict()["micro"] > 0 else 0)

    def set_schedule(self, schedule: Schedule | Mixture) -> None:
        """Apply ``schedule`` from :meth:`next_whole_step` on (earlier steps keep their mixture)."""
        self.sampler.set_schedule(schedule)

    def counts(self, start: int = 0, stop: int | None = None) -> dict[str, int]:
        """Sequences read per domain over optimizer steps ``start <= step < stop``."""
        out = dict.fromkeys(self.domains, 0)
        for step, c in self.step_counts.items():
            if step >= start and (stop is None or step < stop):
                for d, n in c.items():
                    out[d] += n
        return out

    def examples(self) -> Iterator[dict[str, Any]]:
        """Yield ``{"input_ids", "labels", "domain"}`` per sequence, continuing the sampler's stream.

        In DataLoader worker ``w`` of ``N`` only micro-batches ``w, w+N, ...`` (counted from where the
        stream stood when the worker started) are read; the others are skipped without reading tokens.
        """
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        done = 0
        domains = self.domains
        while self.max_batches is None or done < self.max_batches:
            step = self.sampler.step
            if done % n_workers != worker:
                self.sampler.skip_batch()
                done += 1
                continue
            batch = self.sampler.next_batch()
            done += 1
            counts = self.step_counts.setdefault(step, dict.fromkeys(domains, 0))
            ids = batch.input_ids.numpy()
            lab = ids if self.labels == "hf" else batch.labels.numpy()
            for i, k in enumerate(batch.domain_ids.tolist()):
                counts[domains[k]] += 1
                yield {"input_ids": ids[i], "labels": lab[i], "domain": domains[k]}

    def eval_datasets(self, sequences_per_domain: int = 8) -> dict[str, Any]:
        """``{domain: datasets.Dataset}`` of the first ``sequences_per_domain`` validation sequences of
        each domain; pass it as the Trainer's ``eval_dataset`` to get ``eval_<domain>_loss``."""
        import datasets

        out = {}
        T = self.seq_len
        for d in self.domains:
            toks = np.asarray(self.corpus.val_tokens(d), dtype=np.int64)
            n = min(sequences_per_domain, len(toks) // T)
            if n == 0:
                log.warning("domain %r has fewer than seq_len=%d validation tokens; not evaluated", d, T)
                continue
            chunks = toks[: n * T].reshape(n, T).tolist()
            out[d] = datasets.Dataset.from_dict({"input_ids": chunks, "labels": chunks})
        return out

    def to_hf_dataset(self, num_workers: int = 0) -> Any:
        """A ``datasets.IterableDataset`` over :meth:`examples` (``pip install mixlab[hf]``).

        ``num_workers`` must be the Trainer's ``dataloader_num_workers``: the dataset has
        ``world_size * max(1, num_workers)`` shards so that ``accelerate`` gives each rank its own and
        ``datasets`` one to each worker (each shard runs this rank's stream; see :meth:`examples`).
        """
        try:
            import datasets
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("the Hugging Face dataset needs `pip install mixlab[hf]` (datasets)") from None
        features = datasets.Features(
            {
                "input_ids": datasets.Sequence(datasets.Value("int64")),
                "labels": datasets.Sequence(datasets.Value("int64")),
                "domain": datasets.Value("string"),
            }
        )
        # A module-level generator and an integer handle: `datasets` fingerprints the generator and
        # its arguments by pickling them, which must not copy the corpus.
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.hf_workers = num_workers
        shards = self.world_size * max(1, num_workers)
        return datasets.IterableDataset.from_generator(
            _generate, features=features, gen_kwargs={"stream_id": self._id, "shard": list(range(shards))}
        )


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the world size: given, else torch.distributed, else torchrun's env."""
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    if dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return (int(rank) if rank is not None else r), (int(world_size) if world_size is not None else w)


def _generate(stream_id: int, shard: int = 0) -> Iterator[dict[str, Any]]:
    stream = _STREAMS.get(stream_id)
    if stream is None:
        raise MixlabError(
            "the MixtureStream behind this dataset no longer exists (keep a reference to it while training), "
            "or a DataLoader worker was started with 'spawn': use the default 'fork' start method"
        )
    yield from stream.examples()


def mixture_dataset(
    corpus: Corpus | str | Path,
    mixture_or_schedule: Mixture | Schedule | Mapping[str, float] | None = None,
    **kw: Any,
) -> tuple[Any, MixtureStream]:
    """``(datasets.IterableDataset, MixtureStream)`` for a corpus and a mixture or schedule."""
    stream = MixtureStream(corpus, mixture_or_schedule, **kw)
    return stream.to_hf_dataset(), stream


class MixtureScheduleCallback(_CallbackBase):
    """Apply a mixlab schedule during ``Trainer.train()``; with a ``mixer``, choose stages live.

    Static: ``MixtureScheduleCallback(stream, schedule)`` installs ``schedule`` when training starts
    and logs each stage as training enters it. Dynamic: ``MixtureScheduleCallback(stream, mixer=
    "tikmix-d", boundaries=[500, 1000])`` (or a :class:`~mixlab.mixers.base.Mixer` instance) starts
    from the stream's mixture and at each boundary builds a
    :class:`~mixlab.mixers.base.MixingContext` with ``live`` (the model wrapped in mixlab's
    interface, the optimizer, seq_len, batch_size), ``corpus``, ``previous`` and ``history``, hands
    it to the stage engine (:class:`~mixlab.pipeline.stages.StageEngine`, the same as ``mixlab run``'s:
    it calls ``mixer.propose``, where TiKMiX-D measures Group Influence on the live model, and keeps
    the :class:`~mixlab.pipeline.stages.StageRecord` in :attr:`stages`) and switches the stream. ``mixer_params`` go to :func:`~mixlab.mixers.get_mixer` when ``mixer`` is a name;
    ``context`` holds extra :class:`MixingContext` fields (``max_epochs``, ``lower``, ``upper``,
    ``target_domains``, ...). With ``influence`` (keyword arguments of
    :func:`mixlab.influence.measure_group_influence`, at least ``tokens_per_domain``) the callback
    measures Group Influence itself on the live model (Adam-preconditioned with the Trainer's
    optimizer unless told otherwise) and hands it to the mixer as ``ctx.live.influence``; without
    it, a dynamic mixer measures what it needs. ``out_dir`` receives ``schedule.json``,
    ``stages/stage_<k>/{record,mixture,influence}.json`` and, when the Trainer evaluates on
    :meth:`MixtureStream.eval_datasets` (``eval_<domain>_loss``), ``curve.json``: a run directory
    (:class:`~mixlab.store.RunArtifacts`), which ``mixlab report`` reads.
    """

    def __init__(
        self,
        stream: MixtureStream,
        schedule: Schedule | Mixture | None = None,
        *,
        mixer: Mixer | str | None = None,
        mixer_params: Mapping[str, Any] | None = None,
        boundaries: Sequence[int] = (),
        total_steps: int | None = None,
        context: Mapping[str, Any] | None = None,
        influence: Mapping[str, Any] | None = None,
        out_dir: str | Path | None = None,
    ) -> None:
        self.stream = stream
        self.influence = dict(influence) if influence is not None else None
        self.schedule = schedule
        self.mixer = mixer
        self.mixer_params = dict(mixer_params or {})
        self.boundaries = sorted(int(b) for b in boundaries)
        self.total_steps = total_steps
        self.context = dict(context or {})
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if any(b <= 0 for b in self.boundaries) or len(set(self.boundaries)) != len(self.boundaries):
            raise ConfigError(f"boundaries must be distinct positive optimizer steps, got {list(boundaries)}")
        if self.boundaries and mixer is None:
            raise ConfigError("boundaries need a mixer to choose the mixture there (e.g. mixer='tikmix-d')")
        if mixer is not None and isinstance(schedule, Schedule) and len(schedule.stages) > 1:
            raise ConfigError("give either a multi-stage schedule or a mixer with boundaries, not both")
        self._engine: StageEngine | None = None
        self._pending: list[int] = []
        self._trained: MixtureSampler | None = None
        self._announced = 0
        self.metrics: list[dict[str, Any]] = []
        """Per-domain evaluation losses seen so far: ``{run_id, step, tokens, domain, loss}`` rows."""

    # ----------------------------------------------------------------- helpers
    @property
    def stages(self) -> list[StageRecord]:
        """The stage records so far (:class:`~mixlab.pipeline.stages.StageRecord`), oldest first."""
        return self.engine.records

    @property
    def engine(self) -> StageEngine:
        """The stage engine that decides and records this run's stages (built on first use)."""
        if self._engine is None:
            mixer = self.mixer
            if isinstance(mixer, str):
                mixer = get_mixer(mixer, **self.mixer_params)
            self._engine = StageEngine(
                mixer, method=self.mixer if isinstance(self.mixer, str) else None,
                influence=self.influence, stages_dir=self.out_dir / "stages" if self.out_dir is not None else None,
            )  # fmt: skip
        return self._engine

    def _check_args(self, args: Any) -> None:
        problems = []
        if args.per_device_train_batch_size != self.stream.batch_size:
            problems.append(
                f"per_device_train_batch_size={args.per_device_train_batch_size} but the stream's batch_size={self.stream.batch_size}"
            )
        if args.gradient_accumulation_steps != self.stream.grad_accum:
            problems.append(
                f"gradient_accumulation_steps={args.gradient_accumulation_steps} but the stream's grad_accum={self.stream.grad_accum}"
            )
        world = int(getattr(args, "world_size", 1))
        if world != self.stream.world_size:
            problems.append(
                f"world_size={world} but the stream was built for world_size={self.stream.world_size} "
                "(build the MixtureStream inside each torchrun process)"
            )
        if world > 1:
            acc = getattr(args, "accelerator_config", None)
            if getattr(acc, "dispatch_batches", None) is not False:
                problems.append(
                    "world_size > 1 needs accelerator_config={'dispatch_batches': False}: each rank reads "
                    "its own slice of the stream"
                )
        if world > 1 and self.mixer is not None:
            problems.append(
                "a dynamic mixer under torchrun is not supported: each rank would choose its own mixture; "
                "run the dynamic schedule in one process (or mixlab run), then train with the static schedule"
            )
        workers = int(getattr(args, "dataloader_num_workers", 0) or 0)
        if workers and self.mixer is not None:
            problems.append(
                "dataloader_num_workers > 0 with a dynamic mixer: the mixer switches the sampler in the "
                "training process; use 0"
            )
        if self.stream.hf_workers is not None and self.stream.hf_workers != workers:
            problems.append(
                f"dataloader_num_workers={workers} but the dataset was built with "
                f"stream.to_hf_dataset(num_workers={self.stream.hf_workers})"
            )
        if problems:
            raise ConfigError(
                "MixtureScheduleCallback: TrainingArguments do not match the MixtureStream: "
                + "; ".join(problems)
            )

    def _total(self, args: Any) -> int | None:
        """The run's optimizer steps: the callback's ``total_steps``, else the Trainer's ``max_steps``."""
        return self.total_steps or (args.max_steps if getattr(args, "max_steps", 0) > 0 else None)

    def _remaining_tokens(self, step: int, args: Any) -> int | None:
        total = self._total(args)
        if total is None:
            return None
        per_step = self.stream.batch_size * self.stream.grad_accum * self.stream.seq_len
        return max(1, (total - step)) * per_step

    def _decide(self, boundary: int, start: int, args: Any, state: Any, model: Any, optimizer: Any) -> None:
        step = int(state.global_step)
        live = LiveState(
            model=model if hasattr(model, "token_losses") else HFCausalLM(model),
            optimizer=getattr(optimizer, "optimizer", optimizer),
            seq_len=self.stream.seq_len,
            batch_size=self.stream.batch_size,
            step=step,
            sampler=self.stream.sampler,
            hf_model=model,
            device=next(model.parameters()).device,
            total_steps=self._total(args),
            boundaries=tuple(self.boundaries),
        )
        corpus = self.stream.corpus
        counts = corpus.token_counts("train")
        remaining = self._remaining_tokens(step, args)
        fields = {
            "domains": self.stream.domains,
            "available_tokens": {d: int(counts[d]) for d in self.stream.domains},
            "total_tokens": remaining or sum(int(counts[d]) for d in self.stream.domains),
            "remaining_tokens": remaining,
            "stage": len(self.stages),
            "previous": self.stages[-1].mixture,
            "corpus": corpus,
            "live": live,
            "history": self.engine.history(),
        }
        fields.update(self.context)
        # The mixer runs between two optimizer steps; the engine leaves no gradients behind (the Trainer
        # zeroed them before on_step_end and the next step accumulates onto .grad) and restores the
        # random streams that dropout and the data order of the next steps draw from.
        record = self.engine.decide(MixingContext(**fields), live, start_step=start)
        log.info("stage %d from step %d (chosen after %d steps by %s): %s", record.stage, start, step,
                 self.engine.method, record.mixture)
        if start != boundary:
            log.warning(
                "stage boundary %d: the data loader had already read step %d; the new mixture starts at step %d",
                boundary,
                start - 1,
                start,
            )
        self.stream.set_schedule(self.stream.schedule.with_stage(start, record.mixture))
        if self._trained is not None:
            self._trained.set_schedule(self.stream.schedule)
        self._save()

    def _save(self) -> None:
        if self.out_dir is None:
            return
        artifacts = RunArtifacts(self.out_dir)
        if self.metrics:
            artifacts.write_curve(RunCurve.from_rows(self.metrics))
        artifacts.write_schedule(Schedule.from_pairs((s.start_step, s.mixture) for s in self.stages))

    # ----------------------------------------------------------------- checkpoints
    def _state_path(self, args: Any, step: int) -> Path:
        return Path(args.output_dir) / f"checkpoint-{step}" / f"mixlab_stream.rank{self.stream.rank}.json"

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Store the stream as it stands after exactly ``global_step`` steps beside the checkpoint."""
        assert self._trained is not None
        step = int(state.global_step)
        if self._trained.step != step or self._trained.state_dict()["micro"] != 0:
            raise MixlabError(
                f"the stream's trained position ({self._trained.step}) does not match the Trainer's step {step}"
            )
        atomic_write_json(
            self._state_path(args, step),
            {
                "sampler": self._trained.state_dict(),
                "stages": [rec.to_dict() for rec in self.stages],
                "pending": self._pending,
                "announced": self._announced,
            },
        )
        return control

    def _resume(self, args: Any, step: int) -> None:
        path = self._state_path(args, step)
        if not path.is_file():
            raise MixlabError(
                f"resuming at step {step}, but {path} is missing: the checkpoint was not written with "
                "MixtureScheduleCallback, so the data stream cannot be restored"
            )
        saved = read_json(path)
        if self.stream.sampler.step != 0:
            raise MixlabError("resume with a fresh MixtureStream (this one has already been read)")
        trained = self.stream.new_sampler(self.stream.schedule)
        trained.load_state_dict(saved["sampler"])
        self._trained = trained
        if getattr(args, "ignore_data_skip", False):
            self.stream.sampler.load_state_dict(saved["sampler"])  # continue from the saved position
        else:
            self.stream.set_schedule(trained.schedule)  # the Trainer replays and skips the trained steps
        self.engine.records[:] = [StageRecord.from_dict(r, where=f"{path}: stage") for r in saved["stages"]]
        self._pending = [int(b) for b in saved["pending"]]
        self._announced = int(saved["announced"])
        log.info("resumed the mixture stream at step %d from %s", step, path)

    # ----------------------------------------------------------------- Trainer events
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._check_args(args)
        if state.global_step != 0:
            self._resume(args, int(state.global_step))
            return control
        if self.stream.sampler.step != 0:
            raise MixlabError("MixtureScheduleCallback starts a fresh stream; this one has already been read")
        if self.schedule is not None:
            self.stream.set_schedule(self.schedule)
        self._trained = self.stream.new_sampler(self.stream.schedule)
        sched = self.stream.schedule
        self.engine.records.clear()
        for i, st in enumerate(sched.stages):
            self.engine.given(i, st.start_step, st.mixture)
        self._pending = [b for b in self.boundaries if b > sched.stages[-1].start_step]
        if self._pending and (total := self._total(args)):
            warn_decisions_in_warmup(self._pending, args.get_warmup_steps(total), total)
        self._announced = 0
        log.info("stage 0 from step 0: %s", self.stages[0].mixture)
        self._save()
        return control

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, float] | None = None, **kwargs: Any
    ) -> Any:
        """Collect ``eval_<domain>_loss`` (Trainer's name for a dict ``eval_dataset``) as loss curves."""
        step = int(state.global_step)
        per_step = self.stream.batch_size * self.stream.grad_accum * self.stream.seq_len
        run_id = Path(args.output_dir).name or "hf"
        found = False
        for key, value in (metrics or {}).items():
            m = _EVAL_KEY.fullmatch(key)
            if m and m.group(1) in self.stream.domains:
                self.metrics.append(
                    {
                        "run_id": run_id,
                        "step": step,
                        "tokens": step * per_step,
                        "domain": m.group(1),
                        "loss": float(value),
                    }
                )
                found = True
        if found:
            self._save()
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        step = int(state.global_step)
        if self._trained is not None:  # the position actually trained (the loader reads ahead)
            while self._trained.step < step:
                self._trained.skip_batch()
        while self._pending and self.stream.next_whole_step() >= self._pending[0]:
            boundary = self._pending.pop(0)
            start = max(boundary, self.stream.next_whole_step())
            self._decide(boundary, start, args, state, kwargs.get("model"), kwargs.get("optimizer"))
        for rec in self.stages[self._announced + 1 :]:
            if step >= rec.start_step:
                self._announced = rec.stage
                log.info("entered stage %d at step %d: %s", rec.stage, step, rec.mixture)
        return control


__all__ = ["LiveState", "MixtureScheduleCallback", "MixtureStream", "StageRecord", "mixture_dataset"]
