"""Each export format is parsed back with that stack's own conventions and compared with the mixture."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from snippets import exec_snippet  # noqa: E402

from mixlab import ConfigError, Mixture, Schedule, load_mixture_or_schedule, save_mixture
from mixlab.integrations.export import (
    EXPORT_FORMATS,
    FORMATS,
    ExportFormat,
    ExportOptions,
    export_mixture,
    export_stages,
    parse_prefixes,
    register_format,
    sample_probabilities,
    write_export_files,
)

MIX = Mixture({"web": 0.5, "code": 1 / 3, "books": 1 / 6, "empty": 0.0})
SCHED = Schedule.from_pairs([(0, MIX), (250, {"web": 0.1, "code": 0.9}), (900, {"books": 1.0})])
PREFIXES = {"web": "s3://bucket/web", "code": "/data/my code/code_text_document"}
STAGE_RE = re.compile(r"^# mixlab stage (\d+): steps (\d+)-(\d+|end)$", re.M)


def _prefix(d: str) -> str:
    return PREFIXES.get(d, d)


def _expected(mix: Mixture) -> dict[str, float]:
    return {_prefix(d): w for d, w in mix.weights.items() if w > 0}


def _assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    total = sum(got.values())
    for k, v in want.items():
        assert got[k] / total == pytest.approx(v, abs=1e-10)


def _pairs(tokens: list[str]) -> dict[str, float]:
    assert len(tokens) % 2 == 0, tokens
    return {tokens[i + 1]: float(tokens[i]) for i in range(0, len(tokens), 2)}


def _stage_headers(text: str) -> list[tuple[int, int, str]]:
    return [(int(k), int(a), b) for k, a, b in STAGE_RE.findall(text)]


def _parse_megatron(text: str) -> list[dict[str, float]]:
    blends = []
    for line in text.splitlines():
        if line.startswith("--data-path"):
            blends.append(_pairs(shlex.split(line)[1:]))
    return blends


def test_megatron_mixture_and_schedule() -> None:
    blends = _parse_megatron(export_mixture(MIX, "megatron", prefixes=PREFIXES))
    assert len(blends) == 1
    _assert_close(blends[0], _expected(MIX))

    text = export_mixture(SCHED, "megatron", prefixes=PREFIXES, total_steps=1000)
    assert _stage_headers(text) == [(0, 0, "250"), (1, 250, "900"), (2, 900, "1000")]
    blends = _parse_megatron(text)
    assert len(blends) == 3
    for blend, stage in zip(blends, SCHED.stages, strict=True):
        _assert_close(blend, _expected(stage.mixture))


def test_megatron_per_split_form() -> None:
    prefixes = {"web": "/d/web_{split}_text_document", "code": "/d/code"}
    text = export_mixture(MIX, "megatron-split", prefixes=prefixes)
    args = shlex.split(text.replace("\\\n", " "), comments=True)
    flags = [i for i, a in enumerate(args) if a.startswith("--")]
    assert [args[i] for i in flags] == ["--train-data-path", "--valid-data-path", "--test-data-path"]
    bounds = flags + [len(args)]
    for split, i, j in zip(("train", "valid", "test"), bounds, bounds[1:], strict=False):
        got = _pairs(args[i + 1 : j])
        want = {
            f"/d/web_{split}_text_document": 0.5,
            f"/d/code_{split}": 1 / 3,
            f"books_{split}": 1 / 6,
        }
        _assert_close(got, want)


def test_nemo_yaml() -> None:
    docs = list(yaml.safe_load_all(export_mixture(SCHED, "nemo", prefixes=PREFIXES)))
    assert len(docs) == 3
    for doc, stage in zip(docs, SCHED.stages, strict=True):
        prefix = doc["model"]["data"]["data_prefix"]
        assert set(prefix) == {"train", "validation", "test"}
        flat = prefix["validation"]
        got = {flat[i + 1]: flat[i] for i in range(0, len(flat), 2)}
        _assert_close(got, {f"{p}_valid": w for p, w in _expected(stage.mixture).items()})


class _Stream:
    def __init__(
        self,
        *,
        remote: str | None = None,
        local: str | None = None,
        split: str | None = None,
        proportion: float,
    ) -> None:
        self.location = remote or local
        self.remote = remote
        self.split = split
        self.proportion = proportion


# mean tokens per document: books are 10x longer than code
LENGTHS = {"web": 400.0, "code": 100.0, "books": 1000.0, "empty": 50.0}
OPTS = ExportOptions(tokens_per_sample=LENGTHS, split="train")


def _token_shares(probs: dict[str, float]) -> dict[str, float]:
    """Expected token share when samples are drawn with ``probs`` and have the mean lengths above."""
    tok = {d: p * LENGTHS[d] for d, p in probs.items()}
    total = sum(tok.values())
    return {d: v / total for d, v in tok.items()}


def test_sample_probabilities_reproduce_token_shares() -> None:
    probs = sample_probabilities(MIX, LENGTHS)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert probs["code"] > probs["web"] > probs["books"]  # short documents are drawn more often
    _assert_close(_token_shares(probs), {d: w for d, w in MIX.weights.items() if w > 0})
    with pytest.raises(ConfigError, match="draws samples"):
        export_mixture(MIX, "hf")
    with pytest.raises(ConfigError, match="no mean tokens"):
        sample_probabilities(MIX, {"web": 1.0})


def test_mosaic_python_streams() -> None:
    text = export_mixture(SCHED, "mosaic", prefixes=PREFIXES, options=OPTS)
    assert text.startswith("from streaming import Stream")
    ns = exec_snippet(text, {"Stream": _Stream})
    yaml_docs = list(
        yaml.safe_load_all(export_mixture(SCHED, "mosaic-yaml", prefixes=PREFIXES, options=OPTS))
    )
    for k, stage in enumerate(SCHED.stages):
        streams = ns[f"streams_stage_{k}"]
        by_domain = {d: s for d, s in zip(_positive_domains(stage.mixture), streams, strict=True)}
        got = _token_shares({d: s.proportion for d, s in by_domain.items()})
        _assert_close(got, {d: w for d, w in stage.mixture.weights.items() if w > 0})
        for d, s in by_domain.items():
            assert (s.remote is not None) == s.location.startswith("s3://")
            assert s.location == _prefix(d)
            # the same split and proportion in the Python and the YAML form
            ys = yaml_docs[k]["train_loader"]["dataset"]["streams"][d]
            assert s.split == ys["split"] == "train"
            assert s.proportion == pytest.approx(ys["proportion"], rel=1e-12)


def _positive_domains(mix: Mixture) -> list[str]:
    return [d for d, w in mix.weights.items() if w > 0]


def test_mosaic_epoch_size_caps_every_stream() -> None:
    docs = {"web": 1000, "code": 50, "books": 400}
    opts = ExportOptions(tokens_per_sample=LENGTHS, samples=docs, max_epochs=2.0)
    (doc,) = yaml.safe_load_all(export_mixture(MIX, "mosaic-yaml", options=opts))
    ds = doc["train_loader"]["dataset"]
    drawn = {d: s["proportion"] * ds["epoch_size"] for d, s in ds["streams"].items()}
    assert all(drawn[d] <= 2.0 * docs[d] + 1e-6 for d in drawn)
    assert max(drawn[d] / (2.0 * docs[d]) for d in drawn) == pytest.approx(
        1.0, abs=0.01
    )  # epoch_size is floored


def test_olmo_source_mixture_dataset_config() -> None:
    opts = ExportOptions(max_epochs={"web": 2.5, "code": 0.5}, global_batch_tokens=1024, total_tokens=10**6)
    (doc,) = yaml.safe_load_all(export_mixture(MIX, "olmo", prefixes=PREFIXES, options=opts))
    assert doc["requested_tokens"] == 10**6 and doc["global_batch_size"] == 1024
    sources = {s["source_name"]: s for s in doc["source_list"]["sources"]}
    _assert_close(
        {d: s["target_ratio"] for d, s in sources.items()}, {d: w for d, w in MIX.weights.items() if w > 0}
    )
    assert sources["web"]["max_repetition_ratio"] == 2.5 and sources["web"]["max_source_fraction"] == 1.0
    assert sources["code"]["max_repetition_ratio"] == 1.0 and sources["code"]["max_source_fraction"] == 0.5
    assert sources["books"]["max_repetition_ratio"] == 1.0 and sources["code"]["paths"] == [PREFIXES["code"]]
    with pytest.raises(ConfigError, match="global-batch-tokens"):
        export_mixture(MIX, "olmo")
    # a schedule: each stage requests its own steps' tokens; the last one what is left of --tokens
    docs = list(yaml.safe_load_all(export_mixture(SCHED, "olmo", options=opts)))
    assert [d["requested_tokens"] for d in docs] == [250 * 1024, 650 * 1024, 10**6 - 900 * 1024]


def test_schedule_in_one_object_formats_is_one_file_per_stage(tmp_path) -> None:
    opts = ExportOptions(global_batch_tokens=8, total_tokens=10_000)
    paths = write_export_files(SCHED, "olmo", tmp_path / "mix.yaml", options=opts)
    assert [p.name for p in paths] == ["mix.yaml", "mix.stage0.yaml", "mix.stage1.yaml", "mix.stage2.yaml"]
    plan = paths[0].read_text()
    assert _stage_headers(plan) == [(0, 0, "250"), (1, 250, "900"), (2, 900, "end")]
    assert "mix.stage1.yaml" in plan and "resume" in plan
    for p, stage in zip(paths[1:], SCHED.stages, strict=True):
        doc = yaml.safe_load(p.read_text())  # a single document, as OLMo-core's from_yaml reads it
        got = {s["source_name"]: s["target_ratio"] for s in doc["source_list"]["sources"]}
        _assert_close(got, {d: w for d, w in stage.mixture.weights.items() if w > 0})
    paths = write_export_files(SCHED, "megatron-json", tmp_path / "blend.json")
    for p, stage in zip(paths[1:], SCHED.stages, strict=True):
        train = json.loads(p.read_text())["train"]
        _assert_close(_pairs(train), {f"{d}_train": w for d, w in stage.mixture.weights.items() if w > 0})
    with pytest.raises(ConfigError, match="one file per stage"):
        export_mixture(SCHED, "megatron-json")


def test_nemo2_paths() -> None:
    ns = exec_snippet(export_mixture(SCHED, "nemo2", prefixes=PREFIXES), {})
    for k, stage in enumerate(SCHED.stages):
        paths = ns[f"paths_stage_{k}"]
        assert set(paths) == {"train", "validation", "test"}
        got = {paths["train"][i + 1]: paths["train"][i] for i in range(0, len(paths["train"]), 2)}
        _assert_close(got, {f"{p}_train": w for p, w in _expected(stage.mixture).items()})


def test_hf_interleave_snippet() -> None:
    opts = ExportOptions(
        tokens_per_sample=LENGTHS, samples={"web": 10, "code": 10, "books": 10}, max_epochs=1.5
    )
    text = export_mixture(SCHED, "hf", prefixes=PREFIXES, options=opts)
    calls: list[dict] = []

    class _Stream:
        def __init__(self, name: str) -> None:
            self.name, self.ops = name, []

        def repeat(self, n: int) -> _Stream:
            self.ops.append(("repeat", n))
            return self

        def take(self, n: int) -> _Stream:
            self.ops.append(("take", n))
            return self

    def interleave_datasets(datasets, probabilities, seed, stopping_strategy):
        calls.append({"streams": list(datasets), "p": probabilities, "stop": stopping_strategy})
        return calls[-1]

    ns = exec_snippet(
        text, {"interleave_datasets": interleave_datasets, "load_dataset": lambda n, **kw: _Stream(n)}
    )
    assert len(calls) == 3
    for k, stage in enumerate(SCHED.stages):
        call = ns[f"mixed_stage_{k}"]
        assert call["stop"] == "first_exhausted"  # a capped domain ends the mixture
        assert all(s.ops == [("repeat", 2), ("take", 15)] for s in call["streams"])
        domains = _positive_domains(stage.mixture)
        got = _token_shares(dict(zip(domains, call["p"], strict=True)))
        _assert_close(got, {d: w for d, w in stage.mixture.weights.items() if w > 0})
    uncapped = export_mixture(MIX, "hf", options=ExportOptions(tokens_per_sample=LENGTHS))
    assert "stopping_strategy='all_exhausted'" in uncapped and ".repeat(" not in uncapped


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_plain_formats_round_trip(tmp_path, fmt) -> None:
    for obj in (MIX, SCHED):
        path = tmp_path / f"out.{fmt}"
        path.write_text(export_mixture(obj, fmt))
        back = load_mixture_or_schedule(path)
        assert back == obj


def test_every_format_is_covered_and_bad_input_is_explained() -> None:
    opts = ExportOptions(tokens_per_sample=LENGTHS, global_batch_tokens=8, total_tokens=800)
    for fmt in FORMATS:
        assert export_mixture(MIX, fmt, options=opts).strip()
    with pytest.raises(ConfigError, match="unknown export format"):
        export_mixture(MIX, "parquet")
    with pytest.raises(ConfigError, match="does not have"):
        export_mixture(MIX, "megatron", prefixes={"wbe": "/x"})
    with pytest.raises(ConfigError, match="DOMAIN=PATH"):
        parse_prefixes(["web"])
    with pytest.raises(ConfigError, match="total_steps"):
        export_mixture(SCHED, "megatron", total_steps=900)
    assert parse_prefixes(["web=s3://b/x=y"]) == {"web": "s3://b/x=y"}


def _cli() -> typer.Typer:
    from mixlab.cli.export import export

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("export")(export)
    return app


def test_cli_export_writes_file(tmp_path) -> None:
    src = tmp_path / "sched.yaml"
    save_mixture(SCHED, src)
    out = tmp_path / "blend.sh"
    res = CliRunner().invoke(
        _cli(),
        ["export", str(src), "--format", "megatron", "--prefix", "web=s3://bucket/web", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    blends = _parse_megatron(out.read_text())
    assert blends[1] == pytest.approx({"s3://bucket/web": 0.1, "code": 0.9})
    res = CliRunner().invoke(_cli(), ["export", str(src), "--format", "json"])
    assert res.exit_code == 0
    assert Schedule.from_json(json.loads(res.output)["schedule"]) == SCHED


@pytest.fixture
def csv_format():
    """A test-only format, registered the way a new format would be (one class, nothing else edited)."""

    @register_format
    class CsvShares(ExportFormat):
        name = "csv-shares"
        description = "test only: one 'path,token share' line per domain"

        def render(self, mixture, prefixes, opts, stage):
            return "\n".join(f"{prefixes.get(d, d)},{w:g}" for d, w in mixture.weights.items() if w > 0)

    yield CsvShares
    del EXPORT_FORMATS["csv-shares"]


def test_a_registered_format_reaches_the_cli_and_export_mixture(csv_format, tmp_path) -> None:
    from mixlab.cli.main import build_app

    assert FORMATS["csv-shares"] == csv_format.description
    res = CliRunner().invoke(build_app(), ["export", "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "olmo, hf, json, yaml or csv-shares." in res.output
    mix = Mixture({"web": 0.75, "code": 0.25, "empty": 0.0})
    assert export_mixture(mix, "csv-shares", prefixes={"web": "/d/web"}) == (
        "# mixlab stage 0: steps 0-end\n/d/web,0.75\ncode,0.25\n"
    )
    text = export_mixture(SCHED, "csv-shares", total_steps=1000)
    assert _stage_headers(text) == [(0, 0, "250"), (1, 250, "900"), (2, 900, "1000")]
    assert "# at the boundary: train with this mixture until step 250, save a checkpoint" in text
    assert text.endswith("# mixlab stage 2: steps 900-1000\n# last stage: resume from the previous stage's "
                         "checkpoint with this blend and train to the end\nbooks,1\n")  # fmt: skip
    src = tmp_path / "mix.yaml"
    save_mixture(mix, src)
    res = CliRunner().invoke(build_app(), ["export", str(src), "--format", "csv-shares"])
    assert res.exit_code == 0, res.output
    assert res.output == "# mixlab stage 0: steps 0-end\nweb,0.75\ncode,0.25\n"
    with pytest.raises(ValueError, match="registered twice"):
        register_format(csv_format)


def test_an_unregistered_format_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown export format 'csv-shares'; choose one of megatron, "):
        export_mixture(MIX, "csv-shares")
    with pytest.raises(ConfigError, match="unknown per-stage export format 'json'"):
        export_stages(MIX, "json")
