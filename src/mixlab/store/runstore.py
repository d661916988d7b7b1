"""The run store: one SQLite file per workspace recording every run and its metrics.

Several proxy runs write to the same store from parallel processes, so the database runs in WAL
mode (readers never block the writer), every write is one ``BEGIN IMMEDIATE`` transaction (the
write lock is taken up front, so two writers never deadlock upgrading a read lock), and a busy
writer waits (``busy_timeout``) and retries instead of failing. Each call opens its own short-lived
connection, so a store object is safe to share across threads and to pass to forked workers.

Tables: ``runs`` (one row per run: its settings, status, summary -- final losses, tokens, FLOPs -- and
``run_dir``, the pointer to its run directory), ``artifacts`` (small JSON blobs keyed per run, such as
the per-stage mixtures and influence records of the dynamic pipeline) and ``metrics``.

A run's curve lives in one place, its run directory (:class:`~mixlab.store.rundir.RunArtifacts`);
:meth:`RunStore.metrics`, :meth:`RunStore.curve` and :meth:`RunStore.export` read it from there.
The ``metrics`` table holds only rows logged with :meth:`RunStore.log_metrics` by a writer without a
run directory, and the rows stores written by older versions of mixlab hold.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixlab import __version__
from mixlab.errors import ConfigError, DataError, MixlabError
from mixlab.mixture import Mixture, Schedule
from mixlab.store.rundir import RunArtifacts
from mixlab.utils.io import atomic_open
from mixlab.utils.lock import is_locked

log = logging.getLogger(__name__)

DB_NAME = "mixlab.db"
STATUSES = ("created", "running", "finished", "failed", "interrupted", "killed")
"""``interrupted``: stopped by Ctrl-C/SIGTERM, or (as shown by :meth:`RunStore.list_runs`/``get_run``) a
``running`` run whose directory no live process holds, i.e. one killed outright; re-running it resumes.
``killed`` is the older name of ``interrupted``, kept for stores written before it."""
ENDED = ("finished", "failed", "interrupted", "killed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    method TEXT,
    name TEXT,
    mixture_json TEXT,
    model_config TEXT,
    train_config TEXT,
    config_hash TEXT,
    token_budget INTEGER,
    seed INTEGER,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    code_version TEXT,
    run_dir TEXT,
    tokens INTEGER,
    flops REAL,
    seconds REAL,
    final_json TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_hash ON runs(config_hash);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    split TEXT NOT NULL,
    step INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    domain TEXT NOT NULL,
    loss REAL,
    PRIMARY KEY (run_id, split, step, domain)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value_json TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, key)
);
"""

_RUN_JSON_FIELDS = ("mixture_json", "model_config", "train_config", "final_json")
_STORE_HINT = "check that the workspace folder and its mixlab.db are readable and writable and not corrupt"


def default_workspace() -> Path:
    """``$MIXLAB_WORKSPACE`` if set, else ``./mixlab-workspace``."""
    return Path(os.environ.get("MIXLAB_WORKSPACE", "mixlab-workspace"))


def code_version() -> str:
    """The installed mixlab version, plus the git commit of the source tree when there is one."""
    head = Path(__file__).resolve().parents[3] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        return f"{__version__}+g{ref[:10]}"
    except OSError:
        return __version__


def _to_json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, Schedule):
        return obj.to_json()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


