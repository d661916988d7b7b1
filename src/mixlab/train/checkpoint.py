"""Checkpoints of a run: weights in safetensors, the rest in files torch loads with ``weights_only``.

Layout under ``<run_dir>/checkpoints``::

    step-00000100/model.safetensors   model weights (tied aliases stored once)
    step-00000100/optimizer.pt        AdamW state (plain tensors and numbers)
    step-00000100/rank-0.pt           this rank's RNG states
    step-00000100/sampler-0.json      this rank's sampler position
    step-00000100/state.json          step, tokens, seconds, config hash, world size, schedule
                                      (the curve lives once, in the run directory's curve.json)
    latest                            name of the newest complete checkpoint

Every file is written atomically, and ``latest`` is replaced only after the whole directory is
complete, so a process killed at any moment leaves the previous checkpoint usable. A checkpoint
damaged after the fact (a truncated weights file, a garbage ``optimizer.pt``, a ``latest`` that names
no checkpoint) is not fatal: :func:`checkpoint_candidates` lists the published checkpoint first and
the older complete ones after it, and the loaders fall back to the newest one that reads, with a
warning (``keep_checkpoints`` sets how many there are to fall back to).
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mixlab.errors import TrainingError
from mixlab.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

LATEST = "latest"
STEP_DIR_RE = re.compile(r"^step-\d{8}$")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def unique_state_dict(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Model tensors with shared storage kept once; returns (tensors, alias -> kept name)."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu").contiguous()
    return tensors, aliases


def save_model_weights(model: torch.nn.Module, path: Path) -> None:
    tensors, aliases = unique_state_dict(model)
    atomic_write_bytes(path, st_save(tensors, metadata={"aliases": ",".join(f"{a}={b}" for a, b in aliases.items())}))


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; tied aliases are restored by the tie itself."""
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint weights missing")
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise TrainingError(f"{path}: corrupt weights file ({exc})") from None
    _, aliases = unique_state_dict(model)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if m not in aliases]
    if missing or unexpected:
        raise TrainingError(
            f"{path}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]}); "
            "the run's model config changed since the checkpoint was written"
        )


def torch_save_atomic(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def torch_load_safe(path: Path) -> Any:
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint file missing; the checkpoint is incomplete")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        # torch's own message advises weights_only=False for files it refuses; that would run code from
        # an untrusted file, so only the exception type is passed on
        raise TrainingError(
            f"{path}: corrupt or not a checkpoint file written by mixlab ({type(exc).__name__}); it is never "
            "loaded with pickle, so delete this checkpoint folder to use an earlier one"
        ) from None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _pointer(root: Path) -> str | None:
    """The checkpoint name ``latest`` holds, if it is one (a plain ``step-NNNNNNNN``: the content is
    never joined into a path unchecked); None without a pointer, a warning for a garbage one."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    if not STEP_DIR_RE.match(name):
        log.warning("%s does not name a checkpoint (%r); using the newest complete one", pointer, name[:40])
        return ""
    return name


def checkpoint_candidates(root: Path) -> list[Path]:
    """Complete checkpoints to resume from, best first: the one ``latest`` names, then older complete
    ones, newest first. Folders newer than ``latest`` were never published (a run killed while
    saving) and are left out; with a garbage pointer every complete folder is a candidate."""
    name = _pointer(root)
    if name is None:
        return []
    dirs = sorted((p for p in root.glob("step-*") if STEP_DIR_RE.match(p.name) and p.is_dir()), reverse=True)
    complete = [p for p in dirs if (p / "state.json").is_file() and (not name or p.name <= name)]
    if name and not any(p.name == name for p in complete):
        log.warning("%s names %s, which is missing or incomplete; using the newest complete checkpoint",
                    root / LATEST, name)
    return complete


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint directory under ``root`` (see :func:`checkpoint_candidates`), or
    None when nothing was ever published."""
    candidates = checkpoint_candidates(root)
    if not candidates:
        if (root / LATEST).is_file():
            raise TrainingError(f"{root / LATEST} names no complete checkpoint; delete {root} to start over")
        return None
    return candidates[0]


def repoint(root: Path, ckpt: Path) -> None:
    """Point ``latest`` at ``ckpt`` (after falling back to it from a damaged newer checkpoint)."""
    atomic_write_text(root / LATEST, ckpt.name + "\n")


def write_rank_files(ckpt: Path, rank: int, sampler_state: dict[str, Any]) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ckpt / f"sampler-{rank}.json", sampler_state)
    torch_save_atomic(rng_state(), ckpt / f"rank-{rank}.pt")


def write_main_files(ckpt: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    save_model_weights(model, ckpt / "model.safetensors")
    torch_save_atomic(optimizer.state_dict(), ckpt / "optimizer.pt")
    atomic_write_json(ckpt / "state.json", state)


def publish(root: Path, ckpt: Path, keep: int) -> None:
    """Point ``latest`` at ``ckpt`` and delete all but the ``keep`` newest checkpoints."""
    atomic_write_text(root / LATEST, ckpt.name + "\n")
    olds = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name < ckpt.name)
    for stale in (p for p in root.glob("step-*") if p.is_dir() and p.name > ckpt.name):
        shutil.rmtree(stale, ignore_errors=True)  # left by a run killed before publishing it
    for old in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def read_state(ckpt: Path) -> dict[str, Any]:
    return read_json(ckpt / "state.json")


def read_sampler_state(ckpt: Path, rank: int) -> dict[str, Any]:
    path = ckpt / f"sampler-{rank}.json"
    if not path.is_file():
        raise TrainingError(f"{path}: missing; this checkpoint was written by a run with a different world size")
    return read_json(path)
