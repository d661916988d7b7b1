"""`mixlab fit-law` and `mixlab entropy` end to end, and clear errors for bad CSVs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mixlab.cli.main import build_app
from mixlab.laws.bimix import BiMixLaw
from mixlab.laws.registry import REGISTRY
from mixlab.laws.select import LawSelector

LAWS = {"web": BiMixLaw.from_params(A=3, alpha=0.05, B=40, beta=0.45), "code": BiMixLaw.from_params(A=1.5, alpha=0.2, B=80, beta=0.5)}


def _write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def runs_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, a in enumerate([0.1, 0.3, 0.5, 0.7, 0.9]):
        for s in [100, 200, 400, 800, 1600]:
            rows.append([i, a, 1 - a, s, LAWS["web"].predict(a, s) * np.exp(rng.normal(0, 0.002)),
                         LAWS["code"].predict(1 - a, s) * np.exp(rng.normal(0, 0.002))])
    return _write(tmp_path / "runs.csv", ["run", "r_web", "r_code", "step", "loss_web", "loss_code"], rows)


def _invoke(*args):
    return CliRunner().invoke(build_app(), list(map(str, args)))


def test_fit_predict_plot(runs_csv, tmp_path):
    q = _write(tmp_path / "q.csv", ["r_web", "r_code", "step"], [[0.4, 0.6, 5000], [0.5, 0.5, 1600]])
    out, png, js = tmp_path / "pred.csv", tmp_path / "fit.png", tmp_path / "law.json"
    res = _invoke("fit-law", "--data", runs_csv, "--predict", q, "--out", out, "--plot", png, "--save", js)
    assert res.exit_code == 0, res.output
    assert "alpha" in res.output and "R^2" in res.output
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["r_web", "r_code", "step", "loss_web", "loss_code"]
    assert float(rows[0]["loss_web"]) == pytest.approx(LAWS["web"].predict(0.4, 5000), rel=0.01)
    assert float(rows[0]["loss_code"]) == pytest.approx(LAWS["code"].predict(0.6, 5000), rel=0.01)
    assert png.stat().st_size > 1000 and js.is_file()


def test_run_effects_and_share_beta_options(runs_csv, tmp_path):
    js = tmp_path / "law.json"
    res = _invoke("fit-law", "--data", runs_csv, "--law", "bimix", "--run-effects", "--share-beta", "--save", js)
    assert res.exit_code == 0, res.output
    saved = json.loads(js.read_text())
    assert saved["law"] == "bimix" and saved["settings"]["share_beta"] is True and saved["settings"]["run_effects"] is True
    assert all(r["settings"]["share_beta"] and r["settings"]["run_effects"] for r in saved["cv"])
    laws = LawSelector.from_dict(saved).estimator_.laws_
    assert laws["web"].beta_ == laws["code"].beta_
    assert laws["web"].beta_ == pytest.approx(0.47, abs=0.05)
    assert laws["code"].alpha_ == pytest.approx(0.2, rel=0.1)


def test_auto_default_prints_cv_table_and_saved_fit_predicts_identically(runs_csv, tmp_path):
    q = _write(tmp_path / "q.csv", ["r_web", "r_code", "step"], [[0.4, 0.6, 5000], [0.25, 0.75, 900]])
    js, out1, out2 = tmp_path / "fit.json", tmp_path / "p1.csv", tmp_path / "p2.csv"
    res = _invoke("fit-law", "--data", runs_csv, "--predict", q, "--out", out1, "--save", js, "--folds", "3")
    assert res.exit_code == 0, res.output
    assert "cross-validation" in res.output and "chosen law: bimix" in res.output
    saved = json.loads(js.read_text())
    assert saved["law"] == "bimix" and {r["law"] for r in saved["cv"]} == set(REGISTRY)
    assert any(r["chosen"] for r in saved["cv"]) and len(saved["folds"]) == 3
    res = _invoke("fit-law", "--load", js, "--predict", q, "--out", out2)
    assert res.exit_code == 0, res.output
    assert open(out1).read() == open(out2).read()
    # the report reads the saved file's laws section: fitted curves and predicted vs true
    from mixlab.report.data import read_laws

    series = read_laws(js)
    assert {s.name for s in series} >= {"web: last step, predicted vs true", "code: last step, predicted vs true"}
    assert any(s.x_label == "steps" and s.curve_x is not None for s in series)
    page = tmp_path / "r.html"
    res = _invoke("report", js, "--out", page)
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert "Fitted mixing laws" in html and "data:image/png;base64" in html


def test_held_out_rows_are_never_read(runs_csv, tmp_path):
    """The query's own loss columns (the held-out truth) do not change the selection or the predictions."""
    rows = [[0.4, 0.6, 1600, 9.0, 9.0], [0.6, 0.4, 1600, 1.0, 1.0]]
    q1 = _write(tmp_path / "q1.csv", ["r_web", "r_code", "step", "loss_web", "loss_code"], rows)
    q2 = _write(tmp_path / "q2.csv", ["r_web", "r_code", "step", "loss_web", "loss_code"],
                [[*r[:3], 2 * r[3], 0.5 * r[4]] for r in rows])
    outs = []
    for i, q in enumerate((q1, q2)):
        js, out = tmp_path / f"f{i}.json", tmp_path / f"p{i}.csv"
        res = _invoke("fit-law", "--data", runs_csv, "--predict", q, "--out", out, "--save", js, "--folds", "3")
        assert res.exit_code == 0, res.output
        saved = json.loads(js.read_text())
        outs.append((saved["law"], saved["settings"], saved["cv"], open(out).read()))
    assert outs[0] == outs[1]