class RunStore:
    """SQLite run store at ``path`` (a ``.db`` file, or a workspace folder holding ``mixlab.db``).

    ``RunStore("ws").create_run("proxy", "regmix", mixture, model_config, 10_000_000)``
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0, readonly: bool = False) -> None:
        p = Path(path)
        if p.suffix not in (".db", ".sqlite", ".sqlite3"):
            p = p / DB_NAME
        self.path = p
        self.timeout = float(timeout)
        self.readonly = readonly
        self._immutable = False
        if readonly:
            # commands that only read never create a workspace: a mistyped --workspace is an error
            if not self.path.is_file():
                raise DataError(
                    f"{self.path}: no run store here, so nothing was recorded in this workspace; check --workspace "
                    "or $MIXLAB_WORKSPACE"
                )
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"{exc.filename or self.path.parent}: cannot create the workspace folder ({exc.strerror}); choose "
                "a writable --workspace (or $MIXLAB_WORKSPACE)"
            ) from None
        with self._connect() as conn:
            self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            self._retry(lambda: conn.executescript(_SCHEMA))

    @classmethod
    def existing(cls, path: str | os.PathLike[str], **kwargs: Any) -> RunStore:
        """The store at ``path`` opened read-only; an error (nothing created) when there is none."""
        return cls(path, readonly=True, **kwargs)

    # -- connections and transactions -------------------------------------------------------
    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        try:
            if self.readonly:
                conn = self._connect_readonly()
            else:
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            if not self.readonly:
                conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise DataError(f"{self.path}: cannot open the run store ({exc}); {_STORE_HINT}") from None
        return contextlib.closing(conn)

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection; in a folder the reader may not write (no WAL index can be made), the
        file is read as immutable, which is right for a store nobody is writing."""
        uri = self.path.resolve().as_uri()
        if not self._immutable:
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=self.timeout, isolation_level=None)
                conn.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    raise DataError(f"{self.path}: not a mixlab run store (no runs table)") from None
                self._immutable = True
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=self.timeout, isolation_level=None)

    def _retry(self, fn: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.DatabaseError as exc:
                if "readonly" in str(exc) or "read-only" in str(exc):
                    raise DataError(
                        f"{self.path}: the run store is read-only ({exc}); make the workspace and its mixlab.db "
                        "writable, or choose another --workspace"
                    ) from None
                if not isinstance(exc, sqlite3.OperationalError) or ("locked" not in str(exc) and "busy" not in str(exc)):
                    raise DataError(f"{self.path}: run store error ({exc}); {_STORE_HINT}") from None
                if time.monotonic() > deadline:
                    raise DataError(
                        f"{self.path}: the run store stayed locked for {self.timeout:.0f}s; "
                        "another process holds it, retry when it finishes"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken at BEGIN, rolled back on error."""
        with self._connect() as conn:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._retry(lambda: conn.execute("COMMIT"))

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._connect() as conn:
            return self._retry(lambda: conn.execute(sql, tuple(params)).fetchall())

    # -- runs ---------------------------------------------------------------------------------
    def create_run(
        self,
        kind: str,
        method: str | None,
        mixture_json: Any,
        model_config: Any,
        token_budget: int | None,
        *,
        run_id: str | None = None,
        name: str | None = None,
        train_config: Any = None,
        config_hash: str | None = None,
        seed: int | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        status: str = "created",
    ) -> str:
        """Insert a run row and return its id (a fresh ``<kind>-<hex>`` id unless ``run_id`` is given).

        Mixture, model and train configs may be JSON strings or JSON-able objects (a
        :class:`~mixlab.mixture.Mixture` or ``Schedule`` is stored in a schedule's one serialised form,
        ``Schedule.to_json``; :func:`run_schedule` reads it back).
        With an explicit ``run_id`` that already exists, the existing row is kept and the id returned.
        """
        if status not in STATUSES:
            raise MixlabError(f"run status must be one of {STATUSES}, got {status!r}")
        rid = run_id or f"{kind}-{uuid.uuid4().hex[:12]}"
        row = (
            rid,
            kind,
            method,
            name,
            _to_json(Schedule.constant(mixture_json) if isinstance(mixture_json, Mixture) else mixture_json),
            _to_json(model_config),
            _to_json(train_config),
            config_hash,
            None if token_budget is None else int(token_budget),
            seed,
            status,
            time.time(),
            code_version(),
            None if run_dir is None else os.fspath(run_dir),
        )
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO runs (id, kind, method, name, mixture_json, model_config, train_config,"
                " config_hash, token_budget, seed, status, created_at, code_version, run_dir)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return rid

    def update_status(self, run_id: str, status: str, *, error: str | None = None, **fields: Any) -> None:
        """Set a run's status (``running`` stamps ``started_at``, ``finished``/``failed`` stamp
        ``finished_at``) and optionally ``tokens``, ``flops``, ``seconds``, ``final`` (a dict)."""
        if status not in STATUSES:
            raise MixlabError(f"run status must be one of {STATUSES}, got {status!r}")
        allowed = {"tokens", "flops", "seconds", "final", "run_dir"}
        unknown = set(fields) - allowed
        if unknown:
            raise MixlabError(f"update_status: unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
        sets = ["status = ?"]
        values: list[Any] = [status]
        now = time.time()
        if status == "running":
            sets.append("started_at = COALESCE(started_at, ?)")
            values.append(now)
        if status in ENDED:
            sets.append("finished_at = ?")
            values.append(now)
        if error is not None or status == "running":
            sets.append("error = ?")
            values.append(error)
        for key, value in fields.items():
            column = "final_json" if key == "final" else key
            sets.append(f"{column} = ?")
            values.append(_to_json(value) if key == "final" else (os.fspath(value) if key == "run_dir" else value))
        values.append(run_id)
        with self._write() as conn:
            cur = conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", values)
            if cur.rowcount == 0:
                raise MixlabError(f"{self.path}: no run {run_id!r}; see `mixlab runs list`")

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's row as a dict, JSON columns decoded (raises MixlabError if unknown)."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows and run_id:
            # a unique prefix: compared literally (no LIKE, so '%' and '_' in the argument match only themselves)
            matches = self._read("SELECT * FROM runs WHERE substr(id, 1, ?) = ?", (len(run_id), run_id))
            if len(matches) > 1:
                raise MixlabError(
                    f"{self.path}: {run_id!r} is the start of {len(matches)} run ids "
                    f"({', '.join(r['id'] for r in matches[:5])}...); give more of the id"
                )
            rows = matches
        if not rows:
            raise MixlabError(f"{self.path}: no run {run_id!r}; see `mixlab runs list`")
        return _live_status(self._decode(rows[0]))

    def find_runs(self, *, config_hash: str, status: str | None = None) -> list[dict[str, Any]]:
        """Runs recorded with ``config_hash`` (newest first), e.g. to reuse a finished proxy run."""
        sql = "SELECT * FROM runs WHERE config_hash = ?"
        params: list[Any] = [config_hash]
        if status:
            sql += " AND status = ?"
            params.append(status)
        return [self._decode(r) for r in self._read(sql + " ORDER BY created_at DESC", params)]

    def list_runs(
        self, kind: str | None = None, method: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """All runs, oldest first, optionally filtered. A ``running`` run that no live process holds is
        reported as ``interrupted`` (see :data:`STATUSES`)."""
        clauses, params = [], []
        for column, value in (("kind", kind), ("method", method)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if status is not None:
            stored = ("running", "interrupted", "killed") if status in ("running", "interrupted") else (status,)
            clauses.append(f"status IN ({', '.join('?' * len(stored))})")
            params.extend(stored)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        runs = [_live_status(self._decode(r)) for r in self._read(f"SELECT * FROM runs{where} ORDER BY created_at, id", params)]
        return [r for r in runs if status is None or r["status"] == status]

    def delete_run(self, run_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    @staticmethod
    def _decode(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for key in _RUN_JSON_FIELDS:
            if out.get(key) is not None:
                try:
                    out[key] = json.loads(out[key])
                except json.JSONDecodeError:
                    pass
        return out

    # -- metrics ------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert metric rows ``{step, tokens, domain, loss[, split]}`` in one transaction.

        ``split`` defaults to ``val``. A row for the same (run, split, step, domain) replaces the
        old one, so a resumed run that re-logs a step leaves one row. Returns the number written.
        """
        values = []
        for i, row in enumerate(rows):
            try:
                values.append(
                    (
                        run_id,
                        str(row.get("split", "val")),
                        int(row["step"]),
                        int(row.get("tokens", 0)),
                        str(row["domain"]),
                        None if row.get("loss") is None else float(row["loss"]),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise MixlabError(f"metric row {i} for run {run_id!r} is malformed ({exc!r}): {dict(row)}") from None
        if not values:
            return 0
        with self._write() as conn:
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO metrics (run_id, split, step, tokens, domain, loss)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    values,
                )
            except sqlite3.IntegrityError:
                raise MixlabError(f"{self.path}: cannot log metrics for unknown run {run_id!r}") from None
        return len(values)

    def metrics(self, run_id: str, split: str | None = None) -> list[dict[str, Any]]:
        """Metric rows ``{run_id, split, step, tokens, domain, loss}`` of a run ordered by split, step and
        domain: read from its run directory (the one copy of its curve), else from the ``metrics`` table."""
        found = self._read("SELECT id, run_dir FROM runs WHERE id = ?", (run_id,))
        rows = _run_dir_rows(dict(found[0]), split) if found else None
        if rows is None:
            sql = "SELECT run_id, split, step, tokens, domain, loss FROM metrics WHERE run_id = ?"
            params: list[Any] = [run_id]
            if split is not None:
                sql += " AND split = ?"
                params.append(split)
            return [dict(r) for r in self._read(sql + " ORDER BY split, step, domain", params)]
        return sorted(rows, key=lambda r: (r["split"], r["step"], r["domain"]))

    def curve(self, run_id: str, split: str = "val") -> dict[int, dict[str, float]]:
        """``{step: {domain: loss}}`` for one split."""
        out: dict[int, dict[str, float]] = {}
        for row in self.metrics(run_id, split):
            out.setdefault(int(row["step"]), {})[row["domain"]] = row["loss"]
        return out

    # -- artifacts ----------------------------------------------------------------------------
    def set_artifact(self, run_id: str, key: str, value: Any) -> None:
        """Store a small JSON-able value under ``key`` for the run (replacing an older one)."""
        payload = json.dumps(value, sort_keys=True, default=_default)
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO artifacts (run_id, key, value_json, updated_at) VALUES (?, ?, ?, ?)",
                    (run_id, key, payload, time.time()),
                )
            except sqlite3.IntegrityError:
                raise MixlabError(f"{self.path}: cannot store artifact for unknown run {run_id!r}") from None

    def get_artifact(self, run_id: str, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value_json FROM artifacts WHERE run_id = ? AND key = ?", (run_id, key))
        return json.loads(rows[0]["value_json"]) if rows else default

    def artifacts(self, run_id: str) -> dict[str, Any]:
        rows = self._read("SELECT key, value_json FROM artifacts WHERE run_id = ? ORDER BY key", (run_id,))
        return {r["key"]: json.loads(r["value_json"]) for r in rows}

    # -- export -------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike[str], format: str | None = None, *, table: str = "metrics") -> Path:
        """Write the ``metrics`` table joined with run fields (or the ``runs`` table) as CSV or Parquet.

        ``format`` defaults to the file suffix. Returns the path written (atomically).
        """
        out = Path(path)
        fmt = (format or out.suffix.lstrip(".")).lower()
        if fmt not in ("csv", "parquet"):
            raise MixlabError(f"export format must be 'csv' or 'parquet', got {fmt!r}")
        if table == "metrics":
            columns = ["run_id", "kind", "method", "name", "status", "mixture_json", "split", "step", "tokens",
                       "domain", "loss"]
            rows = []
            for run in self._read("SELECT * FROM runs ORDER BY created_at, id"):
                fields = {k: run[k] for k in ("kind", "method", "name", "status", "mixture_json")}
                rows += [{**fields, **r, "run_id": run["id"]} for r in self.metrics(run["id"])]
        elif table == "runs":
            rows = [dict(r) for r in self._read("SELECT * FROM runs ORDER BY created_at, id")]
            columns = [c["name"] for c in self._read("PRAGMA table_info(runs)")]
        else:
            raise MixlabError(f"export table must be 'metrics' or 'runs', got {table!r}")
        if fmt == "csv":
            with atomic_open(out, "w") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        else:
            tbl = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in columns})
            with atomic_open(out, "wb") as fh:
                pq.write_table(tbl, fh)
        log.info("exported %d %s rows to %s", len(rows), table, out)
        return out


