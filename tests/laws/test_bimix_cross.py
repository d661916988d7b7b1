"""BiMix + cross-domain term: parameter recovery on synthetic curves, t = 0 data, optimum, state, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixlab.errors import ConfigError, DataError, NotFittedError
from mixlab.laws import BiMixCrossModel, BiMixModel
from mixlab.mixture import MixtureConstraints

DOMS = ["a", "b", "c"]
A = np.array([2.0, 3.0, 1.5])
ALPHA = np.array([0.1, 0.15, 0.08])
B = np.array([5.0, 4.0, 6.0])
BETA = np.array([0.5, 0.4, 0.6])
# row = loss domain, column = mixture domain, own column 0: b's loss falls with c's share, a's rises with b's
T = np.array([[0.0, 0.3, 0.0], [0.0, 0.0, -0.4], [-0.25, 0.0, 0.0]])


def _law(R, s, t):
    s = np.asarray(s, dtype=float).reshape(-1, 1)
    return A * R**-ALPHA * np.exp(R @ t.T) * (B * s**-BETA + 1.0)


def _data(t, seed=0, noise=0.003, n_runs=20, n_steps=10):
    rng = np.random.default_rng(seed)
    mixes = np.maximum(rng.dirichlet(np.ones(3), n_runs), 0.02)
    R = np.repeat(mixes / mixes.sum(axis=1, keepdims=True), n_steps, axis=0)
    s = np.tile(np.geomspace(100, 5000, n_steps), n_runs)
    Y = _law(R, s, t) * np.exp(rng.normal(0, noise, (R.shape[0], 3)))
    return R, s, Y


def test_recovers_the_cross_terms_and_predicts_unseen_mixtures():
    R, s, Y = _data(T)
    m = BiMixCrossModel().fit(R, s, Y, domains=DOMS)
    assert m.t_.shape == (3, 3) and np.allclose(np.diag(m.t_), 0.0)
    assert np.allclose(m.t_, T, atol=0.05)
    assert np.allclose(m.alpha_, ALPHA, rtol=0.15) and np.allclose(m.beta_, BETA, rtol=0.1)
    assert m.params_["b"]["t"]["c"] == pytest.approx(-0.4, abs=0.05)
    R_new = np.random.default_rng(7).dirichlet(np.ones(3) * 2, 10)
    truth = _law(R_new, np.full(10, 20000.0), T)  # unseen mixtures, 4x the last fitted step
    pred = m.predict(R_new, 20000)
    assert np.max(np.abs(pred / truth - 1)) < 0.01
    # plain BiMix cannot express the cross terms and is clearly worse on the same task
    plain = BiMixModel().fit(R, s, Y, domains=DOMS).predict(R_new, 20000)
    assert np.max(np.abs(plain / truth - 1)) > 3 * np.max(np.abs(pred / truth - 1))


def test_t_zero_data_gives_small_cross_terms_and_bimix_predictions():
    R, s, Y = _data(np.zeros((3, 3)), seed=2)
    m = BiMixCrossModel().fit(R, s, Y, domains=DOMS)
    plain = BiMixModel().fit(R, s, Y, domains=DOMS)
    assert np.max(np.abs(m.t_)) < 0.03
    R_new = np.random.default_rng(3).dirichlet(np.ones(3) * 3, 10)
    for step in (3000, 20000):
        assert np.max(np.abs(m.predict(R_new, step) / plain.predict(R_new, step) - 1)) < 0.005


def test_share_beta_dict_inputs_and_state_round_trip():
    R, s, Y = _data(T, seed=1)
    mixes = [dict(zip(DOMS, r, strict=True)) for r in R]
    losses = [dict(zip(DOMS, y, strict=True)) for y in Y]
    m = BiMixCrossModel(share_beta=True, step_weight=1.0).fit(mixes, s, losses)
    assert m.loss_domains_ == DOMS and m.shared_beta_ == pytest.approx(float(np.mean(BETA)), rel=0.3)
    assert np.allclose(m.beta_, m.shared_beta_)
    again = BiMixCrossModel.from_state(json.loads(json.dumps(m.to_state())))
    R_new = np.random.default_rng(5).dirichlet(np.ones(3), 6)
    np.testing.assert_array_equal(again.predict(R_new, 7000.0), m.predict(R_new, 7000.0))
    assert again.params_ == m.params_


def test_zero_own_share_predicts_inf_and_is_left_out_of_the_fit():
    R, s, Y = _data(T, seed=6)
    R[:10] = [0.0, 0.5, 0.5]
    Y[:10] = _law(np.full((10, 3), 1 / 3), s[:10], T)  # a's loss there is not the law's (r_a = 0)
    with pytest.warns(UserWarning, match="proportion 0 excluded"):
        m = BiMixCrossModel().fit(R, s, Y, domains=DOMS)
    pred = m.predict([[0.0, 0.4, 0.6]], 1000)
    assert np.isinf(pred[0, 0]) and np.all(np.isfinite(pred[0, 1:]))


def _objective(R, t, c, step):
    return _law(R, np.full(len(R), step), t) @ c


def test_optimize_is_the_global_optimum_and_bimix_closed_form_at_t_zero():
    R, s, Y = _data(T, seed=4)
    m = BiMixCrossModel().fit(R, s, Y, domains=DOMS)
    c = np.array([0.5, 0.3, 0.2])
    weights = dict(zip(DOMS, c, strict=True))
    best = m.optimize(20000, weights=weights).to_array(DOMS)
    grid = np.random.default_rng(0).dirichlet(np.ones(3), 20000)
    assert m.predict(best[None], 20000)[0] @ c <= (m.predict(grid, 20000) @ c).min() + 1e-9
    true_best = grid[np.argmin(_objective(grid, T, c, 20000))]
    assert np.abs(best - true_best).max() < 0.05
    m.t_[:] = 0.0
    plain = BiMixModel(n_init=2).fit(R, s, Y, domains=DOMS)
    for j, d in enumerate(DOMS):
        law = plain.laws_[d]
        law._set_fitted(np.log([m.A_[j], m.alpha_[j], m.B_[j], m.beta_[j]]), np.zeros((4, 4)))
    assert np.allclose(m.optimize(20000, weights=weights).to_array(DOMS), plain.closed_form(20000, weights), atol=1e-5)
    cons = MixtureConstraints(tuple(DOMS), np.array([0.0, 0.0, 0.25]), np.array([0.5, 1.0, 1.0]))
    w = m.optimize(20000, constraints=cons).to_array(DOMS)
    assert w.sum() == pytest.approx(1.0) and w[0] <= 0.5 + 1e-9 and w[2] >= 0.25 - 1e-9


def test_errors_are_clear():
    with pytest.raises(NotFittedError):
        BiMixCrossModel().predict([[0.2, 0.3, 0.5]], 1000)
    R, s, Y = _data(T, n_runs=4)
    with pytest.raises(DataError, match="needs at least 5"):
        BiMixCrossModel().fit(R, s, Y, domains=DOMS)
    R, s, Y = _data(T)
    with pytest.raises(DataError, match="no proportion column"):
        BiMixCrossModel().fit(R, s, Y, domains=DOMS, loss_domains=["a", "b", "z"])
    with pytest.raises(ConfigError, match="t_max"):
        BiMixCrossModel(t_max=0.0).fit(R, s, Y, domains=DOMS)
