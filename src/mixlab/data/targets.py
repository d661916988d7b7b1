"""Target sets: what a mixture is chosen *for*, evaluated but never trained on.

A target is a named evaluation source with a weight: a text file, a directory or glob of
``.txt``/``.jsonl``/``.jsonl.zst``/``.parquet`` files, a Hugging Face dataset saved on disk (when the
``datasets`` package is installed), the built-in downstream target (``builtin:pydoc``), or the
validation split of one of the corpus's training domains (``domain:NAME``). Every method optimises
the weighted target loss ``sum_j c_j L_j`` (weights ``c_j`` normalised to sum to one).

An evaluation-only target is tokenised with the corpus's tokenizer (each document followed by EOS,
exactly as ``mixlab prepare`` does) and cached atomically under ``<user cache>/mixlab/targets/``; its tokens are
handed to evaluation and influence code only, never to the :class:`~mixlab.data.MixtureSampler`, so
they cannot enter a training batch. In losses, curves and influence matrices an evaluation-only
target appears under the key ``target:<name>``; a training domain's validation split under the
domain's own name.

The built-in target is the text of the Python documentation's topic pages that ships with the
standard library (``pydoc_data.topics``: the language reference and library manual sections ``help()``
shows). It is English technical prose about Python: close to the ``code`` domain's subject but not its
form, so its best mixture is far from uniform. ``python_stdlib`` (the ``code`` domain) skips the
``pydoc_data`` package so that the text is in no training domain.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import numpy as np
import platformdirs
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mixlab.data.prepare import encode_documents
from mixlab.data.sources import is_hf_disk_dataset, iter_file, resolve_files
from mixlab.errors import ConfigError, DataError
from mixlab.utils.config import parse_config
from mixlab.utils.io import atomic_open

TARGET_PREFIX = "target:"
"""Key prefix of an evaluation-only target in losses, curves and influence matrices."""

BUILTIN_TARGETS: dict[str, str] = {
    "pydoc": "the Python documentation topics shipped with the standard library (pydoc_data.topics)",
}
"""Built-in target name -> what it is (``--target builtin:pydoc``)."""

DEFAULT_TARGET = "builtin:pydoc"
"""The target set of ``mixlab bench`` and the demo when none is given."""

_BINARY_SNIFF = 8192


class TargetSpec(BaseModel):
    """One target of a target set (an item of a ``targets:`` YAML list or one ``--target``)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    """A file, directory or glob of txt/jsonl/jsonl.zst/parquet files, an HF dataset directory
    (``datasets.save_to_disk``), or ``builtin:<name>`` (:data:`BUILTIN_TARGETS`)."""
    domain: str | None = None
    """Instead of ``path``: a training domain whose validation split is the target."""
    name: str | None = None
    """Name in tables and keys (default: the file's stem, the built-in name or the domain)."""
    weight: float = Field(1.0, gt=0)
    """Weight c_j of this target in the weighted target loss (normalised over the set)."""
    text_field: str = "text"
    """Field holding the text in jsonl/parquet/HF records."""

    @model_validator(mode="after")
    def _one_source(self) -> TargetSpec:
        if (self.path is None) == (self.domain is None):
            raise ValueError("give exactly one of path (an evaluation source) or domain (a training domain)")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.domain is not None:
            return self.domain
        assert self.path is not None
        if self.path.startswith("builtin:"):
            return self.path.split(":", 1)[1]
        p = Path(self.path.rstrip("/"))
        return p.name.split(".")[0] or p.name

    @property
    def key(self) -> str:
        """``domain`` for a training domain's validation split, else ``target:<name>``."""
        return self.domain if self.domain is not None else TARGET_PREFIX + self.label


def parse_target_option(text: str) -> TargetSpec:
    """``"docs.txt=2"`` -> a spec with path docs.txt and weight 2 (``--target PATH[=WEIGHT]``).

    ``builtin:pydoc`` names the built-in target, ``domain:code`` a training domain's validation split.
    The weight is read only when the text after the last ``=`` is a number, so paths may hold ``=``.
    """
    raw = text.strip()
    if not raw:
        raise ConfigError("--target: empty value; write PATH[=WEIGHT], builtin:pydoc or domain:NAME[=WEIGHT]")
    source, weight = raw, 1.0
    head, eq, tail = raw.rpartition("=")
    if eq:
        try:
            weight = float(tail)
        except ValueError:
            pass
        else:
            source = head
            if not weight > 0 or not np.isfinite(weight):
                raise ConfigError(f"--target {raw!r}: the weight must be a positive number, got {tail!r}")
    if source.startswith("domain:"):
        return TargetSpec(domain=source.split(":", 1)[1], weight=weight)
    return TargetSpec(path=source, weight=weight)


