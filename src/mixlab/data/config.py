"""Typed configuration for corpora, tokenizers and the sampler, loaded from YAML.

A wrong field becomes a :class:`~mixlab.errors.ConfigError` naming the file, the field path and
what is allowed, e.g. ``corpus.yaml: domains.web.format: Input should be 'auto', 'txt', ...``.

Example ``corpus.yaml``::

    output_dir: corpus            # relative paths are relative to this file
    tokenizer: {type: byte}
    val_fraction: 0.05
    domains:
      web:  {path: "data/web/*.jsonl", text_field: text}
      code: {path: data/code, split: file}
      wiki: {path: data/wiki_hf, format: hf-disk, max_tokens: 5000000}   # datasets.save_to_disk
      olmo: {path: "tok/*.npy", format: olmo-npy, token_dtype: uint32}   # pre-tokenized, not re-tokenised
    mixed:                        # one mixed source split into domains by a field
      - path: "dolma/*.json.gz"
        domain_field: source      # a dotted path, e.g. meta.redpajama_set_name (SlimPajama)
        domains: [wiki, c4]       # or {value: domain_name}; default: every value found
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mixlab.data.sources import domain_values, resolve_files
from mixlab.errors import ConfigError, DataError
from mixlab.utils.config import parse_config
from mixlab.utils.io import read_yaml

_DOMAIN_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SourceFormat = Literal[
    "auto",
    "txt",
    "txt.gz",
    "jsonl",
    "jsonl.zst",
    "jsonl.gz",
    "parquet",
    "arrow",
    "hf-disk",
    "hf-local",
    "olmo-npy",
    "megatron",
]


class TokenizerConfig(BaseModel):
    """Which tokenizer turns documents into token ids."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["byte", "hf", "bpe"] = "byte"
    """``byte``: UTF-8 bytes + EOS (vocab 257); ``hf``: a Hugging Face ``tokenizer.json`` at ``path``;
    ``bpe``: train a small byte-level BPE of ``vocab_size`` on the corpus."""
    path: Path | None = None
    """The ``tokenizer.json`` file for ``type: hf``."""
    eos_token: str | None = None
    """End-of-document token for ``hf``/``bpe`` (default: the first of <|endoftext|>, </s>, <eos> found)."""
    vocab_size: int = Field(4096, ge=300, le=1 << 20)
    """Vocabulary size of a trained BPE (``type: bpe`` only)."""


class DomainConfig(BaseModel):
    """One domain: where its documents are and how to read them."""

    model_config = ConfigDict(extra="forbid")

    path: str | list[str]
    """A file, directory or glob (or a list of them); relative to the config file."""
    format: SourceFormat = "auto"
    """File format; ``auto`` decides by extension (and a ``save_to_disk`` directory is ``hf-disk``).
    ``hf-local``: ``datasets.load_dataset(path)`` on a local path (offline). ``olmo-npy`` / ``megatron``:
    pre-tokenized ids, read as they are with the corpus tokenizer (which must be the one that made them)."""
    text_field: str = "text"
    """The field (jsonl), column (parquet/arrow/datasets) holding each document's text; a dotted path
    reaches into nested records."""
    domain_field: str | None = None
    """With ``domain_value``: keep only records whose field (dotted path) equals the value."""
    domain_value: str | None = None
    """The value of ``domain_field`` that this domain's records carry."""
    max_tokens: int | None = Field(None, ge=1)
    """Stop reading this domain after this many tokens (whole documents; a proxy-scale subset)."""
    token_dtype: Literal["uint16", "uint32", "uint64"] | None = None
    """Token id type of an ``olmo-npy`` file (OLMo writes uint32 for vocabularies over 65536)."""
    hf_split: str = "train"
    """The split read from a ``datasets`` DatasetDict (``hf-disk``/``hf-local``)."""
    split: Literal["file", "blank_line", "line"] = "file"
    """How a .txt file is cut into documents: the whole file, paragraphs, or lines."""
    provenance: str | None = None
    """Where the text comes from (recorded in the manifest)."""
    licence: str | None = None
    """The text's licence (recorded in the manifest)."""

    @model_validator(mode="after")
    def _pairs(self) -> DomainConfig:
        if (self.domain_field is None) != (self.domain_value is None):
            raise ValueError("domain_field and domain_value go together (or use 'mixed:' to split a source)")
        if self.format == "olmo-npy" and self.token_dtype is None:
            raise ValueError(
                "format olmo-npy needs token_dtype (uint16 or uint32, as the files were written)"
            )
        if self.format in ("olmo-npy", "megatron") and self.domain_field is not None:
            raise ValueError("pre-tokenized files have no fields: domain_field does not apply")
        return self


class MixedSourceConfig(BaseModel):
    """A source holding several domains, split by the value of ``domain_field`` in each record."""

    model_config = ConfigDict(extra="forbid")

    path: str | list[str]
    """A file, directory or glob (or a list of them); relative to the config file."""
    domain_field: str
    """The field naming each record's domain; a dotted path (``meta.redpajama_set_name``, ``source``)."""
    domains: list[str] | dict[str, str] | None = None
    """Which values become domains: a list (the value is the domain name) or ``{value: name}``;
    default every value found (each must be a valid domain name). Other records are skipped."""
    format: SourceFormat = "auto"
    text_field: str = "text"
    max_tokens: int | None = Field(None, ge=1)
    """A per-domain token cap, as in a domain."""
    hf_split: str = "train"
    provenance: str | None = None
    licence: str | None = None


