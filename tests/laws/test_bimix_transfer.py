"""BiMix + transfer (effective proportion): tau recovery, unseen mixtures, tau = 0 data, not fitted."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.errors import DataError
from mixlab.laws import BiMixModel, BiMixTransferModel, NotFittedError
from mixlab.laws.bimix import BiMixLaw
from mixlab.mixture import MixtureConstraints

DOMS = ["a", "b", "c"]
A = np.array([2.0, 3.0, 1.5])
ALPHA = np.array([0.1, 0.15, 0.08])
B = np.array([5.0, 4.0, 6.0])
BETA = np.array([0.5, 0.4, 0.6])
TAU = np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 0.5], [0.2, 0.0, 0.0]])


def _law(R, s, tau):
    r_eff = R + R @ tau.T
    return A * r_eff**-ALPHA * (B * np.asarray(s, dtype=float).reshape(-1, 1) ** -BETA + 1.0)


def _data(tau, seed=0, noise=0.003, n_runs=20, n_steps=10):
    rng = np.random.default_rng(seed)
    R = np.repeat(rng.dirichlet(np.ones(3), n_runs), n_steps, axis=0)
    s = np.tile(np.geomspace(100, 5000, n_steps), n_runs)
    Y = _law(R, s, tau) * np.exp(rng.normal(0, noise, (R.shape[0], 3)))
    return R, s, Y


def test_recovers_tau_and_predicts_unseen_mixtures():
    R, s, Y = _data(TAU)
    m = BiMixTransferModel().fit(R, s, Y, domains=DOMS)
    assert m.tau_.shape == (3, 3)
    assert np.allclose(np.diag(m.tau_), 0.0)
    assert np.allclose(m.tau_, TAU, atol=0.03)
    assert np.allclose(m.alpha_, ALPHA, rtol=0.1) and np.allclose(m.beta_, BETA, rtol=0.1)
    assert m.params_["a"]["tau"]["b"] == pytest.approx(0.3, abs=0.03)
    R_new = np.random.default_rng(7).dirichlet(np.ones(3), 10)
    truth = _law(R_new, np.full(10, 20000.0), TAU)  # unseen mixtures, 4x the last fitted step
    pred = m.predict(R_new, 20000)
    assert np.max(np.abs(pred / truth - 1)) < 0.01
    # plain BiMix cannot express the transfer and is clearly worse on the same task
    plain = BiMixModel().fit(R, s, Y, domains=DOMS).predict(R_new, 20000)
    assert np.max(np.abs(plain / truth - 1)) > 3 * np.max(np.abs(pred / truth - 1))


def test_share_beta_and_dict_inputs():
    R, s, Y = _data(TAU, seed=1)
    mixes = [dict(zip(DOMS, r, strict=True)) for r in R]
    losses = [dict(zip(DOMS, y, strict=True)) for y in Y]
    m = BiMixTransferModel(share_beta=True, step_weight=1.0).fit(mixes, s, losses)
    assert m.loss_domains_ == DOMS and m.shared_beta_ == pytest.approx(float(np.mean(BETA)), rel=0.3)
    assert np.allclose(m.beta_, m.shared_beta_)
    assert m.predict({"a": 0.2, "b": 0.5, "c": 0.3}, 1000).shape == (1, 3)


def test_tau_zero_data_stays_close_to_plain_bimix():
    R, s, Y = _data(np.zeros((3, 3)), seed=2)
    m = BiMixTransferModel().fit(R, s, Y, domains=DOMS)
    plain = BiMixModel().fit(R, s, Y, domains=DOMS)
    assert np.max(m.tau_) < 0.02
    R_new = np.random.default_rng(3).dirichlet(np.ones(3), 40)
    R_new = R_new[R_new.min(axis=1) >= 0.05][:10]  # within the fitted proportions: a tiny tau is
    # invisible there, but not at a proportion extrapolated towards 0
    for step in (3000, 20000):
        assert np.max(np.abs(m.predict(R_new, step) / plain.predict(R_new, step) - 1)) < 0.005
    for j, d in enumerate(DOMS):
        assert m.base_laws_[d].alpha_ == pytest.approx(plain.laws_[d].alpha_)
        assert m.alpha_[j] == pytest.approx(ALPHA[j], rel=0.15)


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError):
        BiMixTransferModel().predict([[0.2, 0.3, 0.5]], 1000)


def test_loss_domain_without_proportion_is_an_error():
    R, s, Y = _data(TAU)
    with pytest.raises(DataError, match="no proportion column"):
        BiMixTransferModel().fit(R, s, Y, domains=DOMS, loss_domains=["a", "b", "z"])


def _objective(R, tau, c, step):
    return _law(R, np.full(len(R), step), tau) @ c


def test_optimize_matches_plain_bimix_at_tau_zero_and_beats_a_dense_search():
    R, s, Y = _data(TAU, seed=4)
    m = BiMixTransferModel().fit(R, s, Y, domains=DOMS)
    c = np.array([0.5, 0.3, 0.2])
    weights = dict(zip(DOMS, c, strict=True))
    best = m.optimize(20000, weights=weights).to_array(DOMS)
    # the fitted law's own objective at the optimum is below every point of a dense random search
    grid = np.random.default_rng(0).dirichlet(np.ones(3), 20000)
    pred = m.predict(grid, 20000) @ c
    assert m.predict(best[None], 20000)[0] @ c <= pred.min() + 1e-9
    # and close to the true law's optimum (the law was fitted from noisy samples)
    true_best = grid[np.argmin(_objective(grid, TAU, c, 20000))]
    assert np.abs(best - true_best).max() < 0.05
    # with tau = 0 the transfer law is BiMix, and its optimum is BiMix's closed form
    m.tau_[:] = 0.0
    plain = BiMixModel()
    plain.domains_, plain.loss_domains_ = DOMS, DOMS
    plain.laws_ = {d: BiMixLaw.from_params(m.A_[j], m.alpha_[j], m.B_[j], m.beta_[j]) for j, d in enumerate(DOMS)}
    assert np.allclose(m.optimize(20000, weights=weights).to_array(DOMS), plain.closed_form(20000, weights), atol=1e-5)


def test_optimize_respects_bounds_and_moves_weight_to_the_domain_others_learn_from():
    R, s, Y = _data(TAU, seed=5)
    m = BiMixTransferModel().fit(R, s, Y, domains=DOMS)
    cons = MixtureConstraints(tuple(DOMS), np.array([0.0, 0.0, 0.25]), np.array([0.5, 1.0, 1.0]))
    w = m.optimize(20000, constraints=cons).to_array(DOMS)
    assert w.sum() == pytest.approx(1.0) and w[0] <= 0.5 + 1e-9 and w[2] >= 0.25 - 1e-9
    # b's loss gains from c (tau 0.5): more transfer into b makes c worth more than without it
    no_transfer = BiMixTransferModel().fit(R, s, Y, domains=DOMS)
    no_transfer.tau_[:] = 0.0
    assert m.optimize(20000).to_array(DOMS)[2] > no_transfer.optimize(20000).to_array(DOMS)[2]


def test_too_few_distinct_mixtures_is_a_clear_error():
    R, s, Y = _data(TAU, n_runs=4)
    with pytest.raises(DataError, match="needs at least 5"):
        BiMixTransferModel().fit(R, s, Y, domains=DOMS)
