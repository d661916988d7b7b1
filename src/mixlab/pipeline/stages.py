"""The stage engine: what happens at a stage boundary, in one place.

A dynamic run is split into stages; at each boundary a mixer chooses the next stage's mixture from
the live model. Three drivers reach a boundary in their own way (the dynamic pipeline behind
``mixlab run`` and the bench, :mod:`mixlab.pipeline.dynamic`; the Hugging Face Trainer callback,
:mod:`mixlab.integrations.hf`) and all hand it to :class:`StageEngine`, which

1. captures the random states (CPU, and every CUDA device's when CUDA is present) and puts the model
   in eval mode,
2. measures Group Influence itself when asked (``influence=`` settings; the mixer then finds it in
   ``ctx.live.influence``),
3. calls ``mixer.propose(ctx)`` and reads the :class:`~mixlab.mixers.base.Proposal` (a bare Mixture
   from an older mixer is wrapped),
4. restores the random states, the model's mode and empty gradients, so the next optimizer step is
   the one it would have been without the decision,
5. returns one :class:`StageRecord` (mixture, influence, solver outcome, measurements, the compute and
   seconds the decision took, the random states' fingerprints) and writes it to
   ``stages/stage_<k>/`` (``record.json``, ``mixture.json``, ``influence.json``).

A resumed run replays a boundary whose record exists (:meth:`StageEngine.recorded`) instead of
deciding again. Records read back with :meth:`StageRecord.from_dict`, which keeps keys it does not
know and converts older layouts (the HF callback's ``index``, a transposed influence matrix).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from mixlab.errors import ConfigError, DataError, MixlabError
from mixlab.influence.group import measure_group_influence
from mixlab.influence.matrix import GroupInfluence
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture
from mixlab.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)


@dataclass
class RandomState:
    """torch's random states: the CPU generator's and, when CUDA is present, every device's."""

    cpu: torch.Tensor
    cuda: list[torch.Tensor] | None = None

    @classmethod
    def capture(cls) -> RandomState:
        return cls(torch.random.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def restore(self) -> None:
        torch.random.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)

    def fingerprint(self) -> dict[str, Any]:
        """Short digests of the states (JSON-able): equal digests mean equal random streams."""
        out: dict[str, Any] = {"torch_cpu": _digest(self.cpu)}
        if self.cuda is not None:
            out["torch_cuda"] = [_digest(s) for s in self.cuda]
        return out


def _digest(state: torch.Tensor) -> str:
    return hashlib.sha256(state.cpu().numpy().tobytes()).hexdigest()[:16]


@dataclass(kw_only=True)
class LiveState:
    """The live training state a dynamic mixer sees as ``ctx.live`` at a stage boundary."""

    model: torch.nn.Module
    """The model behind the mixlab interface (``model(input_ids, labels) -> (logits, loss)``)."""
    optimizer: Any
    """The torch optimizer (for Adam-preconditioned influence and continuations), or None."""
    seq_len: int
    batch_size: int
    step: int
    """Optimizer steps the model has taken."""
    device: Any = None
    total_steps: int | None = None
    sampler: Any = None
    """The run's mixture sampler, when the driver has one to show."""
    hf_model: Any = None
    """The Hugging Face model ``model`` wraps (HF callback only)."""
    influence: GroupInfluence | None = None
    """Group Influence measured by the engine (``influence=`` settings), or None: mixers such as
    TiKMiX-D use it instead of measuring again."""
    random_state: RandomState | None = None
    """The random states at the boundary (captured by the engine before the mixer runs)."""
    boundaries: tuple[int, ...] = ()
    """The run's stage boundaries (optimizer steps): a mixer that plans over the whole run (TiKMiX-D's
    ``mirror`` step) reads its number of decisions here."""


