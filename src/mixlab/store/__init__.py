"""Where runs are recorded: the SQLite run store (one ``mixlab.db`` per workspace, WAL mode, safe for
parallel writers) and the run directory (:class:`RunArtifacts`, the one reader and writer of a run's
files)."""

from mixlab.store.rundir import RunArtifacts, RunCurve
from mixlab.store.runstore import (
    DB_NAME,
    STATUSES,
    RunStore,
    code_version,
    default_store_path,
    default_workspace,
    run_schedule,
)

__all__ = [
    "DB_NAME",
    "STATUSES",
    "RunArtifacts",
    "RunCurve",
    "RunStore",
    "code_version",
    "default_store_path",
    "default_workspace",
    "run_schedule",
]
