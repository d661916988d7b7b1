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
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mixlab.errors import ConfigError
from mixlab.utils.config import parse_config
from mixlab.utils.io import read_yaml

_DOMAIN_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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
    format: Literal["auto", "txt", "jsonl", "jsonl.zst", "parquet"] = "auto"
    """File format; ``auto`` decides by extension."""
    text_field: str = "text"
    """The field (jsonl) or column (parquet) holding each document's text."""
    split: Literal["file", "blank_line", "line"] = "file"
    """How a .txt file is cut into documents: the whole file, paragraphs, or lines."""
    provenance: str | None = None
    """Where the text comes from (recorded in the manifest)."""
    licence: str | None = None
    """The text's licence (recorded in the manifest)."""


class CorpusConfig(BaseModel):
    """A corpus to prepare: domains, tokenizer, output directory and validation split."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path
    """Directory the shards and manifest.json are written to (relative to the config file)."""
    domains: dict[str, DomainConfig]
    """Domain name -> source. Names: letters, digits, '_', '.', '-' (they become directory names)."""
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    """The tokenizer (default: byte-level)."""
    val_fraction: float = Field(0.05, ge=0.0, lt=0.9)
    """Share of each domain's documents held out for validation (at least one document when > 0)."""
    seed: int = 0
    """Seed of the train/validation assignment of documents."""

    @field_validator("domains")
    @classmethod
    def _names(cls, v: dict[str, DomainConfig]) -> dict[str, DomainConfig]:
        import re

        if not v:
            raise ValueError("give at least one domain")
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


def load_sampler_config(path: str | Path, key: str | None = "sampler") -> SamplerConfig:
    """Read sampler settings from YAML (under ``key`` when the file has it)."""
    p = Path(path)
    data = read_yaml(p) or {}
    if key and isinstance(data, dict) and key in data:
        data = data[key]
    return parse_config(SamplerConfig, data, str(p))
