"""Each export format is parsed back with that stack's own conventions and compared with the mixture."""

from __future__ import annotations

import ast
import json
import re
import shlex

import pytest
import typer
import yaml
from typer.testing import CliRunner

from mixlab import ConfigError, Mixture, Schedule, load_mixture_or_schedule, save_mixture
from mixlab.integrations.export import FORMATS, export_mixture, parse_prefixes

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
    def __init__(self, *, remote: str | None = None, local: str | None = None, proportion: float) -> None:
        self.location = remote or local
        self.remote = remote
        self.proportion = proportion


def _eval_python(text: str, names: dict[str, object]) -> dict[str, object]:
    """Run the snippet with the import lines removed and fakes for the library calls."""
    tree = ast.parse(text)
    body = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    ns: dict[str, object] = dict(names)
    exec(compile(ast.Module(body=body, type_ignores=[]), "<export>", "exec"), ns)  # noqa: S102
    return ns


def test_mosaic_python_streams() -> None:
    text = export_mixture(SCHED, "mosaic", prefixes=PREFIXES)
    assert text.startswith("from streaming import Stream")
    ns = _eval_python(text, {"Stream": _Stream})
    for k, stage in enumerate(SCHED.stages):
        streams = ns[f"streams_stage_{k}"]
        _assert_close({s.location: s.proportion for s in streams}, _expected(stage.mixture))
        for s in streams:
            assert (s.remote is not None) == s.location.startswith("s3://")
    single = _eval_python(export_mixture(MIX, "mosaic", prefixes=PREFIXES), {"Stream": _Stream})
    _assert_close({s.location: s.proportion for s in single["streams"]}, _expected(MIX))


def test_mosaic_yaml_streams() -> None:
    docs = list(yaml.safe_load_all(export_mixture(SCHED, "mosaic-yaml", prefixes=PREFIXES)))
    for doc, stage in zip(docs, SCHED.stages, strict=True):
        streams = doc["train_loader"]["dataset"]["streams"]
        got = {name: s["proportion"] for name, s in streams.items()}
        _assert_close(got, {d: w for d, w in stage.mixture.weights.items() if w > 0})
        for name, s in streams.items():
            assert s.get("remote", s.get("local")) == _prefix(name)


def test_olmo_source_mixture() -> None:
    (doc,) = yaml.safe_load_all(export_mixture(MIX, "olmo", prefixes=PREFIXES))
    sources = doc["source_mixture_config"]["source_configs"]
    got = {s["source_name"]: s["target_ratio"] for s in sources}
    _assert_close(got, {d: w for d, w in MIX.weights.items() if w > 0})
    assert sum(s["target_ratio"] for s in sources) == pytest.approx(1.0, abs=1e-9)
    assert {s["source_name"]: s["paths"] for s in sources}["code"] == [PREFIXES["code"]]


def test_hf_interleave_snippet_and_real_interleave(tmp_path) -> None:
    text = export_mixture(SCHED, "hf", prefixes=PREFIXES)
    calls: list[dict] = []

    def interleave_datasets(datasets, probabilities, seed, stopping_strategy):
        calls.append({"names": list(datasets), "p": probabilities, "stop": stopping_strategy})
        return calls[-1]

    ns = _eval_python(
        text, {"interleave_datasets": interleave_datasets, "load_dataset": lambda name, **kw: name}
    )
    assert len(calls) == 3
    for k, stage in enumerate(SCHED.stages):
        call = ns[f"mixed_stage_{k}"]
        _assert_close(dict(zip(call["names"], call["p"], strict=True)), _expected(stage.mixture))

    # The single-mixture snippet also runs against the real datasets library on local data.
    datasets = pytest.importorskip("datasets")
    local = {}
    for d in ("web", "code", "books"):
        ds = datasets.Dataset.from_dict({"text": [f"{d}-{i}" for i in range(200)]})
        local[d] = ds.to_iterable_dataset()
    text = export_mixture(MIX, "hf", prefixes={d: d for d in local})
    ns = _eval_python(
        text,
        {"interleave_datasets": datasets.interleave_datasets, "load_dataset": lambda name, **kw: local[name]},
    )
    drawn = [row["text"].split("-")[0] for _, row in zip(range(600), ns["mixed"], strict=False)]
    freq = {d: drawn.count(d) / len(drawn) for d in local}
    assert freq["web"] == pytest.approx(0.5, abs=0.08)
    assert freq["books"] == pytest.approx(1 / 6, abs=0.06)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_plain_formats_round_trip(tmp_path, fmt) -> None:
    for obj in (MIX, SCHED):
        path = tmp_path / f"out.{fmt}"
        path.write_text(export_mixture(obj, fmt))
        back = load_mixture_or_schedule(path)
        assert back == obj


def test_every_format_is_covered_and_bad_input_is_explained() -> None:
    for fmt in FORMATS:
        assert export_mixture(MIX, fmt).strip()
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
    assert Schedule.from_list(json.loads(res.output)["schedule"]) == SCHED
