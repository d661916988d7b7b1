"""The run directory: one reader and one writer for everything a run leaves on disk.

Layout (every file written atomically, only by :class:`RunArtifacts`)::

    RUN_DIR/
      config.yaml      the run's settings (``TrainConfig`` as written back, mixture included)
      model.json       the model's description ({"gpt": GPTConfig} or {"hf": config})
      schedule.json    {"schedule": Schedule.to_json()}: the mixture of every stage, as trained
      curve.json       RunCurve.to_json(): validation loss per domain at every evaluated step and the
                       mean training loss of every optimizer step -- the one copy of a run's curve
      result.json      the summary of a finished run (run_id, steps, tokens, flops, seconds, final)
      checkpoints/     step-<N>/ directories and the ``latest`` pointer (mixlab.train.checkpoint)

The run store (``mixlab.db``) keeps a pointer to this directory and a summary (status, final losses);
checkpoints keep only what resuming needs. Readers also accept the older layouts, so run directories
written before this one still read: a ``result.json`` holding the whole ``curve``, a ``metrics.csv``
(``run_id, step, tokens, domain, loss`` with an optional ``split`` column; the pipeline and the
Hugging Face callback wrote one) and a schedule in any shape :meth:`Schedule.from_json` reads.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixlab.errors import ConfigError, DataError
from mixlab.mixture import Schedule
from mixlab.utils.io import atomic_write_json, atomic_write_yaml, read_json, read_yaml

CONFIG = "config.yaml"
MODEL = "model.json"
SCHEDULE = "schedule.json"
CURVE = "curve.json"
RESULT = "result.json"
CHECKPOINTS = "checkpoints"
METRICS_CSV = "metrics.csv"
"""Older layouts only: read, never written (``mixlab runs export`` writes a CSV of any runs)."""

METRIC_COLUMNS = ("run_id", "split", "step", "tokens", "domain", "loss")
_VAL_SPLITS = ("val", "valid", "validation", "eval")


@dataclass
class RunCurve:
    """A run's losses: ``val[step][domain]`` at every evaluated step (evaluation-only targets appear as
    ``target:<name>``), ``train[step]`` the mean training loss of every optimizer step (1-based), and
    the tokens one optimizer step consumes (all ranks), so every row can say how many tokens it is at."""

    val: dict[int, dict[str, float]] = field(default_factory=dict)
    train: dict[int, float] = field(default_factory=dict)
    tokens_per_step: int | None = None

    @property
    def final(self) -> dict[str, float]:
        """Validation losses at the last evaluated step ({} before the first evaluation)."""
        return dict(self.val[max(self.val)]) if self.val else {}

    def upto(self, step: int) -> RunCurve:
        """The curve as it stood at ``step`` (what a run resumed from that step's checkpoint had)."""
        return RunCurve(
            {s: dict(v) for s, v in self.val.items() if s <= step},
            {s: v for s, v in self.train.items() if s <= step},
            self.tokens_per_step,
        )

    def tokens_at(self, step: int) -> int | None:
        return None if self.tokens_per_step is None else int(step) * int(self.tokens_per_step)

    def rows(self, run_id: str, split: str | None = None) -> list[dict[str, Any]]:
        """Metric rows ``{run_id, split, step, tokens, domain, loss}`` (``val`` rows, then ``train`` rows
        with domain ``all``), optionally of one split."""
        out: list[dict[str, Any]] = []
        if split in (None, "val"):
            out += [
                {"run_id": run_id, "split": "val", "step": s, "tokens": self.tokens_at(s), "domain": d, "loss": v}
                for s in sorted(self.val) for d, v in self.val[s].items()
            ]
        if split in (None, "train"):
            out += [
                {"run_id": run_id, "split": "train", "step": s, "tokens": self.tokens_at(s), "domain": "all",
                 "loss": self.train[s]}
                for s in sorted(self.train)
            ]
        return out

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> RunCurve:
        """The curve of metric rows (``split`` defaults to ``val``; ``tokens`` gives tokens per step)."""
        curve = cls()
        for r in rows:
            step, loss = int(r["step"]), float(r["loss"])
            if str(r.get("split", "val")) == "train":
                curve.train[step] = loss
            else:
                curve.val.setdefault(step, {})[str(r["domain"])] = loss
            tokens = r.get("tokens")
            if curve.tokens_per_step is None and tokens is not None and step > 0:
                curve.tokens_per_step = int(tokens) // step
        return curve

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens_per_step": self.tokens_per_step,
            "val": {str(s): self.val[s] for s in sorted(self.val)},
            "train": {str(s): self.train[s] for s in sorted(self.train)},
        }

    @classmethod
    def from_json(cls, obj: Any, *, where: str = "curve") -> RunCurve:
        try:
            tps = obj.get("tokens_per_step")
            return cls(
                {int(s): {str(d): float(v) for d, v in losses.items()} for s, losses in obj.get("val", {}).items()},
                {int(s): float(v) for s, v in obj.get("train", {}).items()},
                None if tps is None else int(tps),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: not a run curve ({type(exc).__name__}: {exc})") from None


class RunArtifacts:
    """The files of one run directory: ``RunArtifacts(run_dir).curve()``.

    Writers are atomic (a reader never sees half a file) and are called by the run's one writer (rank 0
    of the trainer, the pipeline, the Hugging Face callback); readers return ``None`` for a file the run
    has not written and raise :class:`~mixlab.errors.DataError` naming the file for a damaged one.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunArtifacts({str(self.root)!r})"

    @property
    def checkpoints(self) -> Path:
        """The checkpoints folder (its layout belongs to ``mixlab.train.checkpoint``)."""
        return self.root / CHECKPOINTS

    def is_run(self) -> bool:
        """Whether the directory holds a run (a model description or a curve in any layout)."""
        return any((self.root / name).is_file() for name in (MODEL, CURVE, RESULT, METRICS_CSV))

    # ------------------------------------------------------------------------------- writers
    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_yaml(self.root / CONFIG, dict(config))

    def write_model(self, description: Mapping[str, Any]) -> None:
        atomic_write_json(self.root / MODEL, dict(description))

    def write_schedule(self, schedule: Schedule) -> None:
        atomic_write_json(self.root / SCHEDULE, {"schedule": schedule.to_json()})

    def write_curve(self, curve: RunCurve) -> None:
        atomic_write_json(self.root / CURVE, curve.to_json())

    def write_result(self, summary: Mapping[str, Any]) -> None:
        """The summary of a finished run; its curve stays in ``curve.json`` (one copy)."""
        atomic_write_json(self.root / RESULT, dict(summary))

    # ------------------------------------------------------------------------------- readers
    def config(self) -> dict[str, Any] | None:
        path = self.root / CONFIG
        if not path.is_file():
            return None
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        return data

    def model(self) -> dict[str, Any] | None:
        path = self.root / MODEL
        return read_json(path) if path.is_file() else None

    def schedule(self) -> Schedule | None:
        """The run's schedule (``schedule.json``), or None when it wrote none."""
        path = self.root / SCHEDULE
        if not path.is_file():
            return None
        try:
            return Schedule.from_json(read_json(path), where=str(path))
        except ConfigError as exc:
            raise DataError(str(exc)) from None

    def result(self) -> dict[str, Any] | None:
        path = self.root / RESULT
        if not path.is_file():
            return None
        data = read_json(path)
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return data

    def run_id(self) -> str:
        """The run's id: from ``result.json`` or ``config.yaml`` when they name it, else the folder's name."""
        for getter, key in ((self.result, "run_id"), (self.config, "run_name")):
            try:
                value = (getter() or {}).get(key)
            except DataError:
                value = None
            if value:
                return str(value)
        return self.root.name or "run"

    def curve(self) -> RunCurve | None:
        """The run's curve from ``curve.json``, or from an older layout (``result.json``'s ``curve``,
        ``metrics.csv``); None when the run has not evaluated yet."""
        path = self.root / CURVE
        if path.is_file():
            return RunCurve.from_json(read_json(path), where=str(path))
        result = self.result()
        if result is not None and isinstance(result.get("curve"), dict):
            return _curve_of_old_result(result, self.root / RESULT)
        if (self.root / METRICS_CSV).is_file():
            return RunCurve.from_rows(r for r in self.metric_rows() if r["loss"] is not None)
        return None

    def metric_rows(self, split: str | None = None) -> list[dict[str, Any]]:
        """The curve as rows ``{run_id, split, step, tokens, domain, loss}``; an older layout's
        ``metrics.csv`` keeps its own ``run_id`` column (one CSV may hold several runs)."""
        if not (self.root / CURVE).is_file() and (self.root / METRICS_CSV).is_file():
            rows = _read_metrics_csv(self.root / METRICS_CSV)
            return [r for r in rows if split is None or r["split"] == split]
        curve = self.curve()
        return [] if curve is None else curve.rows(self.run_id(), split)


def _curve_of_old_result(result: Mapping[str, Any], path: Path) -> RunCurve:
    """The curve an older ``mixlab train`` stored in its ``result.json``."""
    curve = RunCurve.from_json({"val": result["curve"]}, where=str(path))
    steps, tokens = result.get("steps"), result.get("tokens")
    if isinstance(steps, int) and steps > 0 and isinstance(tokens, int):
        curve.tokens_per_step = tokens // steps
    return curve


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_metrics_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of an older layout's ``metrics.csv``; with a ``split`` column, validation rows are ``val``."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"step", "domain", "loss"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: missing column(s) {sorted(missing)}; need run_id, step, tokens, domain, loss")
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    rows = []
    for r in raw:
        step, tokens = _number(r.get("step")), _number(r.get("tokens"))
        if math.isnan(step):
            continue
        split = str(r.get("split") or "val").lower()
        rows.append({
            "run_id": r.get("run_id") or "run",
            "split": "val" if split in _VAL_SPLITS else split,
            "step": int(step),
            "tokens": None if math.isnan(tokens) else int(tokens),
            "domain": r.get("domain") or "?",
            "loss": _number(r.get("loss")),
        })
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


__all__ = ["CHECKPOINTS", "CONFIG", "CURVE", "METRIC_COLUMNS", "MODEL", "RESULT", "SCHEDULE", "RunArtifacts", "RunCurve"]
