"""Target sets: parsing, loading, caching, clear errors, and the built-in target's independence."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.data import Corpus
from mixlab.data.targets import (
    TargetSpec,
    builtin_target_documents,
    load_targets,
    parse_target_option,
    parse_targets,
)
from mixlab.errors import ConfigError, DataError


def test_parse_target_option_reads_path_weight_builtin_and_domain():
    s = parse_target_option("docs/a=b.txt=2.5")
    assert (s.path, s.weight, s.key) == ("docs/a=b.txt", 2.5, "target:a=b")
    assert parse_target_option("notes.txt").weight == 1.0
    assert parse_target_option("builtin:pydoc").key == "target:pydoc"
    d = parse_target_option("domain:code=3")
    assert (d.domain, d.weight, d.key) == ("code", 3.0, "code")
    with pytest.raises(ConfigError, match="positive"):
        parse_target_option("x.txt=-1")
    with pytest.raises(ConfigError, match="targets\\[1\\]"):
        parse_targets(["a.txt", {"path": "b.txt", "domain": "code"}], "run.yaml")


def test_load_targets_tokenises_with_the_corpus_tokenizer_and_caches(tiny_corpus, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Alpha beta gamma.\n\nDelta epsilon.\n", encoding="utf-8")
    ts = load_targets(tiny_corpus, [f"{text}=3", "domain:code"], cache_dir=tmp_path / "cache")
    assert ts.keys == ["target:notes", "code"]
    assert ts.weights == pytest.approx({"target:notes": 0.75, "code": 0.25})
    toks = ts.eval_sources()["target:notes"]
    expected = tiny_corpus.tokenizer.encode(text.read_text(encoding="utf-8")) + [tiny_corpus.eos_id]
    assert toks.tolist() == expected
    cached = list((tmp_path / "cache").glob("notes-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).tolist() == expected
    # the weighted target loss is sum_j c_j L_j over the set's keys
    assert ts.weighted_loss({"target:notes": 2.0, "code": 4.0, "english": 9.0}) == pytest.approx(2.5)
    # a changed file is tokenised again (the cache is keyed by content)
    text.write_text("Something else entirely.", encoding="utf-8")
    again = load_targets(tiny_corpus, [str(text)], cache_dir=tmp_path / "cache")
    assert again.eval_sources()["target:notes"].tolist()[:9] == list(b"Something")


def test_load_targets_reads_jsonl_directories(tiny_corpus, tmp_path):
    d = tmp_path / "evals"
    d.mkdir()
    (d / "a.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8")
    ts = load_targets(tiny_corpus, [TargetSpec(path=str(d), name="qa")], cache_dir=tmp_path / "c")
    assert ts.keys == ["target:qa"]
    assert bytes(ts.eval_sources()["target:qa"][:3].tolist()) == b"one"


@pytest.mark.parametrize("kind", ["missing", "empty", "blank", "binary"])
def test_bad_target_files_give_a_clear_error_naming_the_file(tiny_corpus, tmp_path, kind):
    path = tmp_path / f"{kind}.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank":
        path.write_text("\n  \n", encoding="utf-8")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError) as err:
        load_targets(tiny_corpus, [str(path)], cache_dir=tmp_path / "c")
    assert str(path) in str(err.value)
    assert {"missing": "does not exist", "empty": "empty", "blank": "no text", "binary": "binary"}[kind] in str(
        err.value
    )


def test_unknown_domain_and_duplicate_targets_are_config_errors(tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="not a training domain"):
        load_targets(tiny_corpus, ["domain:poetry"])
    with pytest.raises(ConfigError, match="twice"):
        load_targets(tiny_corpus, ["domain:code", "domain:code=2"])
    with pytest.raises(ConfigError, match="built-in target"):
        load_targets(tiny_corpus, ["builtin:nope"], cache_dir=tmp_path)


def test_builtin_target_is_in_no_training_domain(builtin_dir, tmp_path):
    """The built-in target's text must not be trained on. ``pydoc_data/topics.py`` is itself a stdlib
    source file that holds this text as string literals (one per line), so the probes are 48-character
    pieces of single lines without quotes or backslashes, which a literal keeps verbatim: with the
    ``pydoc_data`` package in the code domain (corpus version 1) 58 of these 60 probes were found."""
    corpus = Corpus.open(builtin_dir)
    ts = load_targets(corpus, ["builtin:pydoc"], cache_dir=tmp_path)
    assert len(ts.eval_sources()["target:pydoc"]) > 300_000  # the topics text is ~460 KB
    lines = [
        ln.strip()
        for doc in builtin_target_documents("pydoc")
        for ln in doc.splitlines()
        if len(ln.strip()) >= 48 and not set(ln) & set("\"'\\")
    ]
    rng = np.random.default_rng(0)
    probes = [lines[i][:48].encode("utf-8") for i in rng.choice(len(lines), size=60, replace=False)]
    for d in corpus.domains:
        for split in ("train", "val"):
            data = bytes(np.asarray(corpus.tokens(d, split)).astype(np.uint8))
            hits = [p for p in probes if p in data]
            assert not hits, f"built-in target text found in {d}/{split}: {hits[:2]}"


def test_a_saved_hf_dataset_is_a_target_reading_its_validation_split(tiny_corpus, tmp_path):
    datasets = pytest.importorskip("datasets")
    plain = tmp_path / "plain"
    datasets.Dataset.from_dict({"text": ["Alpha beta.", "", "Gamma delta."]}).save_to_disk(str(plain))
    split = tmp_path / "split"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["never read"]}),
         "validation": datasets.Dataset.from_dict({"text": ["Held out text."]})}
    ).save_to_disk(str(split))  # fmt: skip
    ts = load_targets(tiny_corpus, [str(plain), str(split)], cache_dir=tmp_path / "cache")
    enc, eos = tiny_corpus.tokenizer.encode, tiny_corpus.eos_id
    assert ts.eval_sources()["target:plain"].tolist() == enc("Alpha beta.") + [eos] + enc("Gamma delta.") + [eos]
    assert ts.eval_sources()["target:split"].tolist() == enc("Held out text.") + [eos]
    with pytest.raises(DataError, match="'body'"):
        load_targets(tiny_corpus, [{"path": str(plain), "text_field": "body"}], cache_dir=tmp_path / "cache2")
