from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import BENCH, make_run_dir  # noqa: E402

from mixlab.errors import DataError  # noqa: E402
from mixlab.report import plots  # noqa: E402
from mixlab.report.data import load_report_input, load_report_inputs  # noqa: E402
from mixlab.report.html import render_html, write_report  # noqa: E402

IMG_RE = re.compile(
    r'<img class="plot" alt="([^"]*)" width="(\d+)" height="(\d+)" src="(data:image/png;base64,[^"]+)">'
)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> tuple[Path, str]:
    run = make_run_dir(tmp_path_factory.mktemp("report"))
    path = write_report(run)
    return path, path.read_text()


def test_report_is_self_contained_with_every_section(full_report) -> None:
    path, text = full_report
    assert path.name == "report.html"
    imgs = IMG_RE.findall(text)
    assert [a for a, *_ in imgs] == [
        "stacked mixture per stage",
        "per-domain loss curves",
        "Group Influence heatmaps",
        "mixing-law fits",
        "predicted vs true scatter",
        "benchmark: loss vs compute spent choosing",
        "mixture chosen by each method",
    ]
    assert "Section omitted" not in text
    outside_images = IMG_RE.sub("", text)
    for needle in ("http:", "https:", "src=", "href=", "url(", "@import", "<script", "<link"):
        assert needle not in outside_images, f"page must not load anything ({needle!r})"
    for method in (r["method"] for r in BENCH):
        assert f">{method}<" in text
    assert "3.8 ± 0.02" in text  # tikmix-d avg_loss with its std


def _chromium() -> str | None:
    return next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


def _screenshot(browser: str, page: Path, png: Path, profile: Path) -> np.ndarray:
    from PIL import Image

    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
        f"--screenshot={png}", "--window-size=1280,6000", page.as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)


def _blank_png(match: re.Match) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (int(match.group(2)), int(match.group(3))), (0, 0, 0, 0)).save(buf, format="PNG")
    return plots.png_data_uri(buf.getvalue())


def _row_runs(mask: np.ndarray, gap: int = 40) -> list[tuple[int, int]]:
    rows = np.flatnonzero(mask)
    runs: list[list[int]] = []
    for r in rows:
        if runs and r - runs[-1][1] <= gap:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return [(a, b + 1) for a, b in runs]


def test_report_renders_plots_in_chromium(full_report, tmp_path) -> None:
    """Screenshot the page and a twin whose plots are replaced by transparent PNGs of the same size
    (identical layout): the pixels that differ must be exactly one non-blank block per plot."""
    _check_painted(full_report[1], tmp_path)


def _check_painted(text: str, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); cannot check the rendered page")
    pytest.importorskip("PIL")
    imgs = IMG_RE.findall(text)
    page = tmp_path / "report.html"
    twin = tmp_path / "twin.html"
    page.write_text(text)
    twin.write_text(IMG_RE.sub(lambda m: m.group(0).replace(m.group(4), _blank_png(m)), text))
    real = _screenshot(browser, page, tmp_path / "real.png", tmp_path / "profile1")
    blank = _screenshot(browser, twin, tmp_path / "blank.png", tmp_path / "profile2")
    assert real.shape == blank.shape
    diff = np.abs(real - blank).max(axis=2) > 24
    runs = _row_runs(diff.any(axis=1))
    assert len(runs) == len(imgs), f"expected {len(imgs)} painted plots, found pixel blocks at rows {runs}"
    for (top, bottom), (alt, width, height, _) in zip(runs, imgs, strict=True):
        assert bottom - top >= 0.6 * int(height), f"{alt}: only {bottom - top}px of {height}px painted"
        cols = np.flatnonzero(diff[top:bottom].any(axis=0))
        assert cols[-1] - cols[0] >= 0.6 * int(width), f"{alt}: painted width too small"
        region = real[top:bottom, cols[0] : cols[-1] + 1]
        assert region.std() > 20, f"{alt}: plot region is blank"
        colourful = (region.max(axis=2) - region.min(axis=2)) > 60
        assert colourful.mean() > 0.001, f"{alt}: no coloured marks drawn"


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory) -> tuple[Path, str]:
    """A dynamic run and a uniform baseline (its own schedule and a higher loss curve) plus a bench file."""
    root = tmp_path_factory.mktemp("compare")
    dynamic = make_run_dir(root / "a", with_bench=False).rename(root / "tikmix")
    uniform = make_run_dir(root / "b", with_bench=False).rename(root / "uniform")
    (uniform / "schedule.json").write_text(
        json.dumps({"mixture": {"web": 1 / 3, "code": 1 / 3, "books": 1 / 3}})
    )
    rows = (uniform / "metrics.csv").read_text().splitlines()
    shifted = [rows[0]] + [
        ",".join([*r.split(",")[:4], f"{float(r.split(',')[4]) + 0.25:.4f}"]) for r in rows[1:]
    ]
    (uniform / "metrics.csv").write_text("\n".join(shifted) + "\n")
    (root / "bench.json").write_text(json.dumps(BENCH))
    path = write_report([dynamic, uniform, root / "bench.json"])
    return path, path.read_text()


