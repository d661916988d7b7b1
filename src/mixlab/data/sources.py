"""Domain sources: where a domain's documents come from, read as they are stored.

A domain is a named source of documents:

* text files: a file, a directory or a glob of ``.txt``, ``.jsonl``/``.json``, ``.jsonl.zst``,
  ``.jsonl.gz``/``.json.gz`` (Dolma), ``.txt.gz`` or ``.parquet`` files;
* Hugging Face ``datasets`` stored locally: a ``save_to_disk`` directory (``load_from_disk``), loose
  ``.arrow`` files, or any local path ``load_dataset`` reads (``format: hf-local``; never the network:
  ``HF_DATASETS_OFFLINE=1`` is set before ``datasets`` is imported);
* pre-tokenized token files, read without re-tokenising: OLMo ``.npy`` token memmaps (raw ids,
  documents separated by EOS) and Megatron ``.bin``/``.idx`` pairs (:func:`iter_token_documents`);
* a Python iterable of strings (or of dicts holding the text field).

A record's text and its domain are read by *field path*: ``text`` or a dotted path such as
``meta.redpajama_set_name`` (SlimPajama) or ``source`` (Dolma); ``domain_field``/``domain_value``
keep only the records of one domain, so a mixed shard splits into domains. Files are read in sorted
path order so that a corpus is reproducible.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import json
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from mixlab.errors import DataError

TEXT_FORMATS = ("txt", "txt.gz", "jsonl", "jsonl.zst", "jsonl.gz", "parquet", "arrow", "hf-disk", "hf-local")
TOKEN_FORMATS = ("olmo-npy", "megatron")
FORMATS = TEXT_FORMATS + TOKEN_FORMATS
SUFFIXES = {
    ".txt": "txt",
    ".txt.gz": "txt.gz",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".jsonl.zst": "jsonl.zst",
    ".json.zst": "jsonl.zst",
    ".jsonl.gz": "jsonl.gz",
    ".json.gz": "jsonl.gz",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".npy": "olmo-npy",
    ".bin": "megatron",
}
SplitMode = Literal["file", "blank_line", "line"]
_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_MISSING = object()


def is_hf_disk_dataset(path: Path) -> bool:
    """A ``datasets`` ``save_to_disk`` directory (a Dataset or a DatasetDict)."""
    return path.is_dir() and any((path / m).is_file() for m in _HF_DISK_MARKERS)


def field_value(record: Any, path: str) -> Any:
    """``record["meta"]["redpajama_set_name"]`` for ``path="meta.redpajama_set_name"``; a missing key
    gives ``_MISSING`` (a top-level key containing dots is tried whole first)."""
    if isinstance(record, dict) and path in record:
        return record[path]
    cur = record
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


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
        if fmt == "hf-local":
            files.append(
                p
            )  # a local path, or a dataset name already in the local datasets cache  # load_dataset resolves it (a local directory, file or dataset script)
        elif fmt == "megatron" and not p.exists() and Path(s + ".bin").is_file():
            files.append(Path(s + ".bin"))  # a Megatron data prefix: PREFIX.bin + PREFIX.idx
        elif any(ch in s for ch in "*?["):
            matched = sorted({Path(m) for m in glob.glob(s, recursive=True)})
            matched = [m for m in matched if m.is_file() or is_hf_disk_dataset(m)]
            if not matched:
                raise DataError(f"{where}: the glob {s!r} matches no files")
            files.extend(_megatron_bins(matched) if fmt in ("auto", "megatron") else matched)
        elif fmt in ("auto", "hf-disk") and is_hf_disk_dataset(p):
            files.append(p)
        elif p.is_dir():
            found = [q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")]
            found = [q for q in found if (fmt != "auto" or detect_format(q) is not None)]
            if fmt in ("auto", "megatron"):
                found = _megatron_bins(found)
            if not found:
                raise DataError(
                    f"{where}: directory {p} holds no readable files "
                    f"({', '.join(sorted(SUFFIXES))}, .idx, or a datasets save_to_disk directory)"
                )
            files.extend(found)
        elif p.is_file():
            files.extend(_megatron_bins([p]) if p.suffix == ".idx" else [p])
        else:
            raise DataError(f"{where}: source {p} does not exist; fix the path")
    files = sorted(set(files))
    for f in files:
        if file_format(f, fmt) is None:
            raise DataError(
                f"{where}: cannot tell the format of {f}; name it {'/'.join(sorted(SUFFIXES))} or set format"
            )
    return files


def file_format(path: Path, fmt: str = "auto") -> str | None:
    """The format a source path is read as: ``fmt`` unless ``auto``, else by name (or ``hf-disk``)."""
    if fmt != "auto":
        return fmt
    return "hf-disk" if is_hf_disk_dataset(path) else detect_format(path)


def _megatron_bins(paths: list[Path]) -> list[Path]:
    """Megatron ``.idx`` files stand for their ``.bin``: keep one path per pair."""
    out = []
    for q in paths:
        if q.suffix == ".idx":
            if not q.with_suffix(".bin").is_file():
                raise DataError(f"{q}: a Megatron index without its data file {q.with_suffix('.bin').name}")
            out.append(q.with_suffix(".bin"))
        else:
            out.append(q)
    return out


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
        value = field_value(record, field)
        if value is _MISSING:
            raise DataError(
                f"{where}: record has no {field!r} field (keys: {sorted(record)[:10]}); set text_field"
            )
        if not isinstance(value, str):
            raise DataError(f"{where}: field {field!r} is {type(value).__name__}, expected a string")
        return value
    raise DataError(f"{where}: expected a string or a mapping with {field!r}, got {type(record).__name__}")


def _domain_of(record: Any, field: str, where: str) -> str:
    value = field_value(record, field) if isinstance(record, dict) else _MISSING
    if value is _MISSING or value is None:
        keys = sorted(record)[:10] if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{where}: record has no {field!r} field (keys: {keys}); set domain_field")
    return str(value)


def _iter_records(stream: Iterable[str], where: str) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{lineno}: not valid JSON ({exc.msg})") from None
        yield f"{where}:{lineno}", rec


def _iter_jsonl(stream: Iterable[str], field: str, where: str) -> Iterator[str]:
    for at, rec in _iter_records(stream, where):
        yield _text_of(rec, field, at)


def _table_rows(table: Any, where: str) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(table.to_pylist()):
        yield f"{where}[{i}]", row


def _hf_datasets() -> Any:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never the network at run time
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError(
            "reading a Hugging Face dataset needs the `datasets` package: pip install 'mixlab[hf]'"
        ) from None
    return datasets


@contextlib.contextmanager
def _offline(datasets: Any) -> Iterator[None]:
    """``datasets`` offline while a dataset is opened, even if it was imported before the variable was set."""
    cfg = datasets.config
    old = getattr(cfg, "HF_DATASETS_OFFLINE", None)
    cfg.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        cfg.HF_DATASETS_OFFLINE = old


def _hf_rows(ds: Any, hf_split: str, where: str) -> Iterator[tuple[str, Any]]:
    datasets = _hf_datasets()
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if hf_split not in ds:
            raise DataError(f"{where}: has no split {hf_split!r} (splits: {list(ds)}); set hf_split")
        ds = ds[hf_split]
    for i, row in enumerate(ds):
        yield f"{where}[{i}]", row


def iter_records(path: Path, *, fmt: str = "auto", hf_split: str = "train") -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for each record of a structured source (jsonl, parquet, arrow, datasets)."""
    kind = file_format(path, fmt)
    where = str(path)
    try:
        if kind == "jsonl":
            with open(path, encoding="utf-8") as fh:
                yield from _iter_records(fh, where)
        elif kind == "jsonl.gz":
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                yield from _iter_records(fh, where)
        elif kind == "jsonl.zst":

            with open(path, "rb") as raw:
                reader = zstandard.ZstdDecompressor().stream_reader(raw)
                yield from _iter_records(io.TextIOWrapper(reader, encoding="utf-8"), where)
        elif kind == "parquet":

            for rb in pq.ParquetFile(path).iter_batches(batch_size=1024):
                yield from _table_rows(rb, where)
        elif kind == "arrow":

            with open(path, "rb") as fh:
                magic = fh.read(6)
            reader = pa.ipc.open_file(path) if magic == b"ARROW1" else pa.ipc.open_stream(path)
            batches = (
                (reader.get_batch(i) for i in range(reader.num_record_batches))
                if magic == b"ARROW1"
                else reader
            )
            for rb in batches:
                yield from _table_rows(rb, where)
        elif kind == "hf-disk":
            datasets = _hf_datasets()
            with _offline(datasets):
                ds = datasets.load_from_disk(str(path))
            yield from _hf_rows(ds, hf_split, where)
        elif kind == "hf-local":
            datasets = _hf_datasets()
            if path.exists():
                with _offline(datasets):
                    ds = datasets.load_dataset(str(path), split=hf_split, streaming=True)
            else:
                try:  # a name: only from the local cache, since HF_DATASETS_OFFLINE is set
                    with _offline(datasets):
                        ds = datasets.load_dataset(str(path), split=hf_split)
                except Exception as exc:
                    raise DataError(
                        f"{where}: not a local path and not in the local Hugging Face datasets cache; mixlab "
                        f"never downloads (HF_DATASETS_OFFLINE=1): fetch it first or give a path "
                        f"({type(exc).__name__})"
                    ) from None
            yield from _hf_rows(ds, hf_split, where)
        else:
            raise DataError(
                f"{where}: format {kind!r} has no records; allowed: jsonl, jsonl.gz, jsonl.zst, parquet, arrow, hf-disk, hf-local"
            )
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except DataError:
        raise
    except Exception as exc:  # gzip / zstd / arrow / datasets raise library-specific errors on bad input
        mod = type(exc).__module__.split(".")[0]
        if mod in ("zstandard", "pyarrow", "datasets", "gzip") or isinstance(
            exc, (OSError, EOFError, zlib.error, FileNotFoundError, ValueError)
        ):
            raise DataError(f"{where}: cannot read {kind} source ({type(exc).__name__}: {exc})") from None
        raise


