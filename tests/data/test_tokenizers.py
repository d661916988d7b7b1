"""Hugging Face tokenizer.json support and small BPE training."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.data import (
    CorpusConfig,
    DomainConfig,
    HFTokenizer,
    MixtureSampler,
    TokenizerConfig,
    prepare_corpus,
    prepare_domains,
    train_bpe,
)
from mixlab.data.tokenizers import token_dtype
from mixlab.errors import ConfigError, DataError

TEXTS = [f"the quick brown fox {i} jumps over the lazy dog; def f(x): return x + {i}" for i in range(200)]


@pytest.fixture(scope="module")
def bpe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(TEXTS, path, vocab_size=400)
    return path


def test_trained_bpe_round_trips_and_compresses(bpe_file):
    tok = HFTokenizer(bpe_file)
    assert tok.eos_token == "<|endoftext|>" and 300 <= tok.vocab_size <= 400
    text = "the lazy dog jumps; def g(y): return y + 7 — ünïcödé"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode())  # merges were learnt


def test_hf_tokenizer_corpus(tmp_path, bpe_file):
    corpus = prepare_domains(tmp_path / "c", {"a": TEXTS[:100], "b": TEXTS[100:]}, tokenizer=str(bpe_file))
    assert (
        corpus.manifest["tokenizer"]["type"] == "hf" and corpus.vocab_size == HFTokenizer(bpe_file).vocab_size
    )
    assert (tmp_path / "c" / "tokenizer.json").is_file()
    docs = corpus.documents("a") + corpus.documents("a", "val")
    assert sorted(docs) == sorted(TEXTS[:100])
    s = MixtureSampler(corpus, {"a": 0.5, "b": 0.5}, seq_len=16, batch_size=4)
    assert int(s.next_batch().input_ids.max()) < corpus.vocab_size


def test_bpe_trained_during_prepare_and_reused(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n".join(TEXTS))
    cfg = CorpusConfig(
        output_dir=tmp_path / "out",
        domains={"a": DomainConfig(path=str(tmp_path / "a.txt"), split="blank_line")},
        tokenizer=TokenizerConfig(type="bpe", vocab_size=350),
    )
    first = prepare_corpus(cfg)
    assert first.built == ["a"] and first.corpus.manifest["tokenizer"]["bpe_vocab_size"] == 350
    tok_bytes = (tmp_path / "out" / "tokenizer.json").read_bytes()
    second = prepare_corpus(cfg)
    assert second.built == [] and (tmp_path / "out" / "tokenizer.json").read_bytes() == tok_bytes


def test_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="tokenizer file not found"):
        HFTokenizer(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(DataError, match="not a valid Hugging Face tokenizer.json"):
        HFTokenizer(tmp_path / "junk.json")
    path = tmp_path / "t.json"
    train_bpe(TEXTS, path, vocab_size=350)
    with pytest.raises(ConfigError, match="eos_token"):
        HFTokenizer(path, eos_token="<nope>")


def test_token_dtype():
    assert (
        token_dtype(257) == np.uint16 and token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    )
