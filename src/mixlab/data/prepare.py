"""Turn domain sources into packed token shards plus a manifest (``mixlab prepare``).

Each domain's documents are tokenized, each followed by the tokenizer's EOS id, and concatenated
into one packed stream. A seeded share ``val_fraction`` of the documents is held out as the
validation split (a domain made of a single document is split by tokens instead). Shards are
``uint16`` when the vocabulary fits, else ``uint32``.

Preparing is idempotent and all-or-nothing:

* every domain has a *fingerprint* (hashes of its source files, read options, tokenizer, split
  settings); a domain whose fingerprint matches the manifest and whose shards are intact is skipped,
  so re-running on unchanged inputs writes nothing, and a changed file is detected by its hash;
* new shards are built in a staging directory and moved into place only after every domain
  succeeded, then the manifest is replaced atomically; a bad input (missing file, empty domain,
  unreadable record) raises :class:`~mixlab.errors.DataError` and leaves the existing corpus as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixlab.data.config import CorpusConfig, DomainConfig, TokenizerConfig, load_corpus_config
from mixlab.data.corpus import DOMAIN_NAME_RE, FORMAT_VERSION, MANIFEST, SPLITS, Corpus, shard_paths
from mixlab.data.sources import (
    TOKEN_FORMATS,
    file_format,
    iter_file,
    iter_iterable,
    iter_token_documents,
    resolve_files,
)
from mixlab.data.tokenizers import ByteTokenizer, HFTokenizer, Tokenizer, token_dtype, train_bpe
from mixlab.errors import ConfigError, DataError
from mixlab.utils.io import atomic_write_json, file_sha256, read_json

log = logging.getLogger(__name__)

_WRITE_CHUNK = 1 << 20


@dataclass
class IterableSource:
    """A domain whose documents come from Python: strings, or mappings holding ``text_field``.

    ``factory`` is called each time the documents are needed (BPE training reads them twice), so
    pass e.g. ``lambda: my_generator()`` rather than a one-shot generator; a list also works.
    """

    items: Iterable[Any] | Callable[[], Iterable[Any]]
    text_field: str = "text"
    provenance: str | None = None
    licence: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def documents(self, where: str) -> Iterator[str]:
        items = self.items() if callable(self.items) else self.items
        return iter_iterable(items, text_field=self.text_field, where=where)


DomainSource = DomainConfig | IterableSource


@dataclass
class PrepareResult:
    corpus: Corpus
    built: list[str]
    skipped: list[str]
    removed: list[str]


def _file_records(files: list[Path], previous: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Path, size, mtime and SHA-256 of each source file; an unchanged (size, mtime) reuses the hash."""
    prev = {r["path"]: r for r in previous or [] if "path" in r}
    out = []
    for f in files:
        if f.is_dir():  # a datasets directory: its files' hashes, in order
            out.append({"path": str(f.resolve()), "sha256": _source_sha256(f)})
            continue
        if not f.exists():  # a dataset name read from the local datasets cache (hf-local)
            out.append({"path": str(f), "sha256": f"hf-cache:{f}"})
            continue
        st = f.stat()
        rec = {"path": str(f.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        old = prev.get(rec["path"])
        if (
            old
            and old.get("bytes") == rec["bytes"]
            and old.get("mtime_ns") == rec["mtime_ns"]
            and old.get("sha256")
        ):
            rec["sha256"] = old["sha256"]
        else:
            rec["sha256"] = file_sha256(f)
        out.append(rec)
    return out


def _source_sha256(path: Path) -> str:
    """SHA-256 of a source file, or of a directory's files (relative names and contents) in order."""
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{f.relative_to(path)}\0{file_sha256(f)}\0".encode())
    return h.hexdigest()


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _shards_intact(root: Path, name: str, info: dict[str, Any], dtype: np.dtype) -> bool:
    for split in SPLITS:
        b, i = shard_paths(root, name, split)
        if not b.is_file() or not i.is_file() or b.stat().st_size != info[split]["tokens"] * dtype.itemsize:
            return False
    return True


class _ShardWriter:
    """Appends token arrays to a packed ``.bin`` file and records document offsets."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path = path
        self.dtype = dtype
        self.fh = open(path, "wb")
        self.hash = hashlib.sha256()
        self.offsets = [0]
        self.pending: list[np.ndarray] = []
        self.pending_n = 0

    def add(self, ids: np.ndarray) -> None:
        arr = np.ascontiguousarray(ids, dtype=self.dtype)
        self.pending.append(arr)
        self.pending_n += len(arr)
        self.offsets.append(self.offsets[-1] + len(arr))
        if self.pending_n >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            data = np.concatenate(self.pending).tobytes()
            self.fh.write(data)
            self.hash.update(data)
            self.pending, self.pending_n = [], 0

    def close(self, sync: bool = True) -> None:
        self.flush()
        self.fh.flush()
        if sync:
            os.fsync(self.fh.fileno())
        self.fh.close()


def encode_documents(tok: Tokenizer, docs: Iterator[str], eos: int) -> Iterator[np.ndarray]:
    """Token ids of each non-empty document followed by EOS."""
    if isinstance(tok, ByteTokenizer):
        for d in docs:
            if d:
                ids = np.empty(len(d.encode("utf-8")) + 1, dtype=np.uint32)
                ids[:-1] = np.frombuffer(d.encode("utf-8"), dtype=np.uint8)
                ids[-1] = eos
                yield ids
        return
    batch: list[str] = []

    def flush() -> Iterator[np.ndarray]:
        enc = tok.encode_batch(batch) if hasattr(tok, "encode_batch") else [tok.encode(t) for t in batch]
        for ids in enc:
            yield np.asarray(list(ids) + [eos], dtype=np.uint32)

    for d in docs:
        if d:
            batch.append(d)
            if len(batch) >= 256:
                yield from flush()
                batch = []
    if batch:
        yield from flush()


def _build_domain(
    name: str,
    docs: Iterator[str] | Iterator[np.ndarray],
    tok: Tokenizer,
    dtype: np.dtype,
    stage_root: Path,
    val_fraction: float,
    seed: int,
    *,
    pretokenized: bool = False,
    max_tokens: int | None = None,
) -> tuple[dict[str, Any], str]:
    """Tokenize one domain into ``stage_root``; returns its split records and the content hash.

    ``pretokenized``: ``docs`` are token-id arrays (each ending with EOS), written as they are.
    ``max_tokens``: stop after the document that reaches this many tokens (a proxy-scale subset).
    """
    ddir = stage_root / "domains" / name
    ddir.mkdir(parents=True, exist_ok=True)
    all_path = ddir / "all.tmp"
    content = hashlib.sha256()
    writer = _ShardWriter(all_path, dtype)
    if pretokenized:
        encoded: Iterator[np.ndarray] = _hashing_ids(docs, content)  # type: ignore[arg-type]
    else:
        encoded = encode_documents(tok, _hashing(docs, content), tok.eos_id)  # type: ignore[arg-type]
    total = 0
    for ids in encoded:
        if ids.size and int(ids.max()) >= tok.vocab_size:
            raise DataError(
                f"domain {name!r}: token id {int(ids.max())} >= vocab_size {tok.vocab_size}"
                + ("; pre-tokenized files need the tokenizer that wrote them" if pretokenized else "")
            )
        writer.add(ids)
        total += int(ids.size)
        if max_tokens is not None and total >= max_tokens:
            break
    writer.close(sync=False)  # a scratch file, deleted below
    offsets = np.asarray(writer.offsets, dtype=np.int64)
    n_docs = len(offsets) - 1
    if n_docs == 0:
        raise DataError(
            f"domain {name!r} is empty: its sources hold no non-empty documents; add text or remove it"
        )
    all_tokens = np.memmap(all_path, dtype=dtype, mode="r", shape=(int(offsets[-1]),))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    records: dict[str, Any] = {}
    if val_fraction > 0 and n_docs >= 2:
        n_val = min(n_docs - 1, max(1, round(val_fraction * n_docs)))
        is_val = np.zeros(n_docs, dtype=bool)
        is_val[rng.choice(n_docs, size=n_val, replace=False)] = True
        for split, sel in (("train", ~is_val), ("val", is_val)):
            bin_path, idx_path = shard_paths(stage_root, name, split)
            w = _ShardWriter(bin_path, dtype)
            for i in np.flatnonzero(sel):
                w.add(all_tokens[offsets[i] : offsets[i + 1]])
            w.close()
            np.save(idx_path, np.asarray(w.offsets, dtype=np.int64))
            records[split] = {
                "tokens": int(w.offsets[-1]),
                "docs": int(sel.sum()),
                "sha256": w.hash.hexdigest(),
            }
    else:
        # one document (or no validation wanted): hold out the tail of the token stream
        total = int(offsets[-1])
        cut = total - int(round(val_fraction * total)) if val_fraction > 0 else total
        bounds = {
            "train": np.concatenate([offsets[offsets < cut], [cut]]) if cut > 0 else np.zeros(1, np.int64),
            "val": np.concatenate([[0], offsets[offsets > cut] - cut])
            if total > cut
            else np.zeros(1, np.int64),
        }
        for split, (a, b) in (("train", (0, cut)), ("val", (cut, total))):
            bin_path, idx_path = shard_paths(stage_root, name, split)
            w = _ShardWriter(bin_path, dtype)
            if b > a:
                w.add(all_tokens[a:b])
            w.close()
            np.save(idx_path, bounds[split].astype(np.int64))
            records[split] = {"tokens": b - a, "docs": len(bounds[split]) - 1, "sha256": w.hash.hexdigest()}
    del all_tokens
    all_path.unlink()
    if records["train"]["tokens"] == 0:
        raise DataError(f"domain {name!r} has no training tokens after the validation split; add text")
    return records, content.hexdigest()


def _hashing(docs: Iterator[str], h: Any) -> Iterator[str]:
    for d in docs:
        h.update(d.encode("utf-8"))
        h.update(b"\x00")
        yield d


def _hashing_ids(docs: Iterator[np.ndarray], h: Any) -> Iterator[np.ndarray]:
    for d in docs:
        arr = np.ascontiguousarray(d, dtype=np.uint32)
        h.update(arr.tobytes())
        yield arr


def _is_pretokenized(name: str, src: DomainSource) -> bool:
    """Whether a domain's files hold token ids (all of them: a domain does not mix text and ids)."""
    if isinstance(src, IterableSource):
        return False
    files = resolve_files(src.path, fmt=src.format, where=f"domain {name!r}")
    kinds = {file_format(f, src.format) in TOKEN_FORMATS for f in files}
    if len(kinds) > 1:
        raise DataError(
            f"domain {name!r}: mixes pre-tokenized files and text files; give one kind per domain"
        )
    return kinds.pop()


def _domain_docs(name: str, src: DomainSource) -> Iterator[str]:
    if isinstance(src, IterableSource):
        return src.documents(where=f"domain {name!r}")
    files = resolve_files(src.path, fmt=src.format, where=f"domain {name!r}")

    def gen() -> Iterator[str]:
        for f in files:
            yield from iter_file(
                f,
                fmt=src.format,
                text_field=src.text_field,
                split=src.split,
                domain_field=src.domain_field,
                domain_value=src.domain_value,
                hf_split=src.hf_split,
            )

    return gen()


def _domain_token_docs(name: str, src: DomainConfig, eos_id: int) -> Iterator[np.ndarray]:
    files = resolve_files(src.path, fmt=src.format, where=f"domain {name!r}")
    for f in files:
        yield from iter_token_documents(
            f, fmt=str(file_format(f, src.format)), eos_id=eos_id, dtype=src.token_dtype
        )


def _make_tokenizer(
    cfg: TokenizerConfig,
    out: Path,
    stage: Path,
    sources: Mapping[str, DomainSource],
    old: dict[str, Any] | None,
) -> tuple[Tokenizer, dict[str, Any]]:
    """The tokenizer and its manifest record; a BPE is (re)trained only when its inputs changed."""
    if cfg.type == "byte":
        return ByteTokenizer(), {}
    if cfg.type == "hf":
        assert cfg.path is not None
        HFTokenizer(cfg.path, eos_token=cfg.eos_token)  # validate before copying
        shutil.copyfile(cfg.path, stage / "tokenizer.json")
        return HFTokenizer(stage / "tokenizer.json", eos_token=cfg.eos_token), {
            "source": str(Path(cfg.path).resolve())
        }
    # bpe: fingerprint of what it would be trained on
    parts = {"vocab_size": cfg.vocab_size, "eos": cfg.eos_token or "<|endoftext|>", "domains": {}}
    for name, src in sources.items():
        if isinstance(src, DomainConfig):
            if _is_pretokenized(name, src):
                raise ConfigError(
                    f"domain {name!r} is pre-tokenized: a BPE cannot be trained on token ids; name the "
                    "tokenizer that wrote it (tokenizer: {type: hf, path: tokenizer.json})"
                )
            files = resolve_files(src.path, fmt=src.format, where=f"domain {name!r}")
            parts["domains"][name] = [_source_sha256(f) for f in files] + [
                src.text_field,
                src.split,
                src.domain_field,
                src.domain_value,
                src.max_tokens,
            ]
        else:
            h = hashlib.sha256()
            for d in src.documents(where=f"domain {name!r}"):
                h.update(d.encode())
            parts["domains"][name] = h.hexdigest()
    fp = _fingerprint(parts)
    existing = out / "tokenizer.json"
    if old and old.get("tokenizer", {}).get("bpe_fingerprint") == fp and existing.is_file():
        shutil.copyfile(existing, stage / "tokenizer.json")
        tok = HFTokenizer(stage / "tokenizer.json", eos_token=parts["eos"])
    else:
        log.info("training a byte-level BPE tokenizer (vocab %d)", cfg.vocab_size)

        def texts() -> Iterator[str]:
            for name, src in sources.items():
                yield from _domain_docs(name, src)

        tok = train_bpe(texts(), stage / "tokenizer.json", vocab_size=cfg.vocab_size, eos_token=parts["eos"])
    return tok, {"bpe_fingerprint": fp, "bpe_vocab_size": cfg.vocab_size}


def prepare_corpus(
    config: CorpusConfig | str | Path,
    *,
    iterables: Mapping[str, IterableSource | Iterable[Any]] | None = None,
    force: bool = False,
    extra: Mapping[str, Any] | None = None,
    on_domain: Callable[[str, str], None] | None = None,
) -> PrepareResult:
    """Prepare (or update) the corpus described by ``config`` (a :class:`CorpusConfig` or YAML path).

    ``iterables`` adds domains whose documents come from Python. ``force`` rebuilds every domain.
    ``extra`` is stored under ``manifest["extra"]``. ``on_domain(name, status)`` is called with
    status ``"built"``/``"skipped"`` as each domain finishes (the CLI draws its progress bar with it).
    """
    cfg = config if isinstance(config, CorpusConfig) else load_corpus_config(config)
    return prepare_sources(
        Path(cfg.output_dir),
        dict(cfg.domains),
        cfg.tokenizer,
        cfg.val_fraction,
        cfg.seed,
        iterables=iterables,
        force=force,
        extra=extra,
        on_domain=on_domain,
    )


def prepare_sources(
    out: Path,
    sources: dict[str, DomainSource],
    tok_cfg: TokenizerConfig,
    val_fraction: float,
    seed: int,
    *,
    iterables: Mapping[str, IterableSource | Iterable[Any]] | None,
    force: bool,
    extra: Mapping[str, Any] | None,
    on_domain: Callable[[str, str], None] | None,
) -> PrepareResult:
    """Tokenise ``sources`` (and ``iterables``) into packed shards + manifest under ``out``.

    The one writer behind :func:`prepare_corpus`, :func:`prepare_domains` and the built-in corpus:
    each caller resolves its own config into sources first, so the shard format lives in one place.
    """
    for name, it in (iterables or {}).items():
        if name in sources:
            raise ConfigError(f"domain {name!r} is given both in the config and as an iterable")
        if not DOMAIN_NAME_RE.match(name):
            raise ConfigError(f"invalid domain name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
        sources[name] = it if isinstance(it, IterableSource) else IterableSource(it)
    if not sources:
        raise ConfigError("the corpus has no domains; add at least one under 'domains'")
    if not 0 <= val_fraction < 0.9:
        raise ConfigError(f"val_fraction must be in [0, 0.9), got {val_fraction}")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    old = None
    if (out / MANIFEST).is_file():
        try:
            old = read_json(out / MANIFEST)
            if old.get("format_version") != FORMAT_VERSION:
                old = None
        except DataError:
            old = None
    stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        tok, tok_extra = _make_tokenizer(tok_cfg, out, stage, sources, old)
        tok_spec = {**tok.spec(), **tok_extra}
        dtype = token_dtype(tok.vocab_size)
        tok_changed = (
            not old
            or {k: v for k, v in old["tokenizer"].items()} != tok_spec
            or old.get("dtype") != dtype.name
        )
        domains_out: dict[str, Any] = {}
        built, skipped = [], []
        for name, src in sources.items():
            prev = (old or {}).get("domains", {}).get(name)
            options = {
                "tokenizer": tok.fingerprint(),
                "val_fraction": val_fraction,
                "seed": seed,
            }
            meta: dict[str, Any] = {}
            if isinstance(src, DomainConfig):
                files = resolve_files(src.path, fmt=src.format, where=f"domain {name!r}")
                recs = _file_records(files, prev.get("sources") if prev else None)
                options.update(
                    format=src.format,
                    text_field=src.text_field,
                    split=src.split,
                    sources=[(r["path"], r["sha256"]) for r in recs],
                )
                # read options added later enter the fingerprint only when set, so that corpora
                # prepared before them keep their fingerprints
                for key in ("domain_field", "domain_value", "max_tokens", "token_dtype"):
                    if getattr(src, key) is not None:
                        options[key] = getattr(src, key)
                if src.hf_split != "train":
                    options["hf_split"] = src.hf_split
                fp = _fingerprint(options)
                meta = {"sources": recs, "provenance": src.provenance, "licence": src.licence}
                if (
                    not force
                    and not tok_changed
                    and prev
                    and prev.get("fingerprint") == fp
                    and _shards_intact(out, name, prev, dtype)
                ):
                    domains_out[name] = {**prev, **meta}
                    skipped.append(name)
                    if on_domain:
                        on_domain(name, "skipped")
                    continue
                pretok = _is_pretokenized(name, src)
                records, content = _build_domain(
                    name,
                    _domain_token_docs(name, src, tok.eos_id) if pretok else _domain_docs(name, src),
                    tok,
                    dtype,
                    stage,
                    val_fraction,
                    seed,
                    pretokenized=pretok,
                    max_tokens=src.max_tokens,
                )
            else:
                records, content = _build_domain(
                    name, _domain_docs(name, src), tok, dtype, stage, val_fraction, seed
                )
                options.update(iterable_sha256=content, text_field=src.text_field)
                fp = _fingerprint(options)
                meta = {
                    "sources": [{"iterable": True, "sha256": content}],
                    "provenance": src.provenance,
                    "licence": src.licence,
                    **src.meta,
                }
                if (
                    not force
                    and not tok_changed
                    and prev
                    and prev.get("fingerprint") == fp
                    and _shards_intact(out, name, prev, dtype)
                ):
                    shutil.rmtree(stage / "domains" / name)
                    domains_out[name] = {**prev, **meta}
                    skipped.append(name)
                    if on_domain:
                        on_domain(name, "skipped")
                    continue
            domains_out[name] = {**records, **meta, "fingerprint": fp, "content_sha256": content}
            built.append(name)
            log.info(
                "domain %s: %d train / %d val tokens",
                name,
                records["train"]["tokens"],
                records["val"]["tokens"],
            )
            if on_domain:
                on_domain(name, "built")
        removed = sorted(set((old or {}).get("domains", {})) - set(sources))
        manifest = {
            "format_version": FORMAT_VERSION,
            "tokenizer": tok_spec,
            "dtype": dtype.name,
            "val_fraction": val_fraction,
            "seed": seed,
            "domains": domains_out,
            "extra": dict(extra) if extra is not None else dict((old or {}).get("extra", {})),
            "created_by": "mixlab",
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if (
            not built
            and not removed
            and old is not None
            and not tok_changed
            and old.get("extra") == manifest["extra"]
        ):
            log.info("corpus at %s is up to date", out)
            return PrepareResult(Corpus.open(out), built, skipped, removed)
        # commit: move staged shards into place, then the manifest, atomically
        for name in built:
            target = out / "domains" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                trash = Path(tempfile.mkdtemp(dir=stage, prefix="old-"))
                os.replace(target, trash / name)
            os.replace(stage / "domains" / name, target)
        for name in removed:
            shutil.rmtree(out / "domains" / name, ignore_errors=True)
        if (stage / "tokenizer.json").is_file():
            os.replace(stage / "tokenizer.json", out / "tokenizer.json")
        elif (out / "tokenizer.json").is_file() and tok_cfg.type == "byte":
            (out / "tokenizer.json").unlink()
        atomic_write_json(out / MANIFEST, manifest)
        return PrepareResult(Corpus.open(out), built, skipped, removed)
    except BaseException:
        if created:  # a failed first prepare leaves no empty output folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def prepare_domains(
    output_dir: str | Path,
    domains: Mapping[str, str | Path | list[str] | DomainConfig | IterableSource | Iterable[Any]],
    *,
    tokenizer: TokenizerConfig | str = "byte",
    val_fraction: float = 0.05,
    seed: int = 0,
    force: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Corpus:
    """Library shortcut: ``prepare_domains("out", {"web": "data/web/*.jsonl", "gen": ["a", "b"]})``.

    A string/Path value is a file, directory or glob; a list of strings is a list of documents
    (use ``DomainConfig(path=[...])`` for a list of paths); anything else iterable is a document source.
    """
    if isinstance(tokenizer, TokenizerConfig):
        tok_cfg = tokenizer
    elif tokenizer == "byte":
        tok_cfg = TokenizerConfig(type="byte")
    else:
        tok_cfg = TokenizerConfig(type="hf", path=Path(tokenizer))
    file_domains: dict[str, DomainConfig] = {}
    iterables: dict[str, IterableSource | Iterable[Any]] = {}
    for name, spec in domains.items():
        if isinstance(spec, DomainConfig):
            file_domains[name] = spec
        elif isinstance(spec, (str, Path)):
            file_domains[name] = DomainConfig(path=str(spec))
        else:
            iterables[name] = spec
    for name in file_domains:
        if not DOMAIN_NAME_RE.match(name):
            raise ConfigError(f"invalid domain name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
    return prepare_sources(
        Path(output_dir),
        dict(file_domains),
        tok_cfg,
        val_fraction,
        seed,
        iterables=iterables,
        force=force,
        extra=extra,
        on_domain=None,
    ).corpus