def iter_file(
    path: Path,
    *,
    fmt: str = "auto",
    text_field: str = "text",
    split: SplitMode = "file",
    domain_field: str | None = None,
    domain_value: str | None = None,
    hf_split: str = "train",
) -> Iterator[str]:
    """The documents of one source file (or dataset directory).

    With ``domain_field`` (a dotted field path), only the records whose field equals ``domain_value``
    are kept: this is how a mixed shard (SlimPajama, Dolma) is split into domains.
    """
    kind = file_format(path, fmt)
    where = str(path)
    if kind in ("txt", "txt.gz"):
        if domain_field is not None:
            raise DataError(f"{where}: domain_field needs records (jsonl, parquet, ...), not plain text")
        try:
            if kind == "txt":
                text = path.read_text(encoding="utf-8")
            else:
                with gzip.open(path, "rt", encoding="utf-8") as fh:
                    text = fh.read()
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{where}: cannot read {kind} file ({exc})") from None
        yield from _split_text(text, split)
        return
    if kind in TOKEN_FORMATS:
        raise DataError(f"{where}: {kind} holds token ids, not text; it is read by iter_token_documents")
    if kind not in TEXT_FORMATS:
        raise DataError(f"{where}: unknown format {kind!r}; allowed: {list(FORMATS)}")
    for at, rec in iter_records(path, fmt=kind, hf_split=hf_split):
        if domain_field is not None and _domain_of(rec, domain_field, at) != domain_value:
            continue
        if isinstance(rec, dict) and field_value(rec, text_field) is None:
            continue  # a null text cell (parquet/arrow) is an empty document
        yield _text_of(rec, text_field, at)


