"""Corpora as they are stored: gzip JSON lines, a domain taken from a field, datasets on disk,
pre-tokenized OLMo and Megatron files, a per-domain token cap, and a clear error for each bad layout."""

from __future__ import annotations

import gzip
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mixlab import ConfigError, DataError
from mixlab.cli.main import build_app
from mixlab.data import Corpus, prepare_corpus
from mixlab.data.config import load_corpus_config
from mixlab.data.sources import iter_file, iter_token_documents, resolve_files

SOURCES = {"wiki": 40, "c4": 60, "arxiv": 25}


def _doc(source: str, i: int) -> str:
    rng = random.Random(f"{source}{i}")
    return f"{source} document {i}: " + " ".join(
        rng.choice(["alpha", "beta", "gamma"]) for _ in range(rng.randint(5, 40))
    )


def _dolma_dir(root: Path) -> Path:
    """Dolma's layout: mixed *.json.gz shards, each record naming its ``source``."""
    out = root / "dolma"
    out.mkdir()
    rows = [(s, i) for s, n in SOURCES.items() for i in range(n)]
    random.Random(0).shuffle(rows)
    for k in range(3):
        with gzip.open(out / f"part-{k:04d}.json.gz", "wt", encoding="utf-8") as fh:
            for s, i in rows[k::3]:
                fh.write(
                    json.dumps({"id": f"{s}-{i}", "text": _doc(s, i), "source": s, "added": "2024"}) + "\n"
                )
    return out