@dataclass
class StageRecord:
    """What was decided at one stage boundary, and how (``stages/stage_<k>/record.json``)."""

    stage: int
    start_step: int
    mixture: Mixture
    method: str = "given"
    """The method that chose the mixture (``given``: set in advance)."""
    previous: Mixture | None = None
    decided_at_step: int | None = None
    """Optimizer steps the model had taken when the mixture was chosen (None: given in advance)."""
    seconds: float | None = None
    """Wall seconds the decision took (measurement and solve)."""
    val_losses: dict[str, float] | None = None
    """The last evaluation before the boundary."""
    domain_counts: dict[str, int] | None = None
    """Sequences drawn per domain up to the boundary (cumulative)."""
    influence: GroupInfluence | None = None
    """The Group Influence the mixture was chosen from (rows = training domains, columns = targets)."""
    measurements: list[dict[str, Any]] | None = None
    """One entry per influence measurement of the budget (tokens, seed, stability, cost)."""
    solver: dict[str, Any] | None = None
    """The solver's outcome (status, message, success, fallback)."""
    compute: dict[str, float] | None = None
    """What the decision spent: ``{"flops", "tokens", "seconds"}`` added to the run's choosing ledger."""
    random_state: dict[str, Any] | None = None
    """Fingerprints of the random states at the boundary (:meth:`RandomState.fingerprint`)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of a stored record this class does not know (kept when a record is read back)."""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["mixture"] = self.mixture.to_dict()
        out["previous"] = self.previous.to_dict() if self.previous is not None else None
        out["influence"] = self.influence.to_dict() if self.influence is not None else None
        return {k: v for k, v in out.items() if v is not None} | self.extra

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "stage record") -> StageRecord:
        """Read :meth:`to_dict`'s record, or an older one (``index`` for ``stage``, a transposed
        influence matrix); unknown keys are kept in ``extra``."""
        data = dict(data)
        if "stage" not in data and "index" in data:  # the HF callback's records before the engine
            data["stage"] = data.pop("index")
        missing = {"stage", "start_step", "mixture"} - set(data)
        if missing:
            raise MixlabError(f"{where} lacks {sorted(missing)}; delete the run directory to start over")
        known = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            kw["mixture"] = Mixture(kw["mixture"])
            if kw.get("previous") is not None:
                kw["previous"] = Mixture(kw["previous"])
        except ConfigError as exc:
            raise MixlabError(f"{where}: {exc}") from None
        if kw.get("influence") is not None:
            try:
                kw["influence"] = GroupInfluence.from_dict(kw["influence"], where=f"{where}: influence")
            except DataError as exc:
                log.warning("%s; kept as written", exc)
                extra["influence"] = kw.pop("influence")
        kw["method"] = kw.get("method") or "given"
        return cls(**kw, extra=extra)


def measure_live(ctx: MixingContext, live: LiveState, settings: Mapping[str, Any]) -> GroupInfluence:
    """Group Influence of ``ctx.domains`` on ``ctx.targets`` at the live model, with ``settings``
    (keywords of :func:`mixlab.influence.measure_group_influence`, at least ``tokens_per_domain``;
    Adam-preconditioned with the live optimizer unless told otherwise); its cost goes to ``ctx.compute``."""
    kw = {"preconditioner": "adam", "seed": ctx.seed, **settings}
    if "tokens_per_domain" not in kw:
        raise ConfigError("influence settings need tokens_per_domain (training tokens per domain to measure)")
    if kw["preconditioner"] == "adam":
        kw.setdefault("optimizer", live.optimizer)
    kw.setdefault("target_sources", ctx.target_sources)
    gi = measure_group_influence(
        live.model, ctx.corpus, train_domains=list(ctx.domains), target_domains=ctx.targets,
        seq_len=live.seq_len, batch_size=live.batch_size, **kw,
    )  # fmt: skip
    ctx.compute.add(flops=gi.flops, tokens=gi.tokens, seconds=gi.seconds)
    log.info("Group Influence on the live model after %d steps: %d tokens, %.1fs", live.step, gi.tokens, gi.seconds)
    return gi


def warn_decisions_in_warmup(boundaries: Sequence[int], warmup: int, total_steps: int) -> list[int]:
    """Log one warning naming the stage boundaries that fall inside the learning-rate warm-up (the first
    ``warmup`` of ``total_steps`` optimizer steps) and return them. A decision there measures a transient
    state of the young model: on vim's ``pattern.txt`` a decision at step 6 of 192 moved weight to the
    wrong domain in every seed."""
    early = [int(b) for b in boundaries if b < warmup]
    if early:
        log.warning(
            "stage boundaries at steps %s fall inside the learning-rate warm-up (%d of %d steps): a "
            "decision there measures a transient state of the young model (on vim's pattern.txt a "
            "decision at step 6 of 192 moved weight to the wrong domain in every seed); a first "
            "boundary at or after %.2f of the run avoids it", early, warmup, total_steps,
            warmup / total_steps)
    return early