def parse_targets(items: Any, where: str) -> list[TargetSpec]:
    """A ``targets:`` YAML value (a list of mappings or ``PATH[=WEIGHT]`` strings) as specs."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{where}: targets must be a list of PATH[=WEIGHT] strings or mappings")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, TargetSpec):
            out.append(item)
        elif isinstance(item, str):
            out.append(parse_target_option(item))
        else:
            out.append(parse_config(TargetSpec, item, f"{where}: targets[{i}]"))
    return out


def resolve_target_paths(items: Sequence[Any], base: str | os.PathLike[str]) -> list[Any]:
    """``items`` (``targets:`` of a YAML file) with relative file paths resolved against ``base``."""
    out: list[Any] = []
    for item in items:
        spec = item if isinstance(item, TargetSpec) else parse_targets([item], "targets")[0]
        if spec.path is not None and not spec.path.startswith("builtin:") and not Path(spec.path).is_absolute():
            spec = spec.model_copy(update={"path": str(Path(base) / spec.path)})
        out.append(spec.model_dump(exclude_defaults=True))
    return out


# ------------------------------------------------------------------------------------- sources
def builtin_target_documents(name: str) -> Iterator[str]:
    """The documents of a built-in target (one per documentation topic, in sorted topic order)."""
    if name not in BUILTIN_TARGETS:
        raise ConfigError(f"unknown built-in target {name!r}; choose one of {sorted(BUILTIN_TARGETS)}")

    for key in sorted(topics):
        text = topics[key].strip()
        if text:
            yield text


def _check_text_file(path: Path, where: str) -> None:
    """A clear error for an empty or binary file (NUL bytes, or not UTF-8 in the first 8 KiB)."""
    if path.stat().st_size == 0:
        raise DataError(f"{where}: {path} is empty; give a file with text in it")
    with open(path, "rb") as fh:
        head = fh.read(_BINARY_SNIFF)
    if path.name.endswith((".zst", ".parquet")):
        return
    if b"\0" in head:
        raise DataError(f"{where}: {path} looks like a binary file (it has NUL bytes); give a UTF-8 text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the sniff's end is fine
            raise DataError(f"{where}: {path} is not UTF-8 text (bad byte at {exc.start}); give a text file") from None


def _hf_split(path: Path) -> str:
    """The split a target reads from a saved ``DatasetDict``: ``validation`` when it has one (a target
    is evaluation data), else its first split; a saved ``Dataset`` has no splits to choose."""
    listing = path / "dataset_dict.json"
    if not listing.is_file():
        return "train"
    try:
        splits = list(json.loads(listing.read_text(encoding="utf-8"))["splits"])
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{listing}: not a datasets DatasetDict listing (no 'splits' list)") from None
    return "validation" if "validation" in splits else str(splits[0])


def target_documents(spec: TargetSpec) -> tuple[Iterator[str], str]:
    """The documents of an evaluation-only target and a content hash of its source files."""
    where = f"target {spec.label!r}"
    assert spec.path is not None
    if spec.path.startswith("builtin:"):
        name = spec.path.split(":", 1)[1]
        docs = list(builtin_target_documents(name))
        h = hashlib.sha256("\n\0".join(docs).encode("utf-8")).hexdigest()
        return iter(docs), h
    path = Path(spec.path).expanduser()
    if not any(ch in spec.path for ch in "*?[") and not path.exists():
        raise DataError(f"{where}: {path} does not exist; give an existing text file or directory")
    if is_hf_disk_dataset(path):
        h = hashlib.sha256()
        for f in sorted(path.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(path)}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
        docs = iter_file(path, fmt="hf-disk", text_field=spec.text_field, hf_split=_hf_split(path))
        return (d for d in docs if d), h.hexdigest()
    files = resolve_files(str(path) if not any(ch in spec.path for ch in "*?[") else spec.path, where=where)
    h = hashlib.sha256()
    for f in files:
        _check_text_file(f, where)
        h.update(str(f.resolve()).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)

    def docs() -> Iterator[str]:
        for f in files:
            yield from iter_file(f, text_field=spec.text_field)

    return docs(), h.hexdigest()


# ------------------------------------------------------------------------------------- loading
@dataclass
class Target:
    """A loaded target: its key, normalised weight and, when evaluation-only, its token ids."""

    key: str
    name: str
    weight: float
    domain: str | None = None
    tokens: np.ndarray | None = None
    source: str | None = None

    @property
    def eval_only(self) -> bool:
        return self.domain is None


@dataclass
class TargetSet:
    """Loaded targets of one corpus; ``weights`` sum to one."""

    targets: list[Target]

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.targets]

    @property
    def weights(self) -> dict[str, float]:
        return {t.key: t.weight for t in self.targets}

    def eval_sources(self) -> dict[str, np.ndarray]:
        """``{key: token ids}`` of the evaluation-only targets (what evaluation and influence read)."""
        return {t.key: t.tokens for t in self.targets if t.tokens is not None}

    def weighted_loss(self, losses: Mapping[str, float]) -> float:
        """``sum_j c_j L_j`` from a mapping holding every target's loss."""
        missing = [k for k in self.keys if k not in losses]
        if missing:
            raise DataError(f"no loss recorded for target(s) {missing} (have {sorted(losses)})")
        return float(sum(t.weight * float(losses[t.key]) for t in self.targets))

    def context_fields(self) -> dict[str, Any]:
        """``target_domains``, ``target_weights`` and ``target_sources`` for a ``MixingContext``."""
        return {"target_domains": self.keys, "target_weights": self.weights, "target_sources": self.eval_sources()}

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"key": t.key, "weight": t.weight, "source": t.source or f"domain:{t.domain}",
             "tokens": int(len(t.tokens)) if t.tokens is not None else None}
            for t in self.targets
        ]


