"""Read sweep results shaped like RegMix's published CSVs: an ``index`` column, then one column per
domain (mixture files) or per loss (loss files); files pair up row by row, by position."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixlab.errors import DataError
from mixlab.utils.io import read_text


@dataclass
class Table:
    """One CSV: the ``index`` column (as strings), the other column names, and their values."""

    path: Path
    index: list[str]
    columns: list[str]
    values: np.ndarray
    lines: list[int] = field(default_factory=list)
    """The file's 1-based line number of each data row (for "line N" in errors)."""

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise DataError(f"{self.path}: no column {name!r}; columns are {self.columns}")
        return self.values[:, self.columns.index(name)]


def read_table(path: str | Path, *, index_column: str = "index") -> Table:
    """Parse a CSV with a header; the ``index`` column is optional (row numbers are used without it)."""
    p = Path(path)
    reader = csv.reader(io.StringIO(read_text(p, what="CSV file"), newline=""))
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if row and any(c.strip() for c in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{p}: line {reader.line_num}: not a valid CSV ({exc})") from None
    lines = lines[1:]
    if len(rows) < 2:
        raise DataError(f"{p}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise DataError(f"{p}: duplicate column names in the header")
    has_index = index_column in header
    idx_pos = header.index(index_column) if has_index else -1
    columns = [h for i, h in enumerate(header) if i != idx_pos]
    if not columns:
        raise DataError(f"{p}: no value columns besides {index_column!r}")
    index: list[str] = []
    values = np.empty((len(rows) - 1, len(columns)))
    for r, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"{p}: line {lines[r]} has {len(row)} fields, the header has {len(header)}")
        index.append(row[idx_pos].strip() if has_index else str(r))
        vals = [c for i, c in enumerate(row) if i != idx_pos]
        for j, cell in enumerate(vals):
            try:
                values[r, j] = float(cell) if cell.strip() else math.nan
            except ValueError:
                raise DataError(f"{p}: line {lines[r]}, column {columns[j]!r}: {cell!r} is not a number") from None
    return Table(p, index, columns, values, lines)


def load_sweep(mixtures: str | Path, losses: str | Path) -> tuple[Table, Table]:
    """A mixture file and its loss file, checked to pair up row by row."""
    mix = read_table(mixtures)
    loss = read_table(losses)
    if len(mix.index) != len(loss.index):
        raise DataError(
            f"{mix.path} has {len(mix.index)} runs but {loss.path} has {len(loss.index)}; rows align by position"
        )
    return mix, loss
