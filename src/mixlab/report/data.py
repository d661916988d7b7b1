"""Read what the report shows from a pipeline run directory or a benchmark JSON file.

Input formats (every file is optional; a section whose file is absent is omitted with a note):

Run directory (``mixlab train`` / ``mixlab run`` / ``mixlab demo`` output, or the Hugging Face
callback's ``out_dir``): its schedule and curve are read through :class:`~mixlab.store.RunArtifacts`,
the one reader of a run directory, which also reads the older layouts::

    RUN_DIR/
      schedule.json            {"schedule": [{"start_step": 0, "mixture": {"web": 0.6, ...}}, ...]}
                               (a bare list of stages, or a single {"mixture": {...}}, also work)
      curve.json               the run's curve (``RunCurve.to_json``); older runs: ``result.json``
                               with a ``curve``, or ``metrics.csv`` with columns run_id, step, tokens,
                               domain, loss (extra columns ignored; an optional ``split`` column keeps
                               only the validation rows when there are any)
      stages/stage_<k>/influence.json (+ optional record.json with "start_step", as the pipeline writes)
                               {"train_domains": [...], "target_domains": [...],
                                "matrix": [[...]],     # rows = train domains, columns = target domains
                                "stderr": [[...]],     # optional, same shape (null = unknown)
                                "step": 1200, ...}     # other keys ignored
                               (mixlab.influence.GroupInfluence.to_dict(); an older file stored the
                               other way round is converted on read, see mixlab.influence.matrix)
      laws/*.json              one law, a list of laws, or {"laws": [...]} (a ``mixlab fit-law --save``
                               file is one: fitted curves and cross-validated predicted vs true
                               per loss domain; it can also be passed to the report on its own); a law is
                               {"name": "web", "law": "bimix", "x_label": "tokens", "y_label": "loss",
                                "observed": {"x": [...], "y": [...]}   (or [[x, y], ...]),
                                "curve": {"x": [...], "y": [...]},     (or "fitted"; optional)
                                "params": {...}}                       (optional, shown in the legend)
      predictions.csv          columns true, predicted (also accepted: y_true/y_pred, actual/prediction;
                               an optional ``model`` column colours the points)
      bench.json               optional, as below

Bench JSON (``mixlab bench`` output): a list of objects (or {"results": [...]}) with ``method``,
``avg_loss``, ``worst_loss``, ``target_loss``, ``choose_flops``, ``choose_tokens``,
``choose_seconds``, ``seeds`` and optional ``<key>_std`` for each numeric key; each object is read
as a :class:`~mixlab.report.bench_rows.BenchRow`, the type the bench writes.

Several inputs (:func:`load_report_inputs`: run directories and/or bench JSON files) are compared on
one page: every run's mixture and loss curves are overlaid (labelled by the run directory's name),
bench rows are pooled, and influence/laws/predictions come from the first input that has them.

Loading is tolerant: a malformed optional file becomes a note in the report, never a crash; only a
path that is neither a directory nor a JSON file raises :class:`~mixlab.errors.DataError`.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, DataError
from mixlab.influence.matrix import GroupInfluence
from mixlab.mixture import Schedule
from mixlab.report.bench_rows import BenchRow
from mixlab.store import RunArtifacts

BENCH_KEYS = ("avg_loss", "worst_loss", "target_loss", "choose_flops", "choose_tokens", "choose_seconds")


@dataclass
class InfluenceStage:
    """Group Influence at one stage (``influence.matrix[i, j]`` = influence of training domain i on
    target j, the one layout of :mod:`mixlab.influence.matrix`) and the step the stage starts at."""

    stage: int
    influence: GroupInfluence
    step: int | None = None

    @property
    def train_domains(self) -> list[str]:
        return self.influence.train_domains

    @property
    def target_domains(self) -> list[str]:
        return self.influence.target_domains

    @property
    def matrix(self) -> np.ndarray:
        return self.influence.matrix

    @property
    def stderr(self) -> np.ndarray:
        """Same shape as ``matrix``; NaN where unknown."""
        return self.influence.stderr


@dataclass
class LawSeries:
    """Observed points of a mixing law and (optionally) samples of its fitted curve."""

    name: str
    observed_x: np.ndarray
    observed_y: np.ndarray
    curve_x: np.ndarray | None = None
    curve_y: np.ndarray | None = None
    law: str = ""
    x_label: str = "x"
    y_label: str = "loss"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportData:
    """Everything a report can show; ``None``/empty means the input had no such section."""

    source: Path
    kind: str
    schedule: Schedule | None = None
    metrics: list[dict[str, Any]] | None = None
    influence: list[InfluenceStage] = field(default_factory=list)
    laws: list[LawSeries] = field(default_factory=list)
    predictions: dict[str, np.ndarray] | None = None
    bench: list[BenchRow] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    """Per-section explanations (why a section is missing or partly unreadable)."""
    runs: dict[str, Schedule | None] = field(default_factory=dict)
    """Compared runs (label -> its schedule, or None); empty for a single input."""

    @property
    def last_step(self) -> int | None:
        steps = [int(r["step"]) for r in self.metrics or []]
        return max(steps) if steps else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_schedule(obj: Any, where: str) -> Schedule:
    """A schedule in :meth:`Schedule.to_json`'s form (or an older shape :meth:`Schedule.from_json`
    reads); a bad one is a :class:`~mixlab.errors.DataError` naming ``where`` (a note in the report)."""
    try:
        return Schedule.from_json(obj, where=where)
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def read_run_losses(run_dir: Path) -> list[dict[str, Any]] | None:
    """A run directory's validation losses as rows ``{run_id, step, tokens, domain, loss}``, read
    through :class:`~mixlab.store.RunArtifacts` (any layout: ``curve.json``, an older ``result.json``
    with its curve, a ``metrics.csv``); None when the run has no curve."""
    artifacts = RunArtifacts(run_dir)
    rows = artifacts.metric_rows("val") or artifacts.metric_rows()
    if not rows:
        return None
    return [{k: r[k] for k in ("run_id", "step", "tokens", "domain", "loss")} for r in rows]


def read_influence(path: Path, stage: int) -> InfluenceStage:
    """Read a Group Influence record (``mixlab.influence.GroupInfluence.to_dict()``) and the step its
    stage starts at (its ``step``, or the ``start_step`` of the stage's ``record.json``)."""
    obj = _read_json(path)
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: needs train_domains, target_domains and a numeric matrix")
    influence = GroupInfluence.from_dict(obj, where=str(path))
    step = obj.get("step", obj.get("start_step"))
    record = path.parent / "record.json"
    if step is None and record.is_file():  # the dynamic pipeline keeps the stage's start step there
        try:
            step = json.loads(record.read_text()).get("start_step")
        except (OSError, ValueError, AttributeError):
            step = None
    return InfluenceStage(stage, influence, int(step) if step is not None else None)


def _xy(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(obj, dict):
        x, y = obj.get("x"), obj.get("y")
    elif isinstance(obj, list):
        arr = np.asarray(obj, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise DataError(f"{where}: expected [[x, y], ...]")
        x, y = arr[:, 0], arr[:, 1]
    else:
        raise DataError(f"{where}: expected {{'x': [...], 'y': [...]}}")
    xa, ya = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape or xa.size == 0:
        raise DataError(f"{where}: x and y must be non-empty and of equal length")
    return xa, ya


def read_laws(path: Path) -> list[LawSeries]:
    obj = _read_json(path)
    items = obj.get("laws", [obj]) if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a law object, a list of them, or {{'laws': [...]}}")
    out = []
    for i, item in enumerate(items):
        where = f"{path} law {i}"
        if not isinstance(item, dict) or "observed" not in item:
            raise DataError(f"{where}: needs 'observed' points")
        ox, oy = _xy(item["observed"], f"{where} observed")
        curve = item.get("curve", item.get("fitted"))
        cx = cy = None
        if curve is not None:
            cx, cy = _xy(curve, f"{where} curve")
        out.append(
            LawSeries(
                name=str(item.get("name", item.get("domain", path.stem))),
                observed_x=ox,
                observed_y=oy,
                curve_x=cx,
                curve_y=cy,
                law=str(item.get("law", "")),
                x_label=str(item.get("x_label", "x")),
                y_label=str(item.get("y_label", "loss")),
                params=dict(item.get("params") or {}),
            )
        )
    return out


def law_record(
    name: str,
    observed_x: Any,
    observed_y: Any,
    curve_x: Any = None,
    curve_y: Any = None,
    *,
    law: str = "",
    x_label: str = "x",
    y_label: str = "loss",
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One law in the ``laws/*.json`` format the report reads (write a list of these with
    :func:`mixlab.utils.io.atomic_write_json`); validates shapes so a bad record fails at write time."""
    ox, oy = _xy({"x": observed_x, "y": observed_y}, f"law {name!r} observed")
    out: dict[str, Any] = {
        "name": name,
        "law": law,
        "x_label": x_label,
        "y_label": y_label,
        "observed": {"x": ox.tolist(), "y": oy.tolist()},
    }
    if curve_x is not None:
        cx, cy = _xy({"x": curve_x, "y": curve_y}, f"law {name!r} curve")
        out["curve"] = {"x": cx.tolist(), "y": cy.tolist()}
    if params:
        out["params"] = {
            k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in params.items()
        }
    return out


_PRED_COLUMNS = (("true", "predicted"), ("y_true", "y_pred"), ("actual", "prediction"), ("true", "pred"))


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            pair = next((p for p in _PRED_COLUMNS if set(p) <= cols), None)
            if pair is None:
                raise DataError(f"{path}: needs columns 'true' and 'predicted' (has {sorted(cols)})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    true = np.array([_float(r[pair[0]]) for r in rows])
    pred = np.array([_float(r[pair[1]]) for r in rows])
    keep = np.isfinite(true) & np.isfinite(pred)
    if not keep.any():
        raise DataError(f"{path}: no finite (true, predicted) pairs")
    out = {"true": true[keep], "predicted": pred[keep]}
    if "model" in cols:
        out["model"] = np.array([r["model"] for r in rows], dtype=object)[keep]
    return out


def parse_bench(obj: Any, where: str) -> list[BenchRow]:
    """The rows of a bench file: a list of result objects, or ``{"results": [...]}``."""
    if isinstance(obj, dict):
        obj = obj.get("results", obj.get("methods"))
    if not isinstance(obj, list) or not obj or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"{where}: expected a list of result objects with 'method', 'avg_loss', ...")
    return [BenchRow.from_json(r, f"{where}: result {i}") for i, r in enumerate(obj)]


def _stage_index(path: Path) -> int | None:
    m = re.fullmatch(r"stage_(\d+)", path.parent.name)
    return int(m.group(1)) if m else None


def _try(data: ReportData, section: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except DataError as exc:
        data.notes[section] = str(exc)
        return None


def load_report_input(path: str | Path) -> ReportData:
    """Load a run directory, a bench JSON file or a `mixlab fit-law --save` file into a :class:`ReportData`."""
    p = Path(path)
    if p.is_file() and p.suffix == ".json":
        data = ReportData(source=p, kind="bench")
        obj = _read_json(p)
        if isinstance(obj, dict) and "laws" in obj and "results" not in obj:  # `mixlab fit-law --save` output
            data.kind = "laws"
            data.laws = read_laws(p)
        elif isinstance(obj, dict) and "schedule" in obj and "results" not in obj:
            data.schedule = read_schedule(obj, str(p))
        else:
            data.bench = parse_bench(obj, str(p))
        return data
    if not p.is_dir():
        raise DataError(
            f"{p}: not a run directory or a bench .json file; pass the folder `mixlab run` wrote or bench.json"
        )
    data = ReportData(source=p, kind="run")
    artifacts = RunArtifacts(p)
    data.schedule = _try(data, "schedule", artifacts.schedule)
    data.metrics = _try(data, "losses", read_run_losses, p)
    for f in sorted(p.glob("stages/stage_*/influence.json"), key=lambda f: _stage_index(f) or 0):
        k = _stage_index(f)
        if k is None:
            continue
        got = _try(data, f"influence stage {k}", read_influence, f, k)
        if got is not None:
            data.influence.append(got)
    for f in sorted(p.glob("laws/*.json")):
        got = _try(data, f"law {f.name}", read_laws, f)
        data.laws.extend(got or [])
    preds = p / "predictions.csv"
    if preds.is_file():
        data.predictions = _try(data, "predictions", read_predictions, preds)
    bench = p / "bench.json"
    if bench.is_file():
        data.bench = _try(data, "bench", lambda: parse_bench(_read_json(bench), str(bench)))
    return data


def _labels(paths: list[Path]) -> list[str]:
    """A short, unique label per input: its directory or file name (numbered when names repeat)."""
    names = [p.name if p.is_dir() else p.stem for p in paths]
    out = []
    for i, n in enumerate(names):
        out.append(n if names.count(n) == 1 else f"{n}#{names[: i + 1].count(n)}")
    return out


def load_report_inputs(paths: str | Path | list[str | Path]) -> ReportData:
    """Load one input (as :func:`load_report_input`) or several, merged for comparison.

    With several, each run's metrics rows are relabelled with the run's label (``label`` or
    ``label/run_id`` when a run directory holds several run ids), ``runs`` holds each run's schedule,
    ``schedule`` is the first run's, and bench rows from every input are pooled.
    """
    items = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
    if not items:
        raise DataError("give at least one run directory or bench .json file")
    if len(items) == 1:
        return load_report_input(items[0])
    loaded = [load_report_input(p) for p in items]
    merged = ReportData(source=items[0], kind="compare")
    metrics: list[dict[str, Any]] = []
    bench: list[BenchRow] = []
    for label, data in zip(_labels(items), loaded, strict=True):
        if data.kind == "run" or data.schedule is not None:
            merged.runs[label] = data.schedule
        ids = {str(r["run_id"]) for r in data.metrics or []}
        for r in data.metrics or []:
            metrics.append({**r, "run_id": label if len(ids) == 1 else f"{label}/{r['run_id']}"})
        for r in data.bench or []:
            bench.append(r.model_copy(update={"method": f"{r.method} ({label})"}))
        if merged.schedule is None:
            merged.schedule = data.schedule
        if not merged.influence:
            merged.influence = data.influence
        if not merged.laws:
            merged.laws = data.laws
        if merged.predictions is None:
            merged.predictions = data.predictions
        for k, v in data.notes.items():
            merged.notes[k] = f"{label}: {v}"
    merged.metrics = metrics or None
    merged.bench = bench or None
    return merged