def _cache_dir() -> Path:
    """``<user cache dir>/mixlab/targets``: entries are keyed by content and tokenizer, so one cache
    serves every corpus, and a prepared corpus directory is never written to."""

    return Path(platformdirs.user_cache_dir("mixlab")) / "targets"


def _tokenizer_id(corpus: Any) -> str:
    manifest = getattr(corpus, "manifest", None) or {}
    spec = manifest.get("tokenizer", {"vocab_size": corpus.vocab_size})
    return json.dumps(spec, sort_keys=True, default=str)


def _tokenise(corpus: Any, spec: TargetSpec, cache_dir: Path | None) -> np.ndarray:
    docs, content = target_documents(spec)
    key = hashlib.sha256(f"{content}|{_tokenizer_id(corpus)}|{spec.text_field}".encode()).hexdigest()[:20]
    cache = (cache_dir or _cache_dir()) / f"{spec.label}-{key}.npy"
    if cache.is_file():
        try:
            return np.load(cache, allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt below
    texts = (d for d in docs if d.strip())
    parts = list(encode_documents(corpus.tokenizer, texts, int(corpus.eos_id)))
    if not parts:
        raise DataError(f"target {spec.label!r}: {spec.path} holds no text; give a file or directory with text in it")
    dtype = np.uint16 if int(corpus.vocab_size) <= np.iinfo(np.uint16).max + 1 else np.uint32
    ids = np.concatenate(parts).astype(dtype)
    buf = io.BytesIO()
    np.save(buf, ids, allow_pickle=False)
    with atomic_open(cache, "wb") as fh:
        fh.write(buf.getvalue())
    return ids


def load_targets(
    corpus: Any, specs: Sequence[TargetSpec | str | Mapping[str, Any]], *, cache_dir: str | Path | None = None
) -> TargetSet:
    """Resolve ``specs`` against ``corpus``: check domains, tokenise (or read the cache of) files.

    ``load_targets(corpus, ["builtin:pydoc", "domain:code=0.5"])`` gives a :class:`TargetSet` with
    keys ``["target:pydoc", "code"]`` and weights ``{..: 2/3, ..: 1/3}``.
    """
    parsed = parse_targets(list(specs), "targets")
    if not parsed:
        raise ConfigError("a target set needs at least one target")
    domains = list(corpus.domains)
    keys = [s.key for s in parsed]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"targets: {dup} given twice; give each target once (set name: to tell files apart)")
    clash = [s.label for s in parsed if s.domain is None and s.label in domains and s.name]
    if clash:
        raise ConfigError(f"targets: name(s) {clash} are training domains; use domain: for a domain's validation split")
    total = float(sum(s.weight for s in parsed))
    out: list[Target] = []
    for s in parsed:
        if s.domain is not None:
            if s.domain not in domains:
                raise ConfigError(f"target domain {s.domain!r} is not a training domain of the corpus {domains}")
            out.append(Target(key=s.key, name=s.label, weight=s.weight / total, domain=s.domain))
        else:
            tokens = _tokenise(corpus, s, Path(cache_dir) if cache_dir is not None else None)
            out.append(Target(key=s.key, name=s.label, weight=s.weight / total, tokens=tokens, source=s.path))
    return TargetSet(out)


def domain_targets(domains: Sequence[str], weights: Mapping[str, float] | None = None) -> list[TargetSpec]:
    """Specs for training domains' validation splits (equal weights unless given)."""
    return [TargetSpec(domain=d, weight=float((weights or {}).get(d, 1.0))) for d in domains]


__all__ = [
    "BUILTIN_TARGETS",
    "DEFAULT_TARGET",
    "TARGET_PREFIX",
    "Target",
    "TargetSet",
    "TargetSpec",
    "builtin_target_documents",
    "domain_targets",
    "load_targets",
    "parse_target_option",
    "parse_targets",
    "resolve_target_paths",
    "target_documents",
]