def _run(*args: object) -> str:
    res = CliRunner().invoke(build_app(), [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def test_dolma_json_gz_to_olmo_core_mixture_without_python(tmp_path) -> None:
    _dolma_dir(tmp_path)
    (tmp_path / "corpus.yaml").write_text(
        yaml.safe_dump(
            {
                "output_dir": "corpus",
                "val_fraction": 0.1,
                "mixed": [{"path": "dolma/*.json.gz", "domain_field": "source"}],
            }
        )
    )
    _run("prepare", "--config", tmp_path / "corpus.yaml")
    corpus = Corpus.open(tmp_path / "corpus")
    assert sorted(corpus.domains) == sorted(SOURCES)
    for s, n in SOURCES.items():
        info = corpus.domain_info(s)
        assert info["train"]["docs"] + info["val"]["docs"] == n
        assert all(d.startswith(f"{s} document") for d in corpus.documents(s, limit=5))
    _run("entropy", tmp_path / "corpus", "--seq-len", 32, "--out", tmp_path / "mix.yaml")
    out = tmp_path / "olmo.yaml"
    _run(
        "export", tmp_path / "mix.yaml", "--format", "olmo", "--corpus", tmp_path / "corpus",
        "--global-batch-tokens", 256, "--tokens", 4096, "--max-epochs", 4, "--out", out,
    )  # fmt: skip
    doc = yaml.safe_load(out.read_text())
    assert {s["source_name"] for s in doc["source_list"]["sources"]} == set(SOURCES)
    assert all(Path(s["paths"][0]).is_file() for s in doc["source_list"]["sources"])
    olmo = pytest.importorskip("olmo_core.data.source_mixture")
    cfg = olmo.SourceMixtureDatasetConfig.from_yaml(out)
    cfg.render_tables = False
    built = cfg.build(npdtype=np.dtype(corpus.dtype).type, sequence_length=16)
    assert {s.name for s in built.sources} == set(SOURCES)


def test_nested_domain_field_with_a_name_map_in_jsonl_zst_and_parquet(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    rows = [
        {"text": _doc(s, i), "meta": {"redpajama_set_name": f"RedPajama{s.title()}"}}
        for s, n in SOURCES.items()
        for i in range(n)
    ]
    with open(tmp_path / "slim.jsonl.zst", "wb") as fh:
        fh.write(zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "slim.parquet")
    for src in ("slim.jsonl.zst", "slim.parquet"):
        cfg = {
            "output_dir": f"out-{src}",
            "val_fraction": 0.0,
            "mixed": [
                {
                    "path": src,
                    "domain_field": "meta.redpajama_set_name",
                    "domains": {"RedPajamaWiki": "wikipedia", "RedPajamaArxiv": "arxiv"},
                }
            ],
        }
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        corpus = prepare_corpus(tmp_path / "c.yaml").corpus
        assert sorted(corpus.domains) == ["arxiv", "wikipedia"]  # C4 records are not selected
        assert corpus.domain_info("wikipedia")["train"]["docs"] == SOURCES["wiki"]
        assert corpus.documents("arxiv", limit=1)[0].startswith("arxiv document")


def test_per_domain_token_cap(tmp_path) -> None:
    _dolma_dir(tmp_path)
    cfg = {
        "output_dir": "capped",
        "val_fraction": 0.0,
        "mixed": [{"path": "dolma", "domain_field": "source", "max_tokens": 500}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    corpus = prepare_corpus(tmp_path / "c.yaml").corpus
    for s in SOURCES:
        docs = corpus.documents(s)
        n = corpus.token_counts()[s]
        assert 500 <= n < 500 + max(len(d.encode()) + 1 for d in docs)  # whole documents, stops at the cap


def test_datasets_on_disk_arrow_and_local_load_dataset(tmp_path, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    texts = [_doc("wiki", i) for i in range(30)]
    ds = datasets.Dataset.from_dict({"text": texts, "meta": [{"lang": "en"}] * 30})
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(3))}).save_to_disk(str(tmp_path / "dd"))
    (tmp_path / "local").mkdir()
    with open(tmp_path / "local" / "data.jsonl", "w") as fh:
        for t in texts:
            fh.write(json.dumps({"text": t}) + "\n")
    arrow = sorted((tmp_path / "saved").glob("*.arrow"))
    assert arrow
    cfg = {
        "output_dir": "out",
        "val_fraction": 0.0,
        "domains": {
            "saved": {"path": "saved"},  # a save_to_disk directory, found by its dataset_info.json
            "dict_val": {"path": "dd", "hf_split": "validation"},
            "arrow": {"path": str(arrow[0])},
            "local": {"path": "local", "format": "hf-local"},
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    corpus = prepare_corpus(tmp_path / "c.yaml").corpus
    assert corpus.documents("saved") == texts
    assert corpus.documents("arrow") == texts
    assert corpus.documents("local") == texts
    assert corpus.documents("dict_val") == texts[:3]
    bad = {**cfg, "domains": {"x": {"path": "dd", "hf_split": "test"}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(DataError, match="no split 'test'"):
        prepare_corpus(tmp_path / "bad.yaml")
    bad = {**cfg, "domains": {"x": {"path": "nowhere", "format": "hf-local"}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(
        DataError, match="not in the local Hugging Face datasets cache; mixlab never downloads"
    ):
        prepare_corpus(tmp_path / "bad.yaml")


def test_olmo_npy_token_memmap_is_imported_without_retokenising(tmp_path) -> None:
    texts = [_doc("c4", i) for i in range(20)]
    eos = 256  # the byte tokenizer's EOS
    ids = np.concatenate([np.append(np.frombuffer(t.encode(), np.uint8), eos) for t in texts]).astype(
        np.uint32
    )
    ids[:-1].tofile(tmp_path / "part-0.npy")  # OLMo writes raw ids; the last document lacks its EOS here
    cfg = {
        "output_dir": "out",
        "val_fraction": 0.0,
        "domains": {"c4": {"path": "*.npy", "format": "olmo-npy", "token_dtype": "uint32"}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    corpus = prepare_corpus(tmp_path / "c.yaml").corpus
    assert corpus.documents("c4") == texts
    assert np.array_equal(np.asarray(corpus.train_tokens("c4")), ids)
    (tmp_path / "odd.npy").write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="whole number of uint32"):
        list(iter_token_documents(tmp_path / "odd.npy", fmt="olmo-npy", eos_id=eos, dtype="uint32"))
    with pytest.raises(ConfigError, match="token_dtype"):
        (tmp_path / "c2.yaml").write_text(
            yaml.safe_dump({**cfg, "domains": {"c4": {"path": "*.npy", "format": "olmo-npy"}}})
        )
        load_corpus_config(tmp_path / "c2.yaml")


def test_megatron_bin_idx_written_by_megatron_core(tmp_path) -> None:
    pytest.importorskip("megatron.core.datasets.indexed_dataset")
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    texts = [_doc("arxiv", i) for i in range(15)]
    b = IndexedDatasetBuilder(str(tmp_path / "arxiv_text_document.bin"), dtype=np.uint16)
    for t in texts:  # Megatron's preprocess_data appends EOD to each document
        b.add_document(torch.tensor(list(t.encode()) + [256], dtype=torch.int64), [len(t.encode()) + 1])
    b.finalize(str(tmp_path / "arxiv_text_document.idx"))
    cfg = {
        "output_dir": "out",
        "val_fraction": 0.0,
        "domains": {"arxiv": {"path": "arxiv_text_document", "format": "megatron"}},  # the data prefix
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert prepare_corpus(tmp_path / "c.yaml").corpus.documents("arxiv") == texts
    # a .bin whose index describes another file is refused
    (tmp_path / "other.bin").write_bytes(b"\x00" * 6)
    (tmp_path / "other.idx").write_bytes((tmp_path / "arxiv_text_document.idx").read_bytes())
    with pytest.raises(DataError, match="do not belong together"):
        list(iter_token_documents(tmp_path / "other.bin", fmt="megatron", eos_id=256))


def test_unreadable_layouts_are_explained(tmp_path) -> None:
    (tmp_path / "broken.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"broken.json.gz: cannot read jsonl.gz"):
        list(iter_file(tmp_path / "broken.json.gz"))
    with gzip.open(tmp_path / "nosrc.json.gz", "wt") as fh:
        fh.write(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataError, match=r"nosrc.json.gz:1: record has no 'source' field"):
        list(iter_file(tmp_path / "nosrc.json.gz", domain_field="source", domain_value="wiki"))
    (tmp_path / "lonely.idx").write_bytes(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 8, 0, 0))
    with pytest.raises(DataError, match="without its data file"):
        resolve_files(str(tmp_path / "lonely.idx"))
    (tmp_path / "fake.bin").write_bytes(b"")
    (tmp_path / "fake.idx").write_bytes(b"NOTANIDX" + b"\x00" * 30)
    with pytest.raises(DataError, match="not a Megatron .idx"):
        list(iter_token_documents(tmp_path / "fake.bin", fmt="megatron", eos_id=0))
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"output_dir": "o", "mixed": [{"path": "nosrc.json.gz", "domain_field": "meta.set"}]})
    )
    with pytest.raises(ConfigError, match="no 'meta.set' field"):
        load_corpus_config(tmp_path / "c.yaml")
    with gzip.open(tmp_path / "weird.json.gz", "wt") as fh:
        fh.write(json.dumps({"text": "x", "source": "a/b c"}) + "\n")
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"output_dir": "o", "mixed": [{"path": "weird.json.gz", "domain_field": "source"}]})
    )
    with pytest.raises(ConfigError, match="not a valid domain name; map it"):
        load_corpus_config(tmp_path / "c.yaml")