def test_dml_law(runs_csv, tmp_path):
    q = _write(tmp_path / "q.csv", ["r_web", "r_code", "step"], [[0.5, 0.5, 1600]])
    out = tmp_path / "pred.csv"
    res = _invoke("fit-law", "--data", runs_csv, "--law", "dml", "--predict", q, "--out", out, "--folds", "3")
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader(open(out)))
    assert float(row["loss_web"]) == pytest.approx(LAWS["web"].predict(0.5, 1600), rel=0.02)


def test_cross_law_prints_its_coefficients_and_predicts(runs_csv, tmp_path):
    q = _write(tmp_path / "q.csv", ["r_web", "r_code", "step"], [[0.5, 0.5, 1600]])
    out = tmp_path / "pred.csv"
    res = _invoke("fit-law", "--data", runs_csv, "--law", "bimix-cross", "--predict", q, "--out", out,
                  "--folds", "3", "--min-step-frac", "0", "--step-weight", "0", "--no-share-beta")
    assert res.exit_code == 0, res.output
    assert "BiMix + cross term" in res.output and "chosen law: bimix-cross" in res.output
    row = next(csv.DictReader(open(out)))
    assert float(row["loss_web"]) == pytest.approx(LAWS["web"].predict(0.5, 1600), rel=0.01)
    assert float(row["loss_code"]) == pytest.approx(LAWS["code"].predict(0.5, 1600), rel=0.01)


@pytest.mark.parametrize(
    "header,rows,needle",
    [
        (["r_web", "r_code", "loss_web"], [[0.5, 0.5, 3.0]], "missing the 'step' column"),
        (["r_web", "r_code", "step"], [[0.5, 0.5, 10]], "no loss columns"),
        (["step", "loss_web"], [[10, 3.0]], "no proportion columns"),
        (["r_web", "r_code", "step", "loss_web"], [[0.5, 0.5, 10, "nan"]], "row 2, column 'loss_web'"),
        (["r_web", "r_code", "step", "loss_web"], [[0.5, 0.4, 10, 3.0]], "sum to 0.9"),
        (["r_web", "r_code", "step", "loss_other"], [[0.5, 0.5, 10, 3.0]] * 8, "have no proportion column"),
    ],
)
def test_bad_csvs_give_clear_errors(tmp_path, header, rows, needle):
    from mixlab.cli.main import main

    p = _write(tmp_path / "bad.csv", header, rows)
    with pytest.raises(SystemExit) as exc:
        main(["fit-law", "--data", str(p)])
    assert exc.value.code == 2
    res = _invoke("fit-law", "--data", p)
    assert res.exit_code != 0 and needle in str(res.exception)


def test_query_with_other_domains_is_rejected(runs_csv, tmp_path):
    q = _write(tmp_path / "q.csv", ["r_web", "r_books", "step"], [[0.5, 0.5, 10]])
    res = _invoke("fit-law", "--data", runs_csv, "--predict", q)
    assert "do not match" in str(res.exception)


def test_entropy_command(tmp_path):
    from mixlab.data import prepare_domains

    prepare_domains(tmp_path / "c", {"abc": ["abcabc " * 30] * 5, "text": ["the quick brown fox, 42 lazy dogs!"] * 5},
                    val_fraction=0.2)
    out = tmp_path / "mix.yaml"
    res = _invoke("entropy", tmp_path / "c", "--seq-len", "64", "--out", out)
    assert res.exit_code == 0, res.output
    assert "CE" in res.output and out.is_file()
    from mixlab.mixture import load_mixture_or_schedule

    mix = load_mixture_or_schedule(out)
    assert mix["text"] > mix["abc"]