def domain_values(files: list[Path], *, fmt: str, field: str, hf_split: str = "train") -> dict[str, int]:
    """Each value of ``field`` in the sources and how many records carry it (for a mixed source)."""
    counts: dict[str, int] = {}
    for f in files:
        for at, rec in iter_records(f, fmt=file_format(f, fmt) or "auto", hf_split=hf_split):
            v = _domain_of(rec, field, at)
            counts[v] = counts.get(v, 0) + 1
    return counts


# --------------------------------------------------------------------------- pre-tokenized input
_MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
_MEGATRON_DTYPES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}


def _megatron_index(idx: Path) -> tuple[np.dtype, np.ndarray, np.ndarray]:
    """dtype, sequence lengths and document boundaries (in sequences) of a Megatron ``.idx`` file.

    Layout (Megatron-LM ``indexed_dataset``): magic ``MMIDIDX\\0\\0``, version ``<Q`` (1), dtype code
    ``<B``, sequence count ``<Q``, document count ``<Q``, then int32 sequence lengths, int64 sequence
    byte pointers and int64 document indices.
    """
    with open(idx, "rb") as fh:
        head = fh.read(len(_MEGATRON_MAGIC) + 8 + 1 + 8 + 8)
    if len(head) < 34 or head[:9] != _MEGATRON_MAGIC:
        raise DataError(f"{idx}: not a Megatron .idx file (bad magic); expected an MMIDIDX index")
    (version,) = struct.unpack("<Q", head[9:17])
    (code,) = struct.unpack("<B", head[17:18])
    n_seq, n_doc = struct.unpack("<QQ", head[18:34])
    if version != 1 or code not in _MEGATRON_DTYPES:
        raise DataError(f"{idx}: unsupported Megatron index (version {version}, dtype code {code})")
    dtype = np.dtype(_MEGATRON_DTYPES[code])
    if dtype.kind == "f":
        raise DataError(f"{idx}: holds {dtype} values, not token ids")
    try:
        lengths = np.memmap(idx, dtype=np.int32, mode="r", offset=34, shape=(n_seq,))
        docs = np.memmap(idx, dtype=np.int64, mode="r", offset=34 + n_seq * 4 + n_seq * 8, shape=(n_doc,))
    except ValueError as exc:
        raise DataError(f"{idx}: truncated Megatron index ({exc})") from None
    return dtype, np.asarray(lengths, dtype=np.int64), np.asarray(docs, dtype=np.int64)


