"""Tokenizers: a byte-level default, any Hugging Face ``tokenizer.json``, and optional small BPE training.

Every tokenizer exposes the same small surface that the rest of mixlab relies on:
``encode(str) -> list[int]``, ``decode(list[int]) -> str``, ``eos_id`` and ``vocab_size``, plus
``spec()`` (a JSON-able description recorded in the corpus manifest) and ``fingerprint()`` (a hash
that changes whenever the token ids a text maps to could change, used for change detection).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer as _HF
from tokenizers import decoders, models, pre_tokenizers, trainers

from mixlab.errors import ConfigError, DataError
from mixlab.utils.io import atomic_write_text

DEFAULT_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")


class Tokenizer(Protocol):
    """What the corpus and sampler need from a tokenizer."""

    eos_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def spec(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 and one end-of-document id 256 (vocab 257).

    Lossless for any text, needs no vocabulary file and no training, so it is the default for the
    built-in corpus and for tests: ``decode(encode(t)) == t`` for every string ``t``.
    """

    eos_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """Fast path used when packing shards: the ids as a uint16 array."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def decode(self, ids: Iterable[int]) -> str:
        """Bytes back to text; EOS and any id outside 0..255 are dropped, invalid UTF-8 is replaced."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).ravel()
        return arr[(arr >= 0) & (arr < 256)].astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def spec(self) -> dict[str, Any]:
        return {"type": "byte", "vocab_size": self.vocab_size, "eos_id": self.eos_id}

    def fingerprint(self) -> str:
        return "byte-v1"

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer loaded from a ``tokenizer.json`` file.

    Lets users bring GPT-NeoX/Llama-style vocabularies. Documents are separated by ``eos_token``
    (looked up in the vocabulary; by default the first of ``<|endoftext|>``, ``</s>``, ``<eos>`` ...
    that exists).
    """

    def __init__(self, path: str | Path, eos_token: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(
                f"{self.path}: tokenizer file not found; give the path of a Hugging Face tokenizer.json"
            )
        try:
            self._tok = _HF.from_file(str(self.path))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise DataError(f"{self.path}: not a valid Hugging Face tokenizer.json ({exc})") from None
        candidates = (eos_token,) if eos_token else DEFAULT_EOS_CANDIDATES
        eos = None
        for cand in candidates:
            tid = self._tok.token_to_id(cand)
            if tid is not None:
                eos, self.eos_token = tid, cand
                break
        if eos is None:
            raise ConfigError(
                f"{self.path}: tokenizer has no end-of-document token among {list(candidates)}; "
                "set tokenizer.eos_token to a token that exists in its vocabulary"
            )
        self.eos_id = int(eos)
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        self._sha = hashlib.sha256(self.path.read_bytes()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def spec(self) -> dict[str, Any]:
        return {
            "type": "hf",
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "eos_token": self.eos_token,
            "sha256": self._sha,
        }

    def fingerprint(self) -> str:
        return f"hf-{self._sha}-{self.eos_token}"

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r})"


def train_bpe(
    texts: Iterable[str],
    out_path: str | Path,
    *,
    vocab_size: int = 4096,
    eos_token: str = "<|endoftext|>",
    min_frequency: int = 2,
) -> HFTokenizer:
    """Train a small byte-level BPE (GPT-2 style pre-tokenisation) on ``texts`` and save it.

    Byte-level BPE starts from the 256 byte symbols, so every text stays encodable; merges are learnt
    greedily by pair frequency (Sennrich et al. 2016). The result is written atomically as a
    ``tokenizer.json`` that :class:`HFTokenizer` (and ``transformers``) can load.
    """

    if vocab_size < 300:
        raise ConfigError(f"tokenizer.vocab_size={vocab_size} is too small for byte-level BPE; use >= 300")
    tok = _HF(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eos_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_nonempty(texts), trainer=trainer)

    atomic_write_text(out_path, tok.to_str())
    return HFTokenizer(out_path, eos_token=eos_token)


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t:
            yield t


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits in 16 bits, else uint32 (halves the disk/memory of small vocabs)."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def tokenizer_from_spec(spec: dict[str, Any], corpus_dir: str | Path) -> Tokenizer:
    """Rebuild the tokenizer recorded in a corpus manifest (HF files live in the corpus directory)."""
    kind = spec.get("type")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "hf":
        path = Path(corpus_dir) / "tokenizer.json"
        tok = HFTokenizer(path, eos_token=spec.get("eos_token"))
        if spec.get("sha256") and tok.spec()["sha256"] != spec["sha256"]:
            raise DataError(
                f"{path}: tokenizer file changed since the corpus was prepared; re-run `mixlab prepare`"
            )
        return tok
    raise DataError(f"manifest names an unknown tokenizer type {kind!r}; allowed: 'byte', 'hf'")


def spec_json(tok: Tokenizer) -> str:
    return json.dumps(tok.spec(), sort_keys=True)
