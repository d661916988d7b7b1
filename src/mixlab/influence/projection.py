"""Fixed-seed random sketches of gradients, applied block by block (the TRAK / LoGra idea).

A sketch phi with E[phi(x) . phi(y)] = x . y lets influence inner products be taken in a small space,
so memory no longer grows with the parameter count (Park et al. 2023, TRAK; Choe et al. 2024, LoGra).
mixlab sketches each parameter tensor separately and concatenates the results; the output dimension
is shared among the tensors in proportion to their size:

* a matrix W [out, in] gets LoGra's Kronecker sketch S_out W S_in^T, with S_out [r_o, out] and
  S_in [r_i, in] (r_o * r_i ~ its share), so the sketch matrices take (r_o*out + r_i*in) numbers, not
  r_o*r_i*out*in, and the cost is a pair of small matmuls;
* other tensors get a dense [d_b, n_b] sketch when that is small, else a CountSketch (hashed signed
  buckets; Charikar et al. 2002), both unbiased for inner products;
* a tensor whose share is at least its size is copied unchanged (exact).

Entries are N(0, 1/r) (``gaussian``) or +-1/sqrt(r) (``rademacher``); ``countsketch`` uses hashing
everywhere. The matrices are drawn once from ``seed`` and cached, so every rank and every call uses
the same sketch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mixlab.errors import ConfigError

KINDS = ("gaussian", "rademacher", "countsketch")
DENSE_LIMIT = 1 << 22


@dataclass
class _Block:
    kind: str
    shape2: tuple[int, int]
    out_dim: int
    left: torch.Tensor | None = None
    right: torch.Tensor | None = None
    index: torch.Tensor | None = None
    sign: torch.Tensor | None = None


class GradientProjector:
    """``phi(flat_gradient) -> [dim]`` sketch; call :meth:`bind` with the parameters first."""

    def __init__(self, dim: int, kind: str = "rademacher", seed: int = 0) -> None:
        self.dim = dim
        self.kind = kind
        self.seed = seed

    def _dense(self, rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
        if self.kind == "gaussian":
            return torch.randn(rows, cols, generator=gen) / math.sqrt(rows)
        return (torch.randint(0, 2, (rows, cols), generator=gen).float() * 2 - 1) / math.sqrt(rows)

    def bind(self, params: Sequence[torch.Tensor]) -> GradientProjector:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown projection kind {self.kind!r}; choose one of {list(KINDS)}")
        if int(self.dim) < 1:
            raise ConfigError(f"projection_dim must be a positive integer, got {self.dim}")
        sizes = [p.numel() for p in params]
        total = sum(sizes)
        device = params[0].device if params else torch.device("cpu")
        self.blocks_: list[_Block] = []
        for b, (p, n) in enumerate(zip(params, sizes, strict=True)):
            gen = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + b)
            share = max(1, round(self.dim * n / total))
            shape2 = (p.shape[0], n // p.shape[0]) if p.dim() >= 2 else (1, n)
            if share >= n:
                self.blocks_.append(_Block("copy", shape2, n))
            elif self.kind != "countsketch" and p.dim() >= 2:
                out, inn = shape2
                r_o = min(out, max(1, math.ceil(math.sqrt(share))))
                r_i = min(inn, max(1, math.ceil(share / r_o)))
                left = self._dense(r_o, out, gen).to(device) if r_o < out else None
                right = self._dense(r_i, inn, gen).to(device) if r_i < inn else None
                self.blocks_.append(_Block("kron", shape2, r_o * r_i, left=left, right=right))
            elif self.kind != "countsketch" and share * n <= DENSE_LIMIT:
                self.blocks_.append(
                    _Block("dense", shape2, share, left=self._dense(share, n, gen).to(device))
                )
            else:
                index = torch.randint(0, share, (n,), generator=gen).to(device)
                sign = (torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1).to(device)
                self.blocks_.append(_Block("count", shape2, share, index=index, sign=sign))
        self.sizes_ = sizes
        self.out_dim_ = sum(b.out_dim for b in self.blocks_)
        return self

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """Sketch one flat vector laid out like the bound parameters."""
        outs = []
        for block, part in zip(self.blocks_, torch.split(flat, self.sizes_), strict=True):
            if block.kind == "copy":
                outs.append(part)
            elif block.kind == "kron":
                X = part.view(block.shape2)
                if block.left is not None:
                    X = block.left @ X
                if block.right is not None:
                    X = X @ block.right.T
                outs.append(X.reshape(-1))
            elif block.kind == "dense":
                outs.append(block.left @ part)
            else:
                outs.append(
                    torch.zeros(block.out_dim, device=part.device).index_add_(
                        0, block.index, part * block.sign
                    )
                )
        return torch.cat(outs)