def _run_dir_rows(run: Mapping[str, Any], split: str | None) -> list[dict[str, Any]] | None:
    """A run's metric rows from its run directory; None when it has none or the directory holds no curve."""
    if not run.get("run_dir"):
        return None
    artifacts = RunArtifacts(run["run_dir"])
    try:
        curve = artifacts.curve()
    except DataError as exc:
        log.warning("run %s: cannot read its curve (%s)", run["id"], exc)
        return None
    return None if curve is None else curve.rows(run["id"], split)


def run_schedule(run: Mapping[str, Any]) -> Schedule | None:
    """The schedule a run record holds (``mixture_json``, in any shape it was stored in), or None."""
    value = run.get("mixture_json")
    if value is None:
        return None
    try:
        return Schedule.from_json(value, where=f"run {run.get('id')} mixture")
    except ConfigError:
        return None


def _live_status(run: dict[str, Any]) -> dict[str, Any]:
    """A run recorded as ``running`` whose directory no live process holds was killed outright: show it
    as ``interrupted`` (the row itself is left to the process that resumes it)."""
    if run.get("status") == "killed":
        run["status"] = "interrupted"
    elif run.get("status") == "running" and run.get("run_dir") and not is_locked(run["run_dir"]):
        run["status"] = "interrupted"
    return run


def default_store_path() -> Path:
    """Where the store of the default workspace lives: ``<workspace>/mixlab.db``."""
    return default_workspace() / DB_NAME