def iter_token_documents(
    path: Path, *, fmt: str, eos_id: int, dtype: str | None = None
) -> Iterator[np.ndarray]:
    """Token-id documents of a pre-tokenized file, each ending with ``eos_id`` (no re-tokenising).

    ``olmo-npy``: an OLMo token memmap, raw ids of ``dtype`` (uint16/uint32) with no header, documents
    separated by the tokenizer's EOS. ``megatron``: a ``PREFIX.bin``/``PREFIX.idx`` pair; each document
    is its sequences joined, and EOS is appended when the document does not already end with it.
    """
    where = str(path)
    if fmt == "olmo-npy":
        if dtype not in ("uint16", "uint32", "uint64"):
            raise DataError(f"{where}: an OLMo .npy token file needs token_dtype uint16 or uint32; set it")
        item = np.dtype(dtype).itemsize
        size = path.stat().st_size
        if size % item:
            raise DataError(
                f"{where}: {size} bytes is not a whole number of {dtype} tokens; check token_dtype"
            )
        with open(path, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":
                arr = np.load(path, mmap_mode="r")  # a real .npy with a header also works
            else:
                arr = np.memmap(path, dtype=dtype, mode="r", shape=(size // item,))
        if arr.size == 0:
            return
        ends = np.flatnonzero(np.asarray(arr) == eos_id) + 1
        start = 0
        for end in ends:
            yield np.asarray(arr[start:end])
            start = int(end)
        if start < arr.size:  # a last document without EOS
            yield np.concatenate([np.asarray(arr[start:]), np.asarray([eos_id], dtype=arr.dtype)])
        return
    if fmt == "megatron":
        idx = path.with_suffix(".idx")
        if not idx.is_file():
            raise DataError(f"{where}: Megatron data needs its index {idx.name} beside it")
        tdtype, lengths, docs = _megatron_index(idx)
        total = int(lengths.sum())
        if path.stat().st_size != total * tdtype.itemsize:
            raise DataError(
                f"{where}: {path.stat().st_size} bytes but the index describes {total} {tdtype} tokens; "
                "the .bin and .idx do not belong together"
            )
        data = np.memmap(path, dtype=tdtype, mode="r", shape=(total,))
        starts = np.concatenate([[0], np.cumsum(lengths)])
        bounds = docs if docs.size and docs[0] == 0 else np.concatenate([[0], docs])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            ids = np.asarray(data[starts[a] : starts[b]])
            if ids.size == 0:
                continue
            if int(ids[-1]) != eos_id:
                ids = np.concatenate([ids, np.asarray([eos_id], dtype=ids.dtype)])
            yield ids
        return
    raise DataError(f"{where}: {fmt!r} is not a pre-tokenized format; allowed: {list(TOKEN_FORMATS)}")


def iter_iterable(
    items: Iterable[Any], *, text_field: str = "text", where: str = "iterable"
) -> Iterator[str]:
    """Documents from a Python iterable of strings or of mappings holding ``text_field``."""
    for i, rec in enumerate(items):
        yield _text_of(rec, text_field, f"{where}[{i}]")
