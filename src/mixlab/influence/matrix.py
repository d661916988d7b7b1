"""The Group Influence matrix as a value: one layout, read and written in one place.

The layout, everywhere in mixlab (measurement, solvers, stage records, ``influence.json``, the
report): ``matrix[i, j]`` is the influence of **training domain i** (row) on **target j** (column),
``I[i, j] = g_{T_j}^T P g_{D_i}`` (TiKMiX, arXiv 2508.17677, Eq. 8; positive = up-weighting i lowers
j's loss). ``stderr`` and each of the two ``half_matrices`` have the same shape. The TiKMiX paper
writes the transpose (S, targets x training domains); a solver that follows the paper's notation
transposes locally and takes and returns this layout.

Records written before this layout was the only one may carry ``"layout": "target_x_train"`` (or a
matrix whose shape only fits transposed); :meth:`GroupInfluence.from_dict` converts them on read,
so every reader sees rows = training domains. Nothing writes the flag any more.

This module needs only numpy, so readers (the report) do not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixlab.errors import DataError
from mixlab.utils.io import atomic_write_json, read_json

LEGACY_TRANSPOSED = "target_x_train"
"""The ``layout`` value of old records whose matrix is stored targets x training domains."""


@dataclass
class GroupInfluence:
    """A measured influence matrix: ``matrix[i, j]`` = influence of training domain i on target j
    (positive = up-weighting i lowers j's loss), with its standard error."""

    matrix: np.ndarray
    stderr: np.ndarray
    train_domains: list[str]
    target_domains: list[str]
    tokens: int = 0
    seconds: float = 0.0
    preconditioner: str = "identity"
    flops: float = 0.0
    projection_dim: int | None = None
    batches: dict[str, dict[str, int]] = field(default_factory=dict)
    """Batches used per domain: ``{"train": {...}, "target": {...}, "fit": {"total": n}}``."""
    stderr_method: str = "delta"
    stability: float = float("nan")
    """Split-half reliability of the column-centred matrix (Spearman-Brown; NaN unless every domain has
    at least two batches). 1 = the two halves order the domains identically within every target."""
    half_matrices: np.ndarray | None = None
    """The two half-sample matrices ``[2, n_train, n_target]`` the stability is computed from."""

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=float).reshape(
            len(self.train_domains), len(self.target_domains)
        )
        self.stderr = np.asarray(self.stderr, dtype=float).reshape(self.matrix.shape)
        if self.half_matrices is not None:
            self.half_matrices = np.asarray(self.half_matrices, dtype=float).reshape(2, *self.matrix.shape)
        self.stability = float(self.stability) if self.stability is not None else float("nan")

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_train, n_target)``."""
        return len(self.train_domains), len(self.target_domains)

    def z_scores(self) -> np.ndarray:
        """matrix / stderr; |z| < 2 marks entries indistinguishable from noise."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.matrix / self.stderr

    def aggregate(
        self, weights: Mapping[str, float] | np.ndarray, target_weights: Mapping[str, float] | None = None
    ) -> float:
        """Total influence of a mixture, sum_j c_j sum_i w_i I[i, j] (linear in w)."""
        w = (
            np.array([weights.get(d, 0.0) for d in self.train_domains])
            if isinstance(weights, Mapping)
            else np.asarray(weights, float)
        )
        c = (
            np.array([target_weights.get(d, 0.0) for d in self.target_domains])
            if target_weights
            else np.full(len(self.target_domains), 1.0 / len(self.target_domains))
        )
        return float(w @ self.matrix @ c)

    def to_dict(self) -> dict[str, Any]:
        return {
            "matrix": self.matrix.tolist(),
            "stderr": [[None if not math.isfinite(x) else x for x in row] for row in self.stderr.tolist()],
            "train_domains": list(self.train_domains),
            "target_domains": list(self.target_domains),
            "tokens": int(self.tokens),
            "seconds": float(self.seconds),
            "preconditioner": self.preconditioner,
            "flops": float(self.flops),
            "projection_dim": self.projection_dim,
            "batches": self.batches,
            "stderr_method": self.stderr_method,
            "stability": None if not math.isfinite(self.stability) else self.stability,
            "half_matrices": None if self.half_matrices is None else self.half_matrices.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "influence record") -> GroupInfluence:
        """Read :meth:`to_dict`'s record; ``stderr`` may be absent (unknown: NaN) and an old record
        stored targets x training domains is transposed (see the module docstring)."""
        try:
            train = [str(d) for d in data["train_domains"]]
            target = [str(d) for d in data["target_domains"]]
            matrix = _nan_matrix(data["matrix"])
            stderr = _nan_matrix(data["stderr"]) if data.get("stderr") is not None else None
            halves = data.get("half_matrices")
            halves = None if halves is None else np.array(
                [_nan_matrix(h) for h in halves], dtype=float)  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: not a Group Influence record ({exc}); expected keys matrix, train_domains, "
                "target_domains (and stderr)"
            ) from None
        shape = (len(train), len(target))
        if data.get("layout") == LEGACY_TRANSPOSED or (matrix.shape != shape and matrix.T.shape == shape):
            matrix = matrix.T
            stderr = None if stderr is None else stderr.T
            halves = None if halves is None else halves.transpose(0, 2, 1)
        if matrix.shape != shape:
            raise DataError(
                f"{where}: matrix has shape {matrix.shape}, expected {shape} "
                f"(rows = {len(train)} training domains, columns = {len(target)} targets)"
            )
        if stderr is None or stderr.shape != shape:
            stderr = np.full(shape, math.nan)
        if halves is not None and halves.shape != (2, *shape):
            halves = None
        try:
            return cls(
                matrix=matrix,
                stderr=stderr,
                train_domains=train,
                target_domains=target,
                tokens=int(data.get("tokens", 0)),
                seconds=float(data.get("seconds", 0.0)),
                preconditioner=str(data.get("preconditioner", "identity")),
                flops=float(data.get("flops", 0.0)),
                projection_dim=data.get("projection_dim"),
                batches=dict(data.get("batches", {})),
                stderr_method=str(data.get("stderr_method", "delta")),
                stability=float("nan") if data.get("stability") is None else float(data["stability"]),
                half_matrices=halves,
            )
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: not a Group Influence record ({exc})") from None

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> GroupInfluence:
        return cls.from_dict(read_json(path), where=str(path))

    def __str__(self) -> str:
        width = max(8, *(len(d) for d in self.target_domains))
        head = " " * 16 + "".join(f"{d:>{width + 10}}" for d in self.target_domains)
        rows = [head]
        for i, d in enumerate(self.train_domains):
            cells = "".join(
                f"{self.matrix[i, j]:>{width}.3g} ±{self.stderr[i, j]:<8.2g}"
                for j in range(len(self.target_domains))
            )
            rows.append(f"{d:<16}{cells}")
        return "\n".join(rows)


def _nan_matrix(rows: Any) -> np.ndarray:
    """A float matrix from nested lists, ``None`` read as NaN (how JSON stores an unknown entry)."""
    return np.array([[math.nan if x is None else float(x) for x in row] for row in rows], dtype=float)


def split_half_stability(halves: np.ndarray) -> float:
    """Spearman-Brown reliability 2r / (1 + r) of two half-sample matrices ``[2, n_train, n_target]``,
    r the Pearson correlation of their entries after centring each target column over the training
    domains (NaN when undefined: a half is missing or a half has no spread)."""
    h = np.asarray(halves, dtype=float)
    if h.shape[0] != 2 or h.shape[1] < 2 or not np.isfinite(h).all():
        return float("nan")
    a, b = (x - x.mean(axis=0, keepdims=True) for x in h)
    a, b = a.ravel(), b.ravel()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    if den <= 0:
        return float("nan")
    r = float(a @ b) / den
    return 2 * r / (1 + r) if r > -1 else float("nan")


__all__ = ["LEGACY_TRANSPOSED", "GroupInfluence", "split_half_stability"]
