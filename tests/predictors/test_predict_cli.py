"""`mixlab predict` / `mixlab propose` on CSVs shaped like RegMix's, and on the real RegMix files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mixlab.cli.main import build_app
from mixlab.predictors import get_predictor, spearman
from mixlab.predictors.data import load_sweep, read_table

torch.set_num_threads(1)

REGMIX = Path(__file__).resolve().parents[3] / "shared" / "data" / "regmix"
DOMS = ["train_web", "train_code", "train_math"]
LOSSES = ["metric/web_val_loss", "metric/code_val_loss"]


def law(X):
    return np.column_stack([2 + np.exp(-2 * X[:, 0] + 0.3 * X[:, 1]), 1.5 + np.exp(-2.5 * X[:, 1] + 0.2 * X[:, 2])])


def write(path, header, rows, index=None):
    lines = [",".join(["index", *header])]
    for i, r in enumerate(rows):
        lines.append(",".join([str(index[i] if index else i + 1), *(f"{v:.6f}" for v in r)]))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    X, Xt = rng.dirichlet(np.ones(3), 40), rng.dirichlet(np.ones(3), 10)
    write(tmp_path / "mix.csv", DOMS, X)
    write(tmp_path / "loss.csv", LOSSES, law(X))
    write(tmp_path / "test.csv", DOMS, Xt, index=list(range(100, 110)))
    return tmp_path, Xt


def test_predict_writes_index_and_prediction(files):
    d, Xt = files
    res = CliRunner().invoke(build_app(), [
        "predict", "--train-mixtures", str(d / "mix.csv"), "--train-losses", str(d / "loss.csv"),
        "--target", LOSSES[1], "--test-mixtures", str(d / "test.csv"), "--predictor", "dml", "--out",
        str(d / "preds.csv"), "--cv", "4"])
    assert res.exit_code == 0, res.output
    out = read_table(d / "preds.csv")
    assert out.columns == ["prediction"] and out.index == [str(i) for i in range(100, 110)]
    np.testing.assert_allclose(out.values[:, 0], law(Xt)[:, 1], rtol=1e-3)


def test_predict_reorders_test_columns_by_name_and_rejects_mismatches(files, tmp_path):
    d, Xt = files
    write(d / "test_perm.csv", DOMS[::-1], Xt[:, ::-1])
    args = ["predict", "--train-mixtures", str(d / "mix.csv"), "--train-losses", str(d / "loss.csv"),
            "--target", LOSSES[0], "--predictor", "loglinear"]
    a = CliRunner().invoke(build_app(), [*args, "--test-mixtures", str(d / "test.csv"), "--out", str(d / "a.csv")])
    b = CliRunner().invoke(build_app(), [*args, "--test-mixtures", str(d / "test_perm.csv"), "--out", str(d / "b.csv")])
    assert a.exit_code == 0 and b.exit_code == 0
    np.testing.assert_allclose(read_table(d / "a.csv").values, read_table(d / "b.csv").values)
    write(d / "bad.csv", ["train_web", "train_code", "train_books"], Xt)
    with pytest.raises(SystemExit):
        from mixlab.cli.main import main

        main([*args, "--test-mixtures", str(d / "bad.csv"), "--out", str(d / "c.csv")])
    res = CliRunner().invoke(build_app(), [*args, "--test-mixtures", str(d / "bad.csv"), "--out", str(d / "c.csv")])
    assert "do not match the training domains" in str(res.exception)
    res = CliRunner().invoke(build_app(), [*args[:-4], "--target", "nope", "--test-mixtures", str(d / "test.csv"),
                                           "--out", str(d / "c.csv")])
    assert "no loss column 'nope'" in str(res.exception)


def test_propose_saves_a_valid_mixture_within_bounds(files):
    d, _ = files
    out = d / "best.yaml"
    res = CliRunner().invoke(build_app(), [
        "propose", "--train-mixtures", str(d / "mix.csv"), "--train-losses", str(d / "loss.csv"),
        "--target", f"{LOSSES[0]}=1", "--target", f"{LOSSES[1]}=1", "--predictor", "dml",
        "--upper", "train_web=0.4", "--available", "train_web=1e9", "--available", "train_code=1e6",
        "--available", "train_math=1e9", "--tokens", "4e6", "--max-epochs", "1", "--samples", "3000",
        "--top-k", "16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    mix = yaml.safe_load(out.read_text())["mixture"]
    assert abs(sum(mix.values()) - 1) < 1e-6
    assert mix["train_web"] <= 0.4 + 1e-6 and mix["train_code"] <= 0.25 + 1e-6
    # web and code both lower their own loss: the optimum puts both at their caps
    assert mix["train_web"] == pytest.approx(0.4, abs=0.02) and mix["train_code"] == pytest.approx(0.25, abs=0.02)
    res = CliRunner().invoke(build_app(), [
        "propose", "--train-mixtures", str(d / "mix.csv"), "--train-losses", str(d / "loss.csv"),
        "--max-epochs", "1", "--out", str(out)])
    assert "availability cap needs" in str(res.exception)


@pytest.mark.skipif(not REGMIX.is_dir(), reason="RegMix data not found at ../shared/data/regmix")
def test_regmix_data_default_predictor_beats_lightgbm_at_102_runs():
    mix, loss = load_sweep(REGMIX / "train_mixture_1m.csv", REGMIX / "train_pile_loss_1m.csv")
    tmix, tloss = load_sweep(REGMIX / "test_mixture_1m.csv", REGMIX / "test_pile_loss_1m.csv")
    target = "metric/the_pile_pile_cc_val_loss"
    idx = sorted(random.Random(0).sample(range(512), 102))
    y, yt = loss.column(target), tloss.column(target)
    scores = {}
    for name in ("lightgbm", "mixlab"):
        p = get_predictor(name).fit(mix.values[idx], y[idx], domains=mix.columns, targets=[target])
        scores[name] = spearman(yt, p.predict(tmix.values))
    assert scores["mixlab"] > 0.985 and scores["mixlab"] > scores["lightgbm"] + 0.02


def test_propose_writes_cross_validated_predictions_the_report_shows(files):
    from mixlab.report.data import load_report_input
    from mixlab.report.html import write_report

    d, _ = files
    report = d / "report"
    res = CliRunner().invoke(build_app(), [
        "propose", "--train-mixtures", str(d / "mix.csv"), "--train-losses", str(d / "loss.csv"),
        "--predictor", "dml", "--samples", "2000", "--top-k", "16", "--out", str(d / "best.yaml"),
        "--report-dir", str(report)])
    assert res.exit_code == 0, res.output
    data = load_report_input(report)
    p = data.predictions
    assert p is not None and len(p["true"]) == 40 * len(LOSSES)
    assert set(p["model"]) == {f"dml: {c}" for c in LOSSES}
    # out-of-fold predictions of a law that matches the data's form rank the runs almost perfectly
    assert spearman(p["true"], p["predicted"]) > 0.95
    assert "predicted vs true scatter" in write_report(report).read_text()