class CorpusConfig(BaseModel):
    """A corpus to prepare: domains, tokenizer, output directory and validation split."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path
    """Directory the shards and manifest.json are written to (relative to the config file)."""
    domains: dict[str, DomainConfig] = Field(default_factory=dict)
    """Domain name -> source. Names: letters, digits, '_', '.', '-' (they become directory names)."""
    mixed: list[MixedSourceConfig] = Field(default_factory=list)
    """Sources split into domains by a record field; expanded into ``domains`` when the file is loaded."""
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    """The tokenizer (default: byte-level)."""
    val_fraction: float = Field(0.05, ge=0.0, lt=0.9)
    """Share of each domain's documents held out for validation (at least one document when > 0)."""
    seed: int = 0
    """Seed of the train/validation assignment of documents."""

    @field_validator("domains")
    @classmethod
    def _names(cls, v: dict[str, DomainConfig]) -> dict[str, DomainConfig]:
        bad = [k for k in v if not re.match(_DOMAIN_RE, k)]
        if bad:
            raise ValueError(f"invalid domain name(s) {bad}: use letters, digits, '_', '.', '-' (max 64)")
        return v


class SamplerConfig(BaseModel):
    """How training sequences are drawn from the corpus (see :class:`mixlab.data.MixtureSampler`)."""

    model_config = ConfigDict(extra="forbid")

    seq_len: int = Field(256, ge=1)
    """Tokens per training sequence (each sequence reads seq_len + 1 contiguous tokens)."""
    batch_size: int = Field(8, ge=1)
    """Sequences per micro-batch per rank."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step."""
    seed: int = 0
    """Seed of the stream; the same seed gives the same sequences."""
    max_epochs: float | dict[str, float] | None = None
    """Most passes over any domain (or per domain); None = unlimited."""
    on_exceed: Literal["error", "warn"] = "error"
    """What happens before a domain would be repeated beyond max_epochs."""


def load_corpus_config(path: str | Path) -> CorpusConfig:
    """Read a corpus YAML file; relative paths inside it are resolved against its directory."""
    p = Path(path)
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a mapping with 'output_dir' and 'domains', got {type(data).__name__}"
        )
    cfg: CorpusConfig = parse_config(CorpusConfig, data, str(p))
    base = p.parent
    for m in cfg.mixed:
        paths = m.path if isinstance(m.path, list) else [m.path]
        m.path = [q if Path(q).is_absolute() else str(base / q) for q in paths]
    _expand_mixed(cfg, str(p))
    if not cfg.domains:
        raise ConfigError(f"{p}: domains: give at least one domain (under 'domains' or 'mixed')")
    cfg.output_dir = cfg.output_dir if cfg.output_dir.is_absolute() else base / cfg.output_dir
    if cfg.tokenizer.path is not None and not cfg.tokenizer.path.is_absolute():
        cfg.tokenizer.path = base / cfg.tokenizer.path
    for dom in cfg.domains.values():
        paths = dom.path if isinstance(dom.path, list) else [dom.path]
        resolved = [q if Path(q).is_absolute() else str(base / q) for q in paths]
        dom.path = resolved if isinstance(dom.path, list) else resolved[0]
    if cfg.tokenizer.type == "hf" and cfg.tokenizer.path is None:
        raise ConfigError(
            f"{p}: tokenizer.path: required when tokenizer.type is 'hf' (a tokenizer.json file)"
        )
    return cfg


def _expand_mixed(cfg: CorpusConfig, where: str) -> None:
    """Turn each ``mixed`` source into one domain per selected value of its ``domain_field``."""
    for i, m in enumerate(cfg.mixed):
        at = f"{where}: mixed[{i}]"
        if isinstance(m.domains, dict):
            names = dict(m.domains)
        elif isinstance(m.domains, list):
            names = {v: v for v in m.domains}
        else:
            files = resolve_files(m.path, fmt=m.format, where=at)
            try:
                found = domain_values(files, fmt=m.format, field=m.domain_field, hf_split=m.hf_split)
            except DataError as exc:
                raise ConfigError(f"{at}: {exc}") from None
            names = {v: v for v in sorted(found)}
        if not names:
            raise ConfigError(f"{at}: no record has a {m.domain_field!r} value; check domain_field")
        for value, name in names.items():
            if not re.match(_DOMAIN_RE, name):
                raise ConfigError(
                    f"{at}: value {value!r} of {m.domain_field!r} is not a valid domain name; map it with "
                    f"domains: {{{value!r}: a_name}} (letters, digits, '_', '.', '-')"
                )
            if name in cfg.domains:
                raise ConfigError(f"{at}: domain {name!r} is defined twice")
            cfg.domains[name] = DomainConfig(
                path=m.path,
                format=m.format,
                text_field=m.text_field,
                domain_field=m.domain_field,
                domain_value=str(value),
                max_tokens=m.max_tokens,
                hf_split=m.hf_split,
                provenance=m.provenance,
                licence=m.licence,
            )
    cfg.mixed = []


def load_sampler_config(path: str | Path, key: str | None = "sampler") -> SamplerConfig:
    """Read sampler settings from YAML (under ``key`` when the file has it)."""
    p = Path(path)
    data = read_yaml(p) or {}
    if key and isinstance(data, dict) and key in data:
        data = data[key]
    return parse_config(SamplerConfig, data, str(p))
