"""Each predictor recovers a known synthetic law; metrics, cross-validation and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from mixlab.errors import ConfigError, DataError
from mixlab.predictors import NotFittedError, cross_validate, get_predictor, metrics, spearman

torch.set_num_threads(1)

M = 4
DOMAINS = ["web", "code", "math", "books"]


def mixtures(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(M) * 1.5, size=n)


def dml_law(X: np.ndarray) -> np.ndarray:
    t = np.array([-1.5, -0.4, 0.3, -0.8])
    return 2.0 + 1.5 * np.exp(X @ t)


def logmix_law(X: np.ndarray) -> np.ndarray:
    t = np.array([-0.10, -0.03, 0.0, -0.05])
    u = np.array([0.2, -0.3, 0.1, 0.0])
    return 1.2 + np.exp(0.8 + np.log(X + 1e-3) @ t + X @ u)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(b)))


def test_linear_recovers_linear_law():
    X, Xt = mixtures(40, 0), mixtures(30, 1)
    law = lambda X: 3.0 + X @ np.array([-1.0, 0.5, 0.2, -0.3])  # noqa: E731
    p = get_predictor("linear").fit(X, law(X))
    assert rel_err(p.predict(Xt), law(Xt)) < 1e-3


def test_loglinear_recovers_power_law():
    X, Xt = mixtures(50, 0), mixtures(30, 1)
    law = lambda X: np.exp(1.0 + np.log(X + 1e-3) @ np.array([-0.05, -0.02, 0.01, 0.0]) + X @ np.array([0.1, 0, 0, 0.2]))  # noqa: E731
    p = get_predictor("loglinear").fit(X, law(X))
    assert rel_err(p.predict(Xt), law(Xt)) < 1e-3


def test_dml_recovers_data_mixing_law_parameters():
    X, Xt = mixtures(40, 0), mixtures(30, 1)
    p = get_predictor("dml").fit(X, dml_law(X), domains=DOMAINS)
    assert rel_err(p.predict(Xt), dml_law(Xt)) < 1e-4
    # the law is identifiable up to the simplex (t + const, k * exp(-const)): check the exponent differences
    t = np.array([p.coef_[0]["t"][d] for d in DOMAINS])
    np.testing.assert_allclose(t - t.mean(), np.array([-1.5, -0.4, 0.3, -0.8]) - np.mean([-1.5, -0.4, 0.3, -0.8]), atol=1e-2)
    assert p.coef_[0]["c"] == pytest.approx(2.0, abs=1e-2)


def test_logmix_recovers_its_law():
    X, Xt = mixtures(60, 0), mixtures(30, 1)
    p = get_predictor("logmix").fit(X, logmix_law(X))
    assert rel_err(p.predict(Xt), logmix_law(Xt)) < 1e-3


def test_bimix_recovers_fixed_step_power_law_and_matches_targets_by_name():
    X, Xt = mixtures(30, 0), mixtures(20, 1)
    A = np.array([3.0, 2.5])
    alpha = np.array([0.12, 0.3])
    Y = A * X[:, [0, 2]] ** -alpha
    p = get_predictor("bimix").fit(X, Y, domains=["train_web", "train_code", "train_math", "train_books"],
                                   targets=["metric/web_val_loss", "metric/math_val_loss"])
    np.testing.assert_allclose(p.alpha_, alpha, rtol=1e-6)
    assert rel_err(p.predict(Xt), A * Xt[:, [0, 2]] ** -alpha) < 1e-6
    with pytest.raises(DataError, match="target_domains"):
        get_predictor("bimix").fit(X, Y[:, 0], domains=DOMAINS, targets=["perplexity"])


@pytest.mark.parametrize("name", ["gp", "mixlab"])
def test_gp_and_default_recover_dml_law(name):
    X, Xt = mixtures(40, 0), mixtures(50, 1)
    y = dml_law(X) + np.random.default_rng(2).normal(0, 1e-3, len(X))
    p = get_predictor(name).fit(X, y)
    pred = p.predict(Xt)
    assert rel_err(pred, dml_law(Xt)) < 0.02
    assert spearman(pred, dml_law(Xt)) > 0.99


@pytest.mark.parametrize("name", ["lightgbm", "tikmix-m"])
def test_trees_rank_a_smooth_law(name):
    X, Xt = mixtures(300, 0), mixtures(100, 1)
    params = {"n_estimators": 300} if name == "lightgbm" else {}
    p = get_predictor(name, **params).fit(X, dml_law(X))
    assert spearman(p.predict(Xt), dml_law(Xt)) > 0.95


def test_multi_output_shapes_and_default():
    X = mixtures(30, 0)
    Y = np.column_stack([dml_law(X), logmix_law(X)])
    p = get_predictor("loglinear").fit(X, Y, targets=["a", "b"])
    assert p.predict(X[:5]).shape == (5, 2)
    assert get_predictor().fit(X, Y[:, 0]).predict(X[:3]).shape == (3,)
    assert get_predictor("best").name == "mixlab"


def test_metrics_match_scipy_and_cross_validation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:10] = b[0]  # ties
    m = metrics(a, b)
    assert m["spearman"] == pytest.approx(spearmanr(a, b)[0])
    assert m["pearson"] == pytest.approx(pearsonr(a, b)[0])
    assert m["mae"] == pytest.approx(np.mean(np.abs(a - b)))
    X = mixtures(40, 0)
    res = cross_validate(get_predictor("dml"), X, dml_law(X), folds=4)
    assert len(res.folds) == 4 and res.oof.shape == (40,)
    assert res.overall["spearman"] > 0.999 and res.mean["mae"] < 1e-3
    with pytest.raises(ConfigError, match="folds"):
        cross_validate(get_predictor("linear"), X, dml_law(X), folds=1)


def test_bad_inputs_give_clear_errors():
    X = mixtures(30, 0)
    y = dml_law(X)
    with pytest.raises(NotFittedError, match="not fitted"):
        get_predictor("linear").predict(X)
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(DataError, match=r"NaN.*rows \[3\]"):
        get_predictor("linear").fit(X, y_nan)
    with pytest.raises(DataError, match="do not sum to 1"):
        get_predictor("linear").fit(X * 2, y)
    with pytest.raises(DataError, match="negative"):
        get_predictor("linear").fit(X - 0.5, y)
    with pytest.raises(DataError, match="at least 6 runs"):
        get_predictor("dml").fit(X[:5], y[:5])
    with pytest.raises(DataError, match="4 domains"):
        get_predictor("linear").fit(X, y, domains=DOMAINS).predict(mixtures(3, 1)[:, :3] / mixtures(3, 1)[:, :3].sum(1, keepdims=True))
    with pytest.raises(DataError, match="rows of losses"):
        get_predictor("linear").fit(X, y[:-1])
    with pytest.raises(ConfigError, match="unknown predictor"):
        get_predictor("xgboost")
    with pytest.raises(ConfigError, match="no parameter"):
        get_predictor("linear").set_params(depth=3)
