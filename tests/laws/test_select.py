"""Law selection by leave-runs-out cross-validation (mixlab.laws.select) and the law registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixlab.errors import ConfigError, DataError, NotFittedError
from mixlab.laws.registry import REGISTRY, LongTable, fit_spec, run_step_weights
from mixlab.laws.select import LawSelector, fit_law, run_folds

DOMS = ["a", "b", "c"]
STEPS = [200.0, 400.0, 800.0, 1600.0, 3200.0]


def _mixtures(n: int, seed: int = 0) -> np.ndarray:
    w = np.maximum(np.random.default_rng(seed).dirichlet(np.ones(3), n), 0.03)
    return w / w.sum(axis=1, keepdims=True)


def _bimix_loss(R, s, E=None):
    A, alpha, B, beta = np.array([3.0, 2.0, 2.5]), np.array([0.08, 0.15, 0.1]), np.array([30.0, 60.0, 40.0]), np.array([0.5, 0.45, 0.55])
    r = R if E is None else R @ E.T
    return A * r**-alpha * (B * s[:, None] ** -beta + 1)


def _cross_loss(R, s):
    t = np.array([[0.0, 0.6, -0.5], [-0.7, 0.0, 0.0], [0.0, -0.8, 0.0]])  # own column 0
    return _bimix_loss(R, s) * np.exp(R @ t.T)


def _dml_loss(R, s):
    t = np.array([[-1.2, 0.8, 0.4], [0.6, -1.4, 0.8], [0.3, 0.5, -0.8]])
    return 2.0 + 1.5 * np.exp(R @ t.T) + 20 * s[:, None] ** -0.5


def _table(kind: str, n_runs: int = 14, noise: float = 0.001, seed: int = 0) -> LongTable:
    mixes = _mixtures(n_runs, seed)
    R = np.repeat(mixes, len(STEPS), axis=0)
    s = np.tile(STEPS, n_runs)
    if kind == "bimix":
        Y = _bimix_loss(R, s)
    elif kind == "bimix-transfer":
        Y = _bimix_loss(R, s, E=np.array([[1.0, 0.6, 0.0], [0.0, 1.0, 0.8], [0.7, 0.0, 1.0]]))
    elif kind == "bimix-cross":
        Y = _cross_loss(R, s)
    else:
        Y = _dml_loss(R, s)
    Y = Y * np.exp(np.random.default_rng(seed + 1).normal(0, noise, Y.shape))
    return LongTable.from_arrays(R, s, Y, domains=DOMS, runs=np.repeat(np.arange(n_runs), len(STEPS)))


@pytest.mark.parametrize("truth", ["bimix", "bimix-transfer", "bimix-cross", "dml"])
def test_auto_picks_the_law_that_generated_the_data(truth):
    sel = fit_law(_table(truth), law="auto", n_folds=4, search=False)
    scores = {r["law"]: r["mre"] for r in sel.cv_}
    assert sel.law_ == truth, scores
    assert set(scores) == set(REGISTRY)
    assert sel.selected_by_.startswith("cross-validation")


def test_fixed_law_still_searches_its_settings_and_fixed_settings_are_kept():
    sel = fit_law(_table("bimix", n_runs=8), law="bimix", fixed={"run_effects": False, "step_weight": 0.0}, n_folds=3)
    assert sel.law_ == "bimix" and {r["law"] for r in sel.cv_} == {"bimix"}
    tried = {(r["settings"]["min_step_frac"], r["settings"]["share_beta"]) for r in sel.cv_}
    assert {(0.0, False), (0.15, False), (0.3, False)} <= tried and len(tried) >= 4
    assert all(r["settings"]["run_effects"] is False and r["settings"]["step_weight"] == 0.0 for r in sel.cv_)
    with pytest.raises(ConfigError, match="unknown law setting"):
        fit_law(_table("bimix", n_runs=8), law="bimix", fixed={"tau_max": 3})
    with pytest.raises(ConfigError, match="unknown law"):
        fit_law(_table("bimix", n_runs=8), law="regmix")


def test_cv_never_reads_the_held_out_run():
    """A run's out-of-fold prediction does not change when that run's own losses change."""
    table = _table("bimix", n_runs=9)
    settings = {"min_step_frac": 0.0, "step_weight": 0.0, "share_beta": False, "run_effects": False}
    sel = LawSelector(law="bimix", fixed=settings, n_folds=3).fit(table)
    held = sel.folds_[0][0]
    Y = table.Y.copy()
    Y[table.runs == held] *= 1.3
    moved = LongTable(table.R, table.steps, Y, table.runs, table.domains, table.loss_domains)
    sel2 = LawSelector(law="bimix", fixed=settings, n_folds=3).fit(moved)
    assert sel2.folds_ == sel.folds_
    np.testing.assert_array_equal(sel2.oof_[held], sel.oof_[held])
    assert sel2.cv_[0]["mre"] != sel.cv_[0]["mre"]


@pytest.mark.parametrize("law", list(REGISTRY))
def test_saved_fit_reloads_and_predicts_identically(law):
    table = _table("bimix-transfer", n_runs=9)
    sel = fit_law(table, law=law, n_folds=3, search=False)
    obj = json.loads(json.dumps(sel.to_dict()))
    again = LawSelector.from_dict(obj)
    R = _mixtures(4, seed=7)
    for step in (1600.0, 10000.0):
        np.testing.assert_array_equal(again.predict(R, step), sel.predict(R, step))
    assert again.optimize(3200.0).to_dict() == pytest.approx(sel.optimize(3200.0).to_dict())
    with pytest.raises(DataError, match="not a saved mixlab law fit"):
        LawSelector.from_dict({"law": law})
    with pytest.raises(NotFittedError):
        LawSelector().predict(R, 100.0)


def test_runs_with_one_or_two_steps_and_zero_shares():
    table = _table("bimix", n_runs=10)
    keep = np.ones(table.R.shape[0], bool)
    for u, n in ((0, 1), (1, 1), (2, 2)):  # three short runs: one or two evaluations
        rows = np.nonzero(table.runs == u)[0]
        keep[rows[n:]] = False
    R = table.R.copy()
    R[table.runs == 3] = [0.0, 0.5, 0.5]  # a run without domain a
    short = LongTable(R[keep], table.steps[keep], table.Y[keep], table.runs[keep], DOMS, DOMS)
    sel = fit_law(short, n_folds=3)
    assert sel.law_ in REGISTRY and np.all(np.isfinite(sel.predict(_mixtures(3), 3200.0)))
    # a warm-up cut that leaves some runs a single step (steps <= 0.3 x last) is scored, not a crash
    rows = [r for r in sel.cv_ if r["law"] == "bimix" and r["settings"]["min_step_frac"] == 0.3]
    assert rows and (rows[0]["error"] is None or "need" in rows[0]["error"])


def test_every_run_at_one_step_falls_back_to_the_data_mixing_law():
    table = _table("dml", n_runs=10)
    last = table.steps == STEPS[-1]
    one = LongTable(table.R[last], table.steps[last], table.Y[last], table.runs[last], DOMS, DOMS)
    sel = fit_law(one, n_folds=3)
    assert sel.law_ == "dml"
    errors = [r["error"] for r in sel.cv_ if r["law"] == "bimix"]
    assert errors and all("distinct steps" in e for e in errors)


def test_too_few_runs_is_a_clear_error():
    table = _table("bimix", n_runs=4).take_runs([0, 1, 2])
    with pytest.raises(DataError, match=r"needs at least 5 runs with 3 mixture domains, the table has 3"):
        fit_law(table, law="bimix-transfer")
    one_run = _table("bimix", n_runs=4).take_runs([0])
    with pytest.raises(DataError, match="no mixing law can be fitted"):
        fit_law(one_run, law="bimix-transfer")


def test_late_point_weight_is_relative_to_each_runs_own_end():
    s = np.array([1.0, 2.0, 4.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0])
    runs = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])
    t = LongTable.from_arrays(np.full((9, 2), 0.5), s, np.ones((9, 1)) * 2, domains=["x", "y"], loss_domains=["x"], runs=runs)
    w = run_step_weights(t, 1.0)
    # each run keeps its number of points as its total weight, whatever its length
    assert w[runs == 0].sum() == pytest.approx(3) and w[runs == 1].sum() == pytest.approx(6)
    assert w[2] == pytest.approx(4 / (7 / 3)) and w[-1] == pytest.approx(320 / 105)
    assert np.all(np.diff(w[runs == 1]) > 0)
    assert run_step_weights(t, 0.0) is None


def test_folds_are_whole_runs_dealt_from_a_seeded_shuffle():
    folds = run_folds(26, 5, seed=1)
    assert sorted(sum(folds, [])) == list(range(26)) and [len(f) for f in folds] == [6, 5, 5, 5, 5]
    assert run_folds(1, 5, 1) == [] and len(run_folds(3, 5, 1)) == 3


def test_fit_spec_applies_the_warm_up_cut_from_the_median_run_length():
    table = _table("bimix", n_runs=6)
    model = fit_spec(REGISTRY["bimix"], table, {"min_step_frac": 0.15})
    assert model.min_step == pytest.approx(0.15 * 3200)
    assert all(law.n_points_ == 6 * 3 for law in model.laws_.values())  # steps 800, 1600, 3200 of 6 runs