def test_report_compares_several_runs_and_a_bench(compare_report) -> None:
    path, text = compare_report
    assert path.name == "compare.html" and path.parent.name == "tikmix"
    alts = [a for a, *_ in IMG_RE.findall(text)]
    assert alts[:2] == ["mixture of each run", "mean validation loss over domains, per run"]
    assert "per-domain loss curves" in alts and "benchmark: loss vs compute spent choosing" in alts
    table = text[text.index("Final validation loss per run") :]
    # best mean first: the dynamic run's curve is 0.25 below the uniform one in every domain
    assert table.index(">tikmix<") < table.index(">uniform<")
    data = load_report_inputs([path.parent, path.parent.with_name("uniform")])
    assert set(data.runs) == {"tikmix", "uniform"}
    assert {r["run_id"] for r in data.metrics} == {"tikmix", "uniform"}
    final = {
        run: np.mean([r["loss"] for r in data.metrics if r["run_id"] == run and r["step"] == 400])
        for run in data.runs
    }
    assert final["uniform"] - final["tikmix"] == pytest.approx(0.25, abs=0.01)
    for method in (r["method"] for r in BENCH):
        assert f">{method} (bench)<" in text


def test_compare_report_renders_in_chromium(compare_report, tmp_path) -> None:
    _check_painted(compare_report[1], tmp_path)


def test_missing_and_broken_inputs_become_notes(tmp_path) -> None:
    run = make_run_dir(tmp_path, with_bench=False)
    (run / "predictions.csv").unlink()
    (run / "stages" / "stage_1" / "influence.json").write_text("{not json")
    (run / "laws" / "bimix_web.json").write_text(json.dumps({"observed": {"x": [1, 2], "y": [1]}}))
    data = load_report_input(run)
    assert [s.stage for s in data.influence] == [0]
    assert len(data.laws) == 2
    text = render_html(data)
    assert "Section omitted: no predictions.csv" in text
    assert "Section omitted: no bench results" in text
    assert "stage_1/influence.json: not valid JSON" in text
    assert "bimix_web.json law 0 observed: x and y must be non-empty and of equal length" in text
    assert len(IMG_RE.findall(text)) == 4


def test_bench_json_only(tmp_path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"results": BENCH}))
    data = load_report_input(bench)
    assert data.kind == "bench" and [r.method for r in data.bench] == [r["method"] for r in BENCH]
    text = render_html(data)
    assert [a for a, *_ in IMG_RE.findall(text)] == [
        "benchmark: loss vs compute spent choosing",
        "mixture chosen by each method",
    ]
    assert "<h3>Final validation loss per domain</h3>" in text
    assert text.count("Section omitted") == 5
    with pytest.raises(DataError, match="not a run directory"):
        load_report_input(tmp_path / "nothing")
    (tmp_path / "bad.json").write_text(json.dumps([{"avg_loss": 1.0}]))
    with pytest.raises(DataError, match="has no 'method'"):
        load_report_input(tmp_path / "bad.json")


