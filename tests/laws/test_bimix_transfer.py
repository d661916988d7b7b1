"""BiMix + transfer (effective proportion): tau recovery, unseen mixtures, tau = 0 data, not fitted."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.errors import DataError
from mixlab.laws import BiMixModel, BiMixTransferModel, NotFittedError

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
