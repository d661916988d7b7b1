"""Atomic writes and safe paths.

A run directory must never hold a half-written file: every write goes to a temporary file in the
same directory, is flushed and fsynced, then renamed over the target (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from mixlab.errors import DataError, MixlabError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The file gets the
    permissions an ordinary ``open`` would give it (0666 less the umask), not mkstemp's 0600, so
    reports and exports are readable by whoever may read the folder.
    """
    if "w" not in mode:
        raise ValueError("atomic_open only supports write modes")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@functools.cache
def _umask() -> int:
    """The process umask (read once: reading it means setting it, which is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_write_yaml(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and Paths show up in results; write them as plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def read_text(path: str | os.PathLike[str], *, what: str = "file") -> str:
    """The text of a user's input file, or a :class:`DataError` that names it and says what is wrong.

    Missing files, folders given as files, unreadable files and files that are not UTF-8 text
    (a binary file, a truncated multi-byte character, another encoding) all end here, so every reader
    of user input reports them the same way instead of raising ``OSError``/``UnicodeDecodeError``.
    A UTF-8 byte-order mark is dropped.
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a folder; give the path of the {what} itself")
    if not p.exists():
        raise DataError(f"{p}: {what} not found; check the path")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read the {what} ({exc.strerror or exc}); check its permissions") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{p}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            f"is this the right {what}? Save it as UTF-8"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(f"{p}: line {line}: holds a NUL byte, so it is a binary file, not a text {what}")
    return text


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    text = read_text(p, what="JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg}); fix the file") from None
    except RecursionError:
        raise DataError(f"{p}: not valid JSON (nested too deeply)") from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Load YAML with ``yaml.safe_load`` (never the unsafe loader: inputs are untrusted)."""
    p = Path(path)
    text = read_text(p, what="YAML file")
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise DataError(f"{p}: not valid YAML ({where}{exc.problem or exc.context}); fix the file") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise DataError(f"{p}: not valid YAML ({type(exc).__name__}: {exc}); fix the file") from None


def check_output_path(path: str | os.PathLike[str], *, what: str = "--out") -> Path:
    """Check, before any work starts, that a file can be written at ``path``; returns it.

    The output-path policy of every command that takes an output file: the file goes exactly where the
    user says, its folder must already exist (a mistyped folder is an error, not a new folder tree), the
    path must not be an existing folder, and the folder (and an existing file) must be writable. The
    write itself is atomic, so a failure leaves an existing file unchanged.
    """
    p = Path(path)
    if p.is_dir():
        raise MixlabError(f"{what} {p}: is a folder; give a file name inside it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise MixlabError(
            f"{what} {p}: the folder {parent} does not exist; create it first (mixlab does not create folders "
            "for output files)"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise MixlabError(f"{what} {p}: not writable (permission denied); choose another path")
    return p


def resolve_under(base: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path:
    """Resolve ``relative`` against ``base`` and refuse paths that escape ``base``.

    Used wherever a name from an input file (a domain name, a run id) becomes a path we write to.
    """
    root = Path(base).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise MixlabError(f"path {relative!s} escapes {root}; use a plain name without '..' or '/'")
    return candidate


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
