"""Domain sources: where a domain's documents come from.

A domain is a named source of documents: a file, a directory or a glob of ``.txt``, ``.jsonl``,
``.jsonl.zst`` or ``.parquet`` files, or a Python iterable of strings (or of dicts holding the text
field). Files are read in sorted path order so that a corpus is reproducible.
"""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from mixlab.errors import DataError

FORMATS = ("txt", "jsonl", "jsonl.zst", "parquet")
SUFFIXES = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".jsonl.zst": "jsonl.zst",
    ".parquet": "parquet",
}
SplitMode = Literal["file", "blank_line", "line"]


def detect_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def resolve_files(
    spec: str | os.PathLike[str] | list[str], *, fmt: str = "auto", where: str = "domain"
) -> list[Path]:
    """Expand a path, directory or glob (or a list of them) to the sorted list of source files."""
    specs = spec if isinstance(spec, list) else [spec]
    files: list[Path] = []
    for s in specs:
        s = os.fspath(s)
        p = Path(s)
        if any(ch in s for ch in "*?["):
            matched = [Path(m) for m in glob.glob(s, recursive=True) if Path(m).is_file()]
            if not matched:
                raise DataError(f"{where}: the glob {s!r} matches no files")
            files.extend(matched)
        elif p.is_dir():
            found = [q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")]
            found = [q for q in found if (fmt != "auto" or detect_format(q) is not None)]
            if not found:
                raise DataError(f"{where}: directory {p} holds no .txt/.jsonl/.jsonl.zst/.parquet files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{where}: source {p} does not exist; fix the path")
    files = sorted(set(files))
    for f in files:
        if (fmt if fmt != "auto" else detect_format(f)) is None:
            raise DataError(
                f"{where}: cannot tell the format of {f}; name it .txt/.jsonl/.jsonl.zst/.parquet or set format"
            )
    return files


def _split_text(text: str, mode: SplitMode) -> Iterator[str]:
    if mode == "file":
        yield text
    elif mode == "line":
        yield from (ln for ln in text.splitlines() if ln.strip())
    else:
        para: list[str] = []
        for ln in text.splitlines():
            if ln.strip():
                para.append(ln)
            elif para:
                yield "\n".join(para)
                para = []
        if para:
            yield "\n".join(para)


def _text_of(record: Any, field: str, where: str) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        if field not in record:
            raise DataError(
                f"{where}: record has no {field!r} field (keys: {sorted(record)[:10]}); set text_field"
            )
        value = record[field]
        if not isinstance(value, str):
            raise DataError(f"{where}: field {field!r} is {type(value).__name__}, expected a string")
        return value
    raise DataError(f"{where}: expected a string or a mapping with {field!r}, got {type(record).__name__}")


def _iter_jsonl(stream: Iterable[str], field: str, where: str) -> Iterator[str]:
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{lineno}: not valid JSON ({exc.msg})") from None
        yield _text_of(rec, field, f"{where}:{lineno}")


def iter_file(
    path: Path, *, fmt: str = "auto", text_field: str = "text", split: SplitMode = "file"
) -> Iterator[str]:
    """The documents of one source file."""
    kind = detect_format(path) if fmt == "auto" else fmt
    where = str(path)
    try:
        if kind == "txt":
            yield from _split_text(path.read_text(encoding="utf-8"), split)
        elif kind == "jsonl":
            with open(path, encoding="utf-8") as fh:
                yield from _iter_jsonl(fh, text_field, where)
        elif kind == "jsonl.zst":
            import zstandard

            with open(path, "rb") as raw:
                reader = zstandard.ZstdDecompressor().stream_reader(raw)
                yield from _iter_jsonl(io.TextIOWrapper(reader, encoding="utf-8"), text_field, where)
        elif kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            if text_field not in pf.schema_arrow.names:
                raise DataError(
                    f"{where}: parquet has no column {text_field!r} (columns: {pf.schema_arrow.names})"
                )
            for rb in pf.iter_batches(columns=[text_field], batch_size=1024):
                for value in rb.column(0).to_pylist():
                    if value is not None:
                        yield str(value)
        else:
            raise DataError(f"{where}: unknown format {kind!r}; allowed: {list(FORMATS)}")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except DataError:
        raise
    except Exception as exc:  # zstd / parquet readers raise library-specific errors on corrupt input
        if type(exc).__module__.split(".")[0] in ("zstandard", "pyarrow") or isinstance(
            exc, (OSError, EOFError)
        ):
            raise DataError(f"{where}: cannot read {kind} file ({exc})") from None
        raise


def iter_iterable(
    items: Iterable[Any], *, text_field: str = "text", where: str = "iterable"
) -> Iterator[str]:
    """Documents from a Python iterable of strings or of mappings holding ``text_field``."""
    for i, rec in enumerate(items):
        yield _text_of(rec, text_field, f"{where}[{i}]")
