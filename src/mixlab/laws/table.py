"""Wide CSV tables of proxy-run results, the input format of ``mixlab fit-law``.

One row per (run, evaluation): a column ``r_<d>`` per training domain ``d`` (its proportion in the
run's mixture), ``step``, and ``loss_<d>`` for every domain whose loss is modelled. Any other columns
(notes) are ignored, except ``run``: when present it names each row's proxy run (otherwise rows with
the same proportions are one run). A query table has the ``r_<d>`` columns and ``step``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixlab.errors import DataError
from mixlab.laws._run_effects import run_index
from mixlab.utils.io import atomic_open, read_text


@dataclass
class WideTable:
    """A parsed wide table: proportions ``R [n, k]`` over ``domains``, ``steps [n]`` (NaN if the
    table has no step column), losses ``Y [n, m]`` over ``loss_domains`` (empty if none) and run
    indices ``runs [n]`` (from the ``run`` column, else one run per distinct mixture)."""

    path: Path
    domains: list[str]
    R: np.ndarray
    steps: np.ndarray
    loss_domains: list[str]
    Y: np.ndarray
    runs: np.ndarray


def read_wide_csv(path: str | Path, *, need_losses: bool = True, need_step: bool = True) -> WideTable:
    """Read and validate a wide CSV; every problem is a :class:`DataError` naming the file, row and column."""
    p = Path(path)
    reader = csv.DictReader(io.StringIO(read_text(p, what="CSV file"), newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{p}: line {reader.line_num}: not a valid CSV ({exc})") from None
    if not header:
        raise DataError(f"{p}: empty file; expected a header with r_<domain>, step and loss_<domain> columns")
    r_cols = [h for h in header if h.startswith("r_") and len(h) > 2]
    l_cols = [h for h in header if h.startswith("loss_") and len(h) > 5]
    if not r_cols:
        raise DataError(f"{p}: no proportion columns; name one column r_<domain> per training domain (e.g. r_web)")
    if need_step and "step" not in header:
        raise DataError(f"{p}: missing the 'step' column (the training step of each evaluation)")
    if need_losses and not l_cols:
        raise DataError(f"{p}: no loss columns; name one column loss_<domain> per modelled domain (e.g. loss_web)")
    if not rows:
        raise DataError(f"{p}: the header has no data rows under it")

    def num(row: dict, col: str, i: int) -> float:
        raw = (row.get(col) or "").strip()
        try:
            v = float(raw)
        except ValueError:
            raise DataError(f"{p}: row {i + 2}, column {col!r}: {raw!r} is not a number") from None
        if not math.isfinite(v):
            raise DataError(f"{p}: row {i + 2}, column {col!r} is {raw!r}; remove the row or fill in the value")
        return v

    R = np.array([[num(row, c, i) for c in r_cols] for i, row in enumerate(rows)])
    if np.any(R < 0):
        i = int(np.argwhere(R < 0)[0, 0])
        raise DataError(f"{p}: row {i + 2} has a negative proportion")
    sums = R.sum(axis=1)
    bad = np.nonzero(np.abs(sums - 1) > 1e-3)[0]
    if bad.size:
        raise DataError(
            f"{p}: row {int(bad[0]) + 2}: the r_ columns sum to {sums[bad[0]]:.4g}, not 1; every training domain "
            "needs its r_<domain> column and the proportions of a run must sum to 1"
        )
    steps = np.array([num(row, "step", i) for i, row in enumerate(rows)]) if "step" in header else np.full(len(rows), np.nan)
    if "step" in header and np.any(steps <= 0):
        i = int(np.nonzero(steps <= 0)[0][0])
        raise DataError(f"{p}: row {i + 2}: step must be positive (drop step-0 evaluations)")
    Y = np.array([[num(row, c, i) for c in l_cols] for i, row in enumerate(rows)]) if l_cols else np.zeros((len(rows), 0))
    if Y.size and np.any(Y <= 0):
        raise DataError(f"{p}: losses must be positive")
    if "run" in header:
        runs = run_index(np.array([(row.get("run") or "").strip() for row in rows]))
    else:
        runs = run_index(np.round(R, 12))
    return WideTable(p, [c[2:] for c in r_cols], R, steps, [c[5:] for c in l_cols], Y, runs)


def write_predictions(path: str | Path, query: WideTable, loss_domains: list[str], pred: np.ndarray) -> None:
    """Write the query's ``r_<d>`` and ``step`` columns plus predicted ``loss_<d>`` (atomically)."""
    with atomic_open(path, "w") as fh:
        w = csv.writer(fh)
        w.writerow([f"r_{d}" for d in query.domains] + ["step"] + [f"loss_{d}" for d in loss_domains])
        for r, s, y in zip(query.R, query.steps, pred, strict=True):
            w.writerow([f"{v:.10g}" for v in r] + [f"{s:.10g}"] + [f"{v:.10g}" for v in y])
