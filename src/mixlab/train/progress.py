"""The training progress bar (rank 0 only): steps done, the last training loss, tokens per second."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(run_id: str, *, total: int, completed: int, enabled: bool) -> Iterator[Any]:
    """A live bar for ``total`` steps starting at ``completed`` (None when disabled); update it with
    ``bar.update(bar.task_ids[0], completed=step, loss=loss, tps=tokens_per_second)``."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn(f"[bold]{run_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeRemainingColumn(),
        transient=True,
    )
    with progress:
        progress.add_task("train", total=total, completed=completed, loss=float("nan"), tps=0.0)
        yield progress


__all__ = ["progress_bar"]
