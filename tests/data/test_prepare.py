"""prepare / Corpus: formats, round trip, manifest, idempotency, change detection, bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mixlab.data import (
    ByteTokenizer,
    Corpus,
    CorpusConfig,
    DomainConfig,
    IterableSource,
    TokenizerConfig,
    load_corpus_config,
    prepare_corpus,
    prepare_domains,
)
from mixlab.errors import ConfigError, DataError

DOCS = ["Hello, wörld! ✓", "second document\nwith two lines", "ünïcödé 日本語 🙂", "x" * 300, "last one"]


def _shard_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "domains").rglob("*")) if p.is_file()
    }


def _write_sources(d: Path) -> dict[str, DomainConfig]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    (d / "txt").mkdir()
    for i, doc in enumerate(DOCS):
        (d / "txt" / f"{i}.txt").write_text(doc, encoding="utf-8")
    with open(d / "a.jsonl", "w", encoding="utf-8") as fh:
        for doc in DOCS:
            fh.write(json.dumps({"body": doc, "id": 1}) + "\n")
    payload = "".join(json.dumps({"text": doc}) + "\n" for doc in DOCS).encode()
    (d / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    pq.write_table(pa.table({"content": DOCS}), d / "c.parquet")
    return {
        "txt": DomainConfig(path=str(d / "txt")),
        "jsonl": DomainConfig(path=str(d / "*.jsonl"), text_field="body", licence="CC0"),
        "zst": DomainConfig(path=str(d / "b.jsonl.zst")),
        "parquet": DomainConfig(path=str(d / "c.parquet"), text_field="content", provenance="test"),
    }


def test_every_format_round_trips(tmp_path):
    domains = _write_sources(tmp_path)
    cfg = CorpusConfig(output_dir=tmp_path / "out", domains=domains, val_fraction=0.2)
    res = prepare_corpus(cfg, iterables={"py": IterableSource(lambda: iter(DOCS), licence="MIT")})
    corpus = res.corpus
    assert sorted(res.built) == ["jsonl", "parquet", "py", "txt", "zst"]
    for name in corpus.domains:
        docs = corpus.documents(name, "train") + corpus.documents(name, "val")
        assert sorted(docs) == sorted(DOCS), name
        assert corpus.manifest["domains"][name]["val"]["docs"] == 1
        n = corpus.token_counts()[name] + corpus.token_counts("val")[name]
        assert n == sum(len(d.encode()) + 1 for d in DOCS)
        assert corpus.train_tokens(name).dtype == np.uint16
    m = corpus.manifest
    assert m["tokenizer"]["type"] == "byte" and m["dtype"] == "uint16"
    assert m["domains"]["jsonl"]["licence"] == "CC0" and m["domains"]["parquet"]["provenance"] == "test"
    assert m["domains"]["py"]["licence"] == "MIT"
    assert len(m["domains"]["txt"]["sources"]) == len(DOCS) and all(
        len(s["sha256"]) == 64 for s in m["domains"]["txt"]["sources"]
    )


def test_byte_tokenizer_round_trip(byte_tokenizer):
    for text in DOCS + ["", "\x00\n\t"]:
        ids = byte_tokenizer.encode(text)
        assert byte_tokenizer.decode(ids) == text
        assert all(0 <= i < 256 for i in ids)
    assert byte_tokenizer.decode(byte_tokenizer.encode("ab") + [byte_tokenizer.eos_id]) == "ab"


def test_documents_joined_with_eos(tmp_path):
    corpus = prepare_domains(tmp_path, {"d": ["ab", "cd", "ef"]}, val_fraction=0.0)
    assert corpus.train_tokens("d").tolist() == [97, 98, 256, 99, 100, 256, 101, 102, 256]
    assert corpus.doc_offsets("d").tolist() == [0, 3, 6, 9]
    assert corpus.token_counts("val") == {"d": 0}


def test_single_document_domain_is_split_by_tokens(tmp_path):
    corpus = prepare_domains(tmp_path, {"book": ["word " * 200]}, val_fraction=0.1)
    assert corpus.token_counts("val")["book"] == round(0.1 * 1001)
    joined = np.concatenate([corpus.train_tokens("book"), corpus.val_tokens("book")])
    assert ByteTokenizer().decode(joined.tolist()) == "word " * 200


def test_prepare_is_idempotent_and_detects_changes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha " * 100)
    (src / "b.txt").write_text("beta " * 100)
    cfg = CorpusConfig(
        output_dir=tmp_path / "out",
        domains={"a": DomainConfig(path=str(src / "a.txt")), "b": DomainConfig(path=str(src / "b.txt"))},
    )
    first = prepare_corpus(cfg)
    assert sorted(first.built) == ["a", "b"]
    manifest_mtime = (tmp_path / "out" / "manifest.json").stat().st_mtime_ns
    before = _shard_bytes(tmp_path / "out")
    second = prepare_corpus(cfg)
    assert second.built == [] and sorted(second.skipped) == ["a", "b"]
    assert (tmp_path / "out" / "manifest.json").stat().st_mtime_ns == manifest_mtime
    assert _shard_bytes(tmp_path / "out") == before
    # same size, new content and mtime: detected by hash
    (src / "b.txt").write_text("BETA " * 100)
    os.utime(src / "b.txt", ns=(1, 1))
    third = prepare_corpus(cfg)
    assert third.built == ["b"] and third.skipped == ["a"]
    assert third.corpus.documents("b", "train")[0].startswith("BETA")
    # a damaged shard is rebuilt on the next prepare
    (tmp_path / "out" / "domains" / "a" / "train.bin").write_bytes(b"\x00")
    assert prepare_corpus(cfg).built == ["a"]


def test_iterable_domain_idempotent(tmp_path):
    prepare_domains(tmp_path, {"gen": ["one", "two", "three"]})
    mtime = (tmp_path / "manifest.json").stat().st_mtime_ns
    res = prepare_corpus(
        CorpusConfig.model_construct(
            output_dir=tmp_path, domains={}, tokenizer=TokenizerConfig(), val_fraction=0.05, seed=0
        ),
        iterables={"gen": ["one", "two", "three"]},
    )
    assert res.built == [] and (tmp_path / "manifest.json").stat().st_mtime_ns == mtime
    res = prepare_corpus(
        CorpusConfig.model_construct(
            output_dir=tmp_path, domains={}, tokenizer=TokenizerConfig(), val_fraction=0.05, seed=0
        ),
        iterables={"gen": ["one", "two", "four"]},
    )
    assert res.built == ["gen"]


def _good_corpus(tmp_path: Path) -> tuple[Path, dict[str, bytes], bytes]:
    out = tmp_path / "out"
    prepare_domains(out, {"a": ["alpha " * 50] * 4, "b": ["beta " * 50] * 4})
    return out, _shard_bytes(out), (out / "manifest.json").read_bytes()


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"a": ["new"] * 3, "b": []}, "domain 'b' is empty"),
        ({"a": ["new"] * 3, "b": ["", ""]}, "domain 'b' is empty"),
        ({"a": ["new"] * 3, "b": "/nonexistent/file.txt"}, "does not exist"),
        ({"a": ["new"] * 3, "b": [{"txt": "no text field"}]}, "no 'text' field"),
        ({"a": ["new"] * 3, "../evil": ["x"]}, "invalid domain name"),
    ],
)
def test_bad_input_raises_and_leaves_shards_untouched(tmp_path, bad, match):
    out, shards, manifest = _good_corpus(tmp_path)
    with pytest.raises((DataError, ConfigError), match=match):
        prepare_domains(out, bad)
    assert _shard_bytes(out) == shards
    assert (out / "manifest.json").read_bytes() == manifest
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    Corpus.open(out, verify=True)


def test_corrupt_files_give_clear_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        prepare_domains(tmp_path / "o1", {"d": tmp_path / "bad.jsonl"})
    (tmp_path / "bad.jsonl.zst").write_bytes(b"definitely not zstd")
    with pytest.raises(DataError, match="bad.jsonl.zst"):
        prepare_domains(tmp_path / "o2", {"d": tmp_path / "bad.jsonl.zst"})
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(DataError, match="bad.parquet"):
        prepare_domains(tmp_path / "o3", {"d": tmp_path / "bad.parquet"})
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        prepare_domains(tmp_path / "o4", {"d": tmp_path / "latin.txt"})


def test_corrupt_or_missing_shard_detected_on_open(tmp_path):
    out, _, _ = _good_corpus(tmp_path)
    with pytest.raises(DataError, match="not a prepared corpus"):
        Corpus.open(tmp_path / "nowhere")
    shard = out / "domains" / "a" / "train.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-3])
    with pytest.raises(DataError, match=r"corrupt shard.*re-run"):
        Corpus.open(out)
    shard.write_bytes(bytes(len(data)))  # right size, wrong content
    Corpus.open(out)
    with pytest.raises(DataError, match="checksum"):
        Corpus.open(out, verify=True)
    shard.unlink()
    with pytest.raises(DataError, match="shard missing"):
        Corpus.open(out)
    with pytest.raises(DataError, match="unknown domain"):
        prepare_domains(tmp_path / "x", {"a": ["text here"]}).train_tokens("zzz")


def test_yaml_config_errors_name_file_and_field(tmp_path):
    p = tmp_path / "corpus.yaml"
    p.write_text("output_dir: out\ndomains:\n  web: {path: data, fromat: txt}\n")
    with pytest.raises(ConfigError, match=r"corpus.yaml: domains.web.fromat: unknown field"):
        load_corpus_config(p)
    p.write_text("output_dir: out\ndomains:\n  web: {path: data, format: csv}\n")
    with pytest.raises(ConfigError, match=r"corpus.yaml: domains.web.format: .*'txt'.*'parquet'"):
        load_corpus_config(p)
    p.write_text("output_dir: out\ndomains: {web: {path: d}}\nval_fraction: 2\n")
    with pytest.raises(ConfigError, match=r"corpus.yaml: val_fraction"):
        load_corpus_config(p)
    p.write_text("domains: {web: {path: d}}\n")
    with pytest.raises(ConfigError, match=r"corpus.yaml: output_dir: required"):
        load_corpus_config(p)
    p.write_text("output_dir: out\ndomains: {web: {path: d}}\ntokenizer: {type: hf}\n")
    with pytest.raises(ConfigError, match=r"tokenizer.path"):
        load_corpus_config(p)
    p.write_text("output_dir: out\ndomains: [1, 2\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_corpus_config(p)


def test_yaml_config_relative_paths(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.jsonl").write_text('{"text": "hello there"}\n{"text": "general"}\n')
    (tmp_path / "corpus.yaml").write_text("output_dir: built\ndomains:\n  x: {path: 'data/*.jsonl'}\n")
    corpus = prepare_corpus(tmp_path / "corpus.yaml").corpus
    assert corpus.root == tmp_path / "built"
    assert sorted(corpus.documents("x") + corpus.documents("x", "val")) == ["general", "hello there"]


def test_sampler_config_from_yaml(tmp_path, tiny_corpus):
    from mixlab.data import MixtureSampler, load_sampler_config

    p = tmp_path / "train.yaml"
    p.write_text("sampler:\n  seq_len: 32\n  batch_size: 2\n  max_epochs: {english: 2}\n  on_exceed: warn\n")
    cfg = load_sampler_config(p)
    s = MixtureSampler.from_config(tiny_corpus, {"english": 1.0}, cfg)
    assert s.next_batch().input_ids.shape == (2, 32)
    p.write_text("sampler:\n  seq_len: 32\n  on_exceed: ignore\n")
    with pytest.raises(ConfigError, match=r"train.yaml: on_exceed: .*'error'.*'warn'"):
        load_sampler_config(p)


def test_domain_removed_from_config_is_dropped(tmp_path):
    prepare_domains(tmp_path, {"a": ["alpha text"] * 3, "b": ["beta text"] * 3})
    assert (tmp_path / "domains" / "b").is_dir()
    c = prepare_domains(tmp_path, {"a": ["alpha text"] * 3})
    assert c.domains == ["a"] and not (tmp_path / "domains" / "b").exists()
