"""Processes and devices of a run: the ``torchrun`` process group, the torch device and autocast dtype.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank joins one process group (nccl on GPUs, gloo on CPU)
and draws its own share of the sampler's global stream; rank 0 alone writes the run directory and the
store. A single process needs none of it: :func:`setup_distributed` returns a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mixlab.errors import ConfigError


@dataclass
class DistInfo:
    """This process's place in the run: rank, world size, local rank (its GPU on the node) and whether
    it created the process group (and so must destroy it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.distributed:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` averaged over the ranks, in place (unchanged for one process)."""
        if self.distributed:
            dist.all_reduce(value, op=dist.ReduceOp.AVG)
        return value

    def close(self) -> None:
        """Leave the process group if this process created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


def setup_distributed(device_pref: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, True)


def resolve_device(pref: str, info: DistInfo | None = None, *, where: str = "train config") -> torch.device:
    """The torch device a config's ``device`` names (``auto``: this rank's GPU when there is one; a
    single process's when ``info`` is None). ``where`` names the setting in the error."""
    rank = info.local_rank if info is not None else 0
    if pref == "auto":
        return torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{where}: device={pref!r} but no CUDA GPU is available; use device: cpu")
    if pref == "cuda":
        return torch.device(f"cuda:{rank}")
    try:
        return torch.device(pref)
    except RuntimeError:
        raise ConfigError(f"{where}: device {pref!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None


def resolve_dtype(pref: str, device: torch.device) -> torch.dtype:
    """The autocast dtype a config's ``dtype`` names (``auto``: bfloat16 on a GPU that has it, else float32)."""
    if pref == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[pref]


__all__ = ["DistInfo", "resolve_device", "resolve_dtype", "setup_distributed"]
