"""One owner per directory: an exclusive lock held while a process writes a run (or a sweep) in it.

``DirLock(run_dir).acquire()`` takes ``flock`` on ``<dir>/.lock`` and writes the holder's pid, host and
start time into it. The kernel drops the lock when the holder exits, however it dies (SIGKILL
included), so a lock left by a dead process is free for the next one with no clean-up. A second
process gets a :class:`LockedError` naming the holder. A lock still held by a process that inherited
it (a forked child outliving the pid written in the file, which is dead) is taken over: the file is
replaced, and the orphan keeps a lock on a file nobody else opens. Within one process the lock is
re-entrant (the pipeline, the benchmark and tests reopen the same run), counted per directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mixlab.errors import MixlabError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"

_held: dict[str, list[Any]] = {}  # realpath of the directory -> [fd, count]


class LockedError(MixlabError):
    """The directory is in use by another live process."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """What the lock file says about its last holder (empty when unreadable)."""
    try:
        data = json.loads((Path(directory) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_locked(directory: str | os.PathLike[str]) -> bool:
    """Whether a live process holds the directory's lock (read-only: creates nothing)."""
    key = os.path.realpath(directory)
    if key in _held:
        return True
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


class DirLock:
    """The exclusive lock of ``directory`` (see the module docstring); a context manager too."""

    def __init__(self, directory: str | os.PathLike[str], *, what: str = "run directory") -> None:
        self.directory = Path(directory)
        self.what = what
        self._owned = False

    def acquire(self) -> DirLock:
        key = os.path.realpath(self.directory)
        if self._owned:
            return self
        if key in _held:
            _held[key][1] += 1
            self._owned = True
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_NAME
        for attempt in (0, 1):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = read_holder(self.directory)
                pid, host = holder.get("pid"), holder.get("host")
                if attempt == 0 and self._stale(holder):
                    log.warning("%s: the lock of dead process %d is held by a child it left; taking it over",
                                self.directory, pid)
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    continue
                since = holder.get("since")
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, float) else "?"
                raise LockedError(
                    f"{self.directory}: this {self.what} is in use by process {pid or '?'} on {host or '?'} "
                    f"(since {when}); wait for it to finish or stop it, then retry"
                ) from None
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                    "argv": " ".join(sys.argv)[:500]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            _held[key] = [fd, 1]
            self._owned = True
            return self
        raise LockedError(f"{self.directory}: cannot take the lock of this {self.what}; retry")  # pragma: no cover

    def _stale(self, holder: dict[str, Any]) -> bool:
        """The recorded holder is a dead process of this host (read twice, a moment apart, so a holder
        that has just taken the lock and not yet written its pid is not mistaken for a dead one)."""
        pid = holder.get("pid")
        if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or _pid_alive(pid):
            return False
        time.sleep(0.05)
        return read_holder(self.directory).get("pid") == pid

    def release(self) -> None:
        if not self._owned:
            return
        self._owned = False
        key = os.path.realpath(self.directory)
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _held[key]
            with contextlib.suppress(OSError):
                fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


__all__ = ["DirLock", "LockedError", "is_locked", "read_holder"]
