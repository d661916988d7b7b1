"""Where a training run is recorded: its run directory and its row in the run store.

The trainer says what happened (started, switched schedule, evaluated, failed, finished); a
:class:`RunRecorder` writes it, through :class:`~mixlab.store.RunArtifacts` (the one writer of the run
directory) and the :class:`~mixlab.store.RunStore` (a pointer to that directory and a summary). Only
rank 0 records; the other ranks of a ``torchrun`` job get a recorder that writes nothing. The curve is
written to the run directory only (``curve.json``), never to the store or into checkpoints.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mixlab.mixture import Schedule
from mixlab.store import RunArtifacts, RunCurve, RunStore, default_workspace
from mixlab.train.config import TrainConfig
from mixlab.utils.lock import DirLock


def workspace_of(config: TrainConfig) -> Path:
    """The workspace holding the store and ``runs/``: the config's, else ``$MIXLAB_WORKSPACE`` or the default."""
    return Path(config.workspace) if config.workspace else default_workspace()


def run_dir_of(config: TrainConfig, run_id: str) -> Path:
    """The run directory: ``out_dir`` when the config gives one, else ``<workspace>/runs/<run id>``."""
    return Path(config.out_dir) if config.out_dir else workspace_of(config) / "runs" / run_id


class RunRecorder:
    """Records one run: ``RunRecorder(run_dir, run_id, store, main=True)``.

    ``store`` is a :class:`~mixlab.store.RunStore`, None for the workspace's own store, or ``False`` to
    record nothing in a store (the run directory is still written). With ``main=False`` (a rank other
    than 0) nothing is written at all. :meth:`lock` makes this process the run directory's one owner.
    """

    def __init__(self, run_dir: Path, run_id: str, store: Any, *, config: TrainConfig, main: bool) -> None:
        self.artifacts = RunArtifacts(run_dir)
        self.run_id = run_id
        self.main = main
        if not main or store is False:
            self.store: Any = None
        else:
            self.store = store if store is not None else RunStore(workspace_of(config))
        self._lock: DirLock | None = None

    # ------------------------------------------------------------------------------- ownership
    def lock(self) -> None:
        """Own the run directory: a second process training here gets an error naming this one."""
        if self.main:
            self._lock = DirLock(self.artifacts.root).acquire()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ------------------------------------------------------------------------------- events
    def started(self, config: TrainConfig, model_desc: dict[str, Any], schedule: Schedule, config_hash: str) -> None:
        """Write the run's settings, model and schedule, and create its store row (kept if it exists)."""
        if not self.main:
            return
        self.artifacts.root.mkdir(parents=True, exist_ok=True)
        settings = config.model_dump(mode="json")
        self.artifacts.write_config(settings)
        self.artifacts.write_model(model_desc)
        self.artifacts.write_schedule(schedule)
        if self.store is not None:
            self.store.create_run(
                config.kind, config.method, schedule, model_desc, config.tokens,
                run_id=self.run_id, name=config.run_name, train_config=settings, config_hash=config_hash,
                seed=config.seed, run_dir=self.artifacts.root.resolve(),
            )

    def running(self) -> None:
        if self.store is not None:
            self.store.update_status(self.run_id, "running")

    def schedule_changed(self, schedule: Schedule) -> None:
        if self.main:
            self.artifacts.write_schedule(schedule)

    def curve(self, curve: RunCurve) -> None:
        """Write the curve so far (at every evaluation and checkpoint, and when the run stops)."""
        if self.main:
            self.artifacts.write_curve(curve)

    def stopped(self, exc: BaseException) -> None:
        """Record in the store that the run stopped: ``interrupted`` (Ctrl-C, SIGTERM) or ``failed``.
        (A run killed outright cannot say so; ``mixlab runs list`` shows it ``interrupted`` because no
        live process holds its directory's lock.)"""
        if self.store is None:
            return
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        with contextlib.suppress(Exception):
            self.store.update_status(self.run_id, status, error=str(exc)[:2000] or type(exc).__name__)

    def finished(self, summary: dict[str, Any], curve: RunCurve) -> None:
        """The run reached its budget: its curve, the store's summary and ``result.json``."""
        if not self.main:
            return
        self.artifacts.write_curve(curve)
        if self.store is not None:
            self.store.update_status(
                self.run_id, "finished", tokens=summary["tokens"], flops=summary["flops"],
                seconds=summary["seconds"], final=summary["final"],
            )
        self.artifacts.write_result(summary)


__all__ = ["RunRecorder", "run_dir_of", "workspace_of"]
