"""A prepared corpus on disk: per-domain packed token shards, a manifest and the tokenizer.

Layout of a corpus directory (written by :func:`mixlab.data.prepare.prepare_corpus`)::

    manifest.json                 token counts, source hashes, tokenizer, provenance/licence
    tokenizer.json                only for Hugging Face / trained BPE tokenizers
    domains/<name>/train.bin      the domain's training documents, tokenized and joined with EOS
    domains/<name>/train.idx.npy  int64 document start offsets into train.bin (plus the end)
    domains/<name>/val.bin        held-out documents, same format
    domains/<name>/val.idx.npy

``.bin`` files are raw little-endian ``uint16`` (vocab <= 65536) or ``uint32`` arrays read through
``numpy.memmap``, so opening a corpus costs nothing and many processes share the page cache.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mixlab.data.tokenizers import ByteTokenizer, Tokenizer, tokenizer_from_spec
from mixlab.errors import DataError
from mixlab.utils.io import file_sha256, read_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
DOMAIN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


_ID_CHECK_CHUNK = 1 << 24


def _check_manifest(manifest: dict[str, Any], mpath: Path) -> None:
    """The fields of the manifest that become paths, dtypes and sizes, checked before any is used: a
    domain name from the file must stay a plain folder name (no ``..``, no ``/``)."""
    try:
        np.dtype(manifest["dtype"])
        vocab = int(manifest["tokenizer"]["vocab_size"])
        int(manifest["tokenizer"]["eos_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{mpath}: damaged manifest (dtype/tokenizer: {exc!r}); re-run `mixlab prepare`") from None
    if vocab < 1:
        raise DataError(f"{mpath}: damaged manifest (tokenizer.vocab_size {vocab}); re-run `mixlab prepare`")
    for name, info in manifest["domains"].items():
        if not isinstance(name, str) or not DOMAIN_NAME_RE.match(name):
            raise DataError(
                f"{mpath}: invalid domain name {name!r} (letters, digits, '_', '.', '-'; no '/' or '..'); "
                "re-run `mixlab prepare`"
            )
        for split in SPLITS:
            rec = info.get(split) if isinstance(info, dict) else None
            if not isinstance(rec, dict) or not isinstance(rec.get("tokens"), int) or rec["tokens"] < 0:
                raise DataError(f"{mpath}: domains.{name}.{split}.tokens is missing or invalid; re-run `mixlab prepare`")


def shard_paths(root: Path, domain: str, split: str) -> tuple[Path, Path]:
    d = root / "domains" / domain
    return d / f"{split}.bin", d / f"{split}.idx.npy"


class Corpus:
    """Read access to a prepared corpus; open with :meth:`Corpus.open`.

    ``domains`` keeps the manifest's order, which is the order domain ids (``Batch.domain_ids``)
    refer to.
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self.domains: list[str] = list(manifest["domains"])
        self._mm: dict[tuple[str, str], np.memmap] = {}

    def __getstate__(self) -> dict[str, Any]:
        # memmaps would pickle as full in-memory copies; workers reopen them lazily instead
        return {"root": self.root, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["manifest"])  # type: ignore[misc]

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = False) -> Corpus:
        """Open the corpus in ``path`` and check every shard against the manifest.

        Always checked, cheaply (file sizes, the index files' headers and ends, one pass of ``max`` over
        the tokens: about 20 ms for the 14M-token built-in corpus): domain names, shard sizes, that each
        document index has one offset per document plus the end and ends at the shard's length, and
        that every token id is below the vocabulary size, so a truncated, padded or overwritten file is
        reported with its path instead of failing deep inside training (or training silently on
        garbage). With ``verify=True`` the shards' SHA-256 are also compared with those recorded at
        prepare time.
        """
        root = Path(path)
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise DataError(
                f"{root}: no {MANIFEST} here, so it is not a prepared corpus; run `mixlab prepare --config "
                "corpus.yaml` (or `mixlab corpus builtin`) first"
            )
        manifest = read_json(mpath)
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{mpath}: unsupported manifest format; re-run `mixlab prepare` to rebuild it")
        if not manifest.get("domains") or not isinstance(manifest["domains"], dict):
            raise DataError(f"{mpath}: the corpus has no domains")
        _check_manifest(manifest, mpath)
        corpus = cls(root, manifest)
        corpus._check_shards(verify=verify)
        return corpus

    def _check_shards(self, *, verify: bool) -> None:
        itemsize = np.dtype(self.manifest["dtype"]).itemsize
        for name, info in self.manifest["domains"].items():
            for split in SPLITS:
                bin_path, idx_path = shard_paths(self.root, name, split)
                rec = info[split]
                if not bin_path.is_file() or not idx_path.is_file():
                    raise DataError(
                        f"{bin_path}: shard missing; re-run `mixlab prepare` to rebuild domain {name!r}"
                    )
                expected = rec["tokens"] * itemsize
                if bin_path.stat().st_size != expected:
                    raise DataError(
                        f"{bin_path}: corrupt shard ({bin_path.stat().st_size} bytes, the manifest says "
                        f"{rec['tokens']} tokens = {expected} bytes); re-run `mixlab prepare` to rebuild it"
                    )
                self._check_index(idx_path, int(rec["tokens"]), rec.get("docs"))
                if verify and file_sha256(bin_path) != rec["sha256"]:
                    raise DataError(f"{bin_path}: corrupt shard (checksum mismatch); re-run `mixlab prepare`")
                self._check_ids(name, split, bin_path)

    @staticmethod
    def _check_index(idx_path: Path, tokens: int, docs: Any) -> None:
        """The document index's header, length and last offset (read through a memmap: no data copied)."""
        try:
            idx = np.load(idx_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{idx_path}: corrupt document index ({exc}); re-run `mixlab prepare`") from None
        n_docs = None if docs is None else int(docs)
        if (
            idx.ndim != 1
            or idx.dtype.kind not in "iu"
            or len(idx) < 1
            or (n_docs is not None and len(idx) != n_docs + 1)
            or int(idx[0]) != 0
            or int(idx[-1]) != tokens
        ):
            raise DataError(
                f"{idx_path}: corrupt document index (expected {'' if n_docs is None else n_docs + 1} int64 "
                f"offsets from 0 to {tokens}, found {len(idx) if idx.ndim == 1 else idx.shape} of {idx.dtype}); "
                "re-run `mixlab prepare` to rebuild it"
            )

    def _check_ids(self, domain: str, split: str, path: Path) -> None:
        """Every token id of the shard is below the vocabulary size (a corrupt shard would otherwise
        index past the embedding table, or train silently on wrong ids)."""
        arr = self.tokens(domain, split)
        vocab = self.vocab_size
        for start in range(0, len(arr), _ID_CHECK_CHUNK):
            top = int(arr[start : start + _ID_CHECK_CHUNK].max())
            if top >= vocab:
                raise DataError(
                    f"{path}: corrupt shard (token id {top} near token {start} is outside the vocabulary of "
                    f"{vocab}); re-run `mixlab prepare` to rebuild domain {domain!r}"
                )

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return tokenizer_from_spec(self.manifest["tokenizer"], self.root)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self.manifest["tokenizer"]["eos_id"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["dtype"])

    def _check_domain(self, domain: str) -> None:
        if domain not in self.manifest["domains"]:
            raise DataError(f"unknown domain {domain!r}; the corpus at {self.root} has {self.domains}")

    def tokens(self, domain: str, split: str = "train") -> np.ndarray:
        """The domain's packed token stream for ``split`` as a read-only 1-D memmap."""
        self._check_domain(domain)
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
        key = (domain, split)
        if key not in self._mm:
            path, _ = shard_paths(self.root, domain, split)
            n = int(self.manifest["domains"][domain][split]["tokens"])
            if n == 0:
                self._mm[key] = np.zeros(0, dtype=self.dtype)  # np.memmap refuses empty files
            else:
                self._mm[key] = np.memmap(path, dtype=self.dtype, mode="r", shape=(n,))
        return self._mm[key]

    def train_tokens(self, domain: str) -> np.ndarray:
        return self.tokens(domain, "train")

    def val_tokens(self, domain: str) -> np.ndarray:
        return self.tokens(domain, "val")

    def doc_offsets(self, domain: str, split: str = "train") -> np.ndarray:
        """int64 start offset of every document in the packed stream, followed by the stream length."""
        self._check_domain(domain)
        _, idx = shard_paths(self.root, domain, split)
        try:
            return np.load(idx, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{idx}: corrupt document index ({exc}); re-run `mixlab prepare`") from None

    def documents(self, domain: str, split: str = "train", limit: int | None = None) -> list[str]:
        """Decode the documents of a domain (the first ``limit`` of them), for inspection and tests."""
        toks = self.tokens(domain, split)
        off = self.doc_offsets(domain, split)
        if limit is not None:
            off = off[: limit + 1]
        tok, eos = self.tokenizer, self.eos_id
        out = []
        for a, b in zip(off[:-1].tolist(), off[1:].tolist(), strict=True):
            ids = np.asarray(toks[a:b])
            if len(ids) and ids[-1] == eos:  # the separator, not part of the text
                ids = ids[:-1]
            out.append(tok.decode(ids if isinstance(tok, ByteTokenizer) else ids.tolist()))
        return out

    def token_counts(self, split: str = "train") -> dict[str, int]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
        return {d: int(self.manifest["domains"][d][split]["tokens"]) for d in self.domains}

    def domain_info(self, domain: str) -> dict[str, Any]:
        self._check_domain(domain)
        return self.manifest["domains"][domain]

    def __repr__(self) -> str:
        return f"Corpus({str(self.root)!r}, domains={self.domains})"
