"""The SQLite run store (one ``mixlab.db`` per workspace, WAL mode, safe for parallel writers)."""

from mixlab.store.runstore import (
    DB_NAME,
    STATUSES,
    RunStore,
    code_version,
    default_store_path,
    default_workspace,
)

__all__ = ["DB_NAME", "STATUSES", "RunStore", "code_version", "default_store_path", "default_workspace"]