def test_influence_matrix_orientation(tmp_path) -> None:
    """Rows are training domains (GroupInfluence.to_dict layout); a targets x train matrix is
    recognised by its shape or its "layout" key; a wrong shape is refused; null stderr is NaN."""
    from mixlab.influence import GroupInfluence

    run = tmp_path / "r"
    stage = run / "stages" / "stage_0"
    stage.mkdir(parents=True)
    gi = GroupInfluence(
        matrix=[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], stderr=[[0.1, float("nan")], [0.1, 0.1], [0.1, 0.1]],
        train_domains=["a", "b", "c"], target_domains=["x", "y"],
    )  # fmt: skip
    (stage / "influence.json").write_text(json.dumps(gi.to_dict()))
    (stage / "record.json").write_text(json.dumps({"stage": 0, "start_step": 120}))
    (inf,) = load_report_input(run).influence
    assert inf.matrix.shape == (3, 2) and inf.matrix[2, 1] == 6.0 and np.isnan(inf.stderr[0, 1])
    assert inf.step == 120
    square = {"train_domains": ["a", "b"], "target_domains": ["x", "y"], "matrix": [[1.0, 2.0], [3.0, 4.0]]}
    (stage / "influence.json").write_text(json.dumps(square))
    assert load_report_input(run).influence[0].matrix[0, 1] == 2.0
    (stage / "influence.json").write_text(json.dumps({**square, "layout": "target_x_train"}))
    assert load_report_input(run).influence[0].matrix[0, 1] == 3.0
    (stage / "influence.json").write_text(
        json.dumps({"train_domains": ["a"], "target_domains": ["x", "y"], "matrix": [[1.0], [2.0], [3.0]]})
    )
    data = load_report_input(run)
    assert data.influence == [] and "expected (1, 2)" in data.notes["influence stage 0"]


def test_plot_api_known_answers() -> None:
    t = np.array([1.0, 2.0, 3.0, 4.0])
    s = plots.prediction_scores(t, t)
    assert s["r2"] == 1.0 and s["spearman"] == pytest.approx(1.0) and s["rmse"] == 0.0
    s = plots.prediction_scores(t, t[::-1])
    assert s["spearman"] == pytest.approx(-1.0) and s["rmse"] == pytest.approx(np.sqrt(5.0))
    png = plots.figure_to_png(plots.plot_mixture_schedule([(0, {"a": 0.5, "b": 0.5})], end_step=10))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.png_data_uri(png).startswith("data:image/png;base64,iVBOR")
    colors = plots.domain_colors(["a", "b", "c"])
    assert len(set(colors.values())) == 3


def test_cli_report(tmp_path) -> None:
    from mixlab.cli.report import report

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("report")(report)
    bench = tmp_path / "b.json"
    bench.write_text(json.dumps(BENCH))
    out = tmp_path / "out" / "page.html"
    res = CliRunner().invoke(app, ["report", str(bench), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "<h2>Benchmark</h2>" in out.read_text()
    res = CliRunner().invoke(app, ["report", str(bench)])
    assert res.exit_code == 0 and (tmp_path / "b.html").is_file()


def test_law_record_round_trips_through_the_loader(tmp_path) -> None:
    from mixlab.report.data import law_record
    from mixlab.utils.io import atomic_write_json

    rec = law_record(
        "web",
        [0.1, 0.5],
        [3.0, 2.5],
        np.linspace(0.1, 0.5, 5),
        np.linspace(3, 2.5, 5),
        law="bimix",
        params={"A": np.float64(1.5)},
    )
    atomic_write_json(tmp_path / "laws" / "web.json", [rec])
    (law,) = load_report_input(tmp_path).laws
    assert law.name == "web" and law.law == "bimix" and law.params == {"A": 1.5}
    np.testing.assert_allclose(law.curve_y, np.linspace(3, 2.5, 5))
    with pytest.raises(DataError, match="equal length"):
        law_record("bad", [1, 2], [1])