class StageEngine:
    """Decides, records and replays stages for one run (see the module docstring).

    ``mixer`` chooses every decided stage (``method`` names it in the records; default its registry
    name; None: every stage is given in advance); ``influence`` (optional) asks the engine to measure
    Group Influence itself before the mixer runs; ``stages_dir`` (optional) is where records are
    written and read back on resume.
    """

    def __init__(
        self,
        mixer: Mixer | None,
        *,
        method: str | None = None,
        influence: Mapping[str, Any] | None = None,
        stages_dir: str | Path | None = None,
    ) -> None:
        self.mixer = mixer
        self.method = method or getattr(mixer, "name", None) or type(mixer).__name__
        self.influence = dict(influence) if influence is not None else None
        self.stages_dir = Path(stages_dir) if stages_dir is not None else None
        self.records: list[StageRecord] = []

    def given(self, stage: int, start_step: int, mixture: Mixture, method: str = "given") -> StageRecord:
        """Record a stage whose mixture was set in advance (stage 0, or a static schedule's stages)."""
        record = StageRecord(stage=stage, start_step=start_step, mixture=mixture, method=method)
        self.records.append(record)
        self.write(record)
        return record

    def recorded(self, stage: int) -> StageRecord | None:
        """The written record of ``stage`` (a resumed run replays it), or None."""
        if self.stages_dir is None:
            return None
        path = self.stages_dir / f"stage_{stage}" / "record.json"
        return StageRecord.from_dict(read_json(path), where=str(path)) if path.is_file() else None

    def replay(self, record: StageRecord) -> StageRecord:
        """Take a recorded stage as decided (resume: never decided again)."""
        self.records.append(record)
        log.info("stage %d: replaying recorded mixture %s", record.stage, record.mixture)
        return record

    def history(self) -> list[dict[str, Any]]:
        """The records so far as dicts, oldest first (``MixingContext.history``)."""
        return [r.to_dict() for r in self.records]

    def decide(
        self,
        ctx: MixingContext,
        live: LiveState,
        *,
        start_step: int,
        val_losses: Mapping[str, float] | None = None,
        domain_counts: Mapping[str, int] | None = None,
    ) -> StageRecord:
        """Ask the mixer for stage ``ctx.stage``'s mixture at the live model; the random states, the
        model's mode and its (empty) gradients are as they were when this returns."""
        if self.mixer is None:
            raise MixlabError(f"stage {ctx.stage}: no mixer to choose its mixture (the stages were given in advance)")
        spent_before = ctx.compute.to_dict()
        state = RandomState.capture()
        live.random_state = state
        ctx.live = live
        model = live.model
        was_training = model.training
        t0 = time.perf_counter()
        model.eval()
        try:
            if self.influence is not None:
                live.influence = measure_live(ctx, live, self.influence)
            proposal = Proposal.of(self.mixer.propose(ctx), mixer=self.mixer)
        finally:
            model.train(was_training)
            model.zero_grad(set_to_none=True)
            if live.optimizer is not None:
                live.optimizer.zero_grad(set_to_none=True)
            state.restore()
        seconds = time.perf_counter() - t0
        mixture = proposal.stage_mixture(f"stage {ctx.stage} (from step {start_step})")
        spent = {k: ctx.compute.to_dict()[k] - spent_before[k] for k in spent_before}
        record = StageRecord(
            stage=ctx.stage, start_step=start_step, mixture=mixture, method=self.method, previous=ctx.previous,
            decided_at_step=live.step, seconds=seconds, val_losses=dict(val_losses) if val_losses else None,
            domain_counts=dict(domain_counts) if domain_counts is not None else None,
            influence=proposal.influence if proposal.influence is not None else live.influence,
            measurements=proposal.measurements, solver=proposal.solver, compute=spent,
            random_state=state.fingerprint(),
        )  # fmt: skip
        log.info("stage %d (from step %d): %s  [decided in %.1fs by %s]", record.stage, start_step, mixture,
                 seconds, self.method)
        if record.solver is not None and record.solver.get("fallback"):
            log.warning("stage %d: the solver failed (%s); used fallback %r", record.stage,
                        record.solver.get("message"), record.solver["fallback"])
        self.records.append(record)
        self.write(record)
        return record

    def write(self, record: StageRecord) -> None:
        """``stages/stage_<k>/{mixture,influence,record}.json`` (nothing without ``stages_dir``)."""
        if self.stages_dir is None:
            return
        d = self.stages_dir / f"stage_{record.stage}"
        atomic_write_json(d / "mixture.json", {"mixture": record.mixture.to_dict()})
        if record.influence is not None:
            atomic_write_json(d / "influence.json", {**record.influence.to_dict(), "step": record.start_step})
        atomic_write_json(d / "record.json", record.to_dict())


__all__ = ["LiveState", "RandomState", "StageEngine", "StageRecord", "measure_live", "warn_decisions_in_warmup"]
