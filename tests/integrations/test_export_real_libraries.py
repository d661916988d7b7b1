"""mixlab's exports loaded by the real libraries and drawn from, over domains of unequal document length.

Each test builds the library's own object from mixlab's output (written by ``mixlab export``) and
measures the token shares that the library's loader or mixture builder actually produces. A library
that is not installed skips its test (``pytest.importorskip``); ``datasets`` and ``megatron-core``
install with the ``test`` extra on CPU.

Tolerances: the HF draws are random (about 23k documents), so the measured token share is compared
with the mixture at 0.03 absolute (about 3 standard deviations for the long-document domain). Megatron
and OLMo-core apportion sequences deterministically, so their shares match within rounding (1e-3, 2e-3).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from snippets import exec_snippet  # noqa: E402

from mixlab import Mixture, save_mixture  # noqa: E402
from mixlab.cli.main import build_app  # noqa: E402
from mixlab.data import prepare_domains  # noqa: E402

MIX = Mixture({"web": 0.5, "code": 0.3, "books": 0.2})
# (documents, mean characters): code documents are short, books long, so document shares != token shares
SHAPE = {"web": (300, 200), "code": (600, 40), "books": (400, 1200)}


def _docs(domain: str) -> list[str]:
    n, mean = SHAPE[domain]
    rng = random.Random(domain)
    return [
        "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(mean // 2, 3 * mean // 2)))
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def jsonl_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jsonl")
    out = {}
    for d in SHAPE:
        (root / d).mkdir()
        with open(root / d / "part-0.jsonl", "w") as fh:
            for text in _docs(d):
                fh.write(json.dumps({"text": text, "domain": d}) + "\n")
        out[d] = root / d
    return out


@pytest.fixture(scope="module")
def corpus(jsonl_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    prepare_domains(out, {d: str(p) for d, p in jsonl_dirs.items()}, val_fraction=0.0)
    return out


def _export(tmp_path: Path, mix: Mixture, *args: str) -> str:
    src = tmp_path / "mix.yaml"
    save_mixture(mix, src)
    res = CliRunner().invoke(build_app(), ["export", str(src), *args])
    assert res.exit_code == 0, res.output
    return res.output


def _byte_tokens(text: str) -> int:
    return len(text.encode("utf-8")) + 1  # the byte tokenizer: UTF-8 bytes + EOS, as in the corpus


def _shares(counts: dict[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {d: v / total for d, v in counts.items()}


def _drawn_token_shares(rows) -> dict[str, float]:
    """Token share of each domain among the documents a loader yields (rows with domain and text)."""
    tokens = dict.fromkeys(SHAPE, 0)
    for row in rows:
        tokens[row["domain"]] += _byte_tokens(row["text"])
    return _shares(tokens)


def test_hf_interleave_datasets_draws_the_token_mixture(tmp_path, jsonl_dirs, corpus, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    prefixes = [f"--prefix={d}={p}" for d, p in jsonl_dirs.items()]
    text = _export(tmp_path, MIX, "--format", "hf", "--corpus", str(corpus), *prefixes)
    ns = exec_snippet(
        text, {"interleave_datasets": datasets.interleave_datasets, "load_dataset": datasets.load_dataset}
    )
    mixed = ns["mixed"]
    assert isinstance(mixed, datasets.IterableDataset)
    got = _drawn_token_shares(mixed)
    for d, w in MIX.weights.items():
        assert got[d] == pytest.approx(w, abs=0.03), (d, got)
    # the same draw with the token shares used as probabilities (the old export) misses the mixture
    naive = datasets.interleave_datasets(
        [datasets.load_dataset(str(p), split="train", streaming=True) for p in jsonl_dirs.values()],
        probabilities=[MIX[d] for d in jsonl_dirs],
        seed=0,
        stopping_strategy="all_exhausted",
    )
    assert abs(_drawn_token_shares(naive)["books"] - MIX["books"]) > 0.2


def test_hf_max_epochs_stops_at_the_cap(tmp_path, jsonl_dirs, corpus, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    prefixes = [f"--prefix={d}={p}" for d, p in jsonl_dirs.items()]
    text = _export(tmp_path, MIX, "--format", "hf", "--corpus", str(corpus), "--max-epochs", "1.5", *prefixes)
    ns = exec_snippet(
        text, {"interleave_datasets": datasets.interleave_datasets, "load_dataset": datasets.load_dataset}
    )
    drawn = dict.fromkeys(SHAPE, 0)
    for row in ns["mixed"]:
        drawn[row["domain"]] += 1
    # no domain is read beyond 1.5 passes, and the one that reaches its cap ends the mixture
    assert all(drawn[d] <= 1.5 * SHAPE[d][0] for d in SHAPE)
    assert max(drawn[d] / (1.5 * SHAPE[d][0]) for d in SHAPE) == pytest.approx(1.0, abs=0.01)


def test_megatron_blend_and_per_split_json_in_megatron_core(tmp_path) -> None:
    pytest.importorskip("megatron.core.datasets.blended_megatron_dataset_builder")
    import torch
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from megatron.core.datasets.utils import get_blend_from_list

    rng = np.random.default_rng(0)
    for d, (n, mean) in SHAPE.items():
        for split in ("train", "valid", "test"):
            b = IndexedDatasetBuilder(str(tmp_path / f"{d}_{split}.bin"), dtype=np.uint16)
            for _ in range(n // 4):
                b.add_document(
                    torch.from_numpy(rng.integers(1, 250, size=int(rng.integers(mean // 2, 3 * mean // 2)))),
                    [1],
                )
            b.finalize(str(tmp_path / f"{d}_{split}.idx"))
    prefixes = [f"--prefix={d}={tmp_path / d}" for d in SHAPE]
    out = tmp_path / "blend.json"
    _export(tmp_path, MIX, "--format", "megatron-json", "--out", str(out), *prefixes)
    # what Megatron-LM does with --per-split-data-args-path
    args = json.loads(out.read_text())
    blend_per_split = [get_blend_from_list(args[s]) for s in ("train", "valid", "test")]
    flat = _export(tmp_path, MIX, "--format", "megatron", *prefixes)
    data_path = next(ln for ln in flat.splitlines() if ln.startswith("--data-path")).split()[1:]
    assert get_blend_from_list([a.replace("_train", "") for a in args["train"]]) == get_blend_from_list(
        data_path
    )

    class Tok:  # the fields GPTDataset reads from a MegatronTokenizer
        eod, pad, vocab_size, unique_identifiers = 0, 0, 256, {"class": "byte"}

    cfg = GPTDatasetConfig(
        random_seed=0,
        sequence_length=64,
        blend_per_split=blend_per_split,
        tokenizer=Tok(),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        path_to_cache=None,
    )
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [3000, 10, 10], lambda: True, cfg).build()
    # every sample is sequence_length + 1 tokens, so the share of samples is the share of tokens
    names = [Path(p).name.removesuffix("_train") for p in blend_per_split[0][0]]
    counts = np.bincount(np.asarray(train.dataset_index), minlength=len(names))
    got = dict(zip(names, (counts / counts.sum()).tolist(), strict=True))
    assert {int(train[i]["tokens"].numel()) for i in range(0, 3000, 500)} == {64}
    for d, w in MIX.weights.items():
        assert got[d] == pytest.approx(w, abs=1e-3)


def test_olmo_core_loads_and_builds_the_source_mixture(tmp_path, corpus) -> None:
    pytest.importorskip("olmo_core.data.source_mixture")
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    out = tmp_path / "olmo.yaml"
    _export(
        tmp_path,
        MIX,
        "--format", "olmo", "--corpus", str(corpus), "--global-batch-tokens", "512",
        "--tokens", "40000", "--max-epochs", "3", "--out", str(out),
    )  # fmt: skip
    assert "# the token files hold uint16 ids" in out.read_text()
    cfg = SourceMixtureDatasetConfig.from_yaml(out)
    assert isinstance(cfg, SourceMixtureDatasetConfig)
    assert {s.source_name: s.max_repetition_ratio for s in cfg.source_list.sources} == dict.fromkeys(
        SHAPE, 3.0
    )
    cfg.render_tables = False
    built = cfg.build(npdtype=np.uint16, sequence_length=64)
    tokens = {s.name: sum(p.tokens for p in s.path_tokens) for s in built.sources}
    got = _shares(tokens)
    for d, w in MIX.weights.items():
        assert got[d] == pytest.approx(w, abs=2e-3)
    assert sum(tokens.values()) >= 40000
    # without the repetition allowance the small books domain cannot supply its share: OLMo-core refuses
    doc = yaml.safe_load(out.read_text())
    for s in doc["source_list"]["sources"]:
        s["max_repetition_ratio"] = 1.0
    doc["requested_tokens"] = 1_000_000
    with pytest.raises(Exception, match="Insufficient tokens"):
        SourceMixtureDatasetConfig.from_dict(doc).build(npdtype=np.uint16, sequence_length=64)


def test_mosaic_streaming_draws_the_token_mixture(tmp_path, jsonl_dirs, corpus) -> None:
    streaming = pytest.importorskip("streaming")
    for d in SHAPE:
        with streaming.MDSWriter(
            out=str(tmp_path / "mds" / d / "train"), columns={"text": "str", "domain": "str"}
        ) as w:
            for text in _docs(d):
                w.write({"text": text, "domain": d})
    prefixes = [f"--prefix={d}={tmp_path / 'mds' / d}" for d in SHAPE]
    text = _export(
        tmp_path, MIX, "--format", "mosaic", "--corpus", str(corpus), "--split", "train", *prefixes
    )
    ns = exec_snippet(text, {"Stream": streaming.Stream})
    ds = streaming.StreamingDataset(
        streams=ns["streams"], epoch_size=20000, shuffle=True, shuffle_seed=0, batch_size=1
    )
    got = _drawn_token_shares(ds)
    for d, w in MIX.weights.items():
        assert got[d] == pytest.approx(w, abs=0.03), (d, got)


def test_nemo_blends_parse_with_megatron_core(tmp_path) -> None:
    """NeMo (1.x ``data_prefix``, 2 ``PreTrainingDataModule(paths=...)``) hands its lists to Megatron-core's
    ``get_blend_from_list``; NeMo itself is not installed here, so the blend is checked at that hand-off."""
    pytest.importorskip("megatron.core.datasets.utils")
    from megatron.core.datasets.utils import get_blend_from_list

    prefixes = [f"--prefix={d}=/data/{d}" for d in SHAPE]
    doc = yaml.safe_load(_export(tmp_path, MIX, "--format", "nemo", *prefixes))
    paths = exec_snippet(_export(tmp_path, MIX, "--format", "nemo2", *prefixes), {})["paths"]
    for blend in (doc["model"]["data"]["data_prefix"], paths):
        for split, suffix in (("train", "train"), ("validation", "valid"), ("test", "test")):
            names, weights = get_blend_from_list([str(x) for x in blend[split]])
            got = dict(zip(names, np.asarray(weights) / np.sum(weights), strict=True))
            assert got == pytest.approx({f"/data/{d}_{suffix}": w for d, w in MIX.weights.items()})
