"""BiMix law: parameter recovery, extrapolation, uncertainty, zero proportions, optimiser."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.errors import DataError
from mixlab.laws.bimix import BiMixLaw, BiMixModel, NotFittedError
from mixlab.mixture import MixtureConstraints

TRUE = {"A": 2.0, "alpha": 0.08, "B": 5.0, "beta": 0.5}


def _samples(seed=0, noise=0.003, n_r=8, n_s=10):
    rng = np.random.default_rng(seed)
    law = BiMixLaw.from_params(**TRUE)
    r = np.repeat(rng.uniform(0.05, 0.9, n_r), n_s)
    s = np.tile(np.geomspace(100, 5000, n_s), n_r)
    y = law.predict(r, s) * np.exp(rng.normal(0, noise, r.size))
    return law, r, s, y


def test_recovers_synthetic_parameters_from_noisy_samples():
    true, r, s, y = _samples()
    law = BiMixLaw().fit(r, s, y)
    for k, v in TRUE.items():
        assert law.params_[k] == pytest.approx(v, rel=0.1), k
        assert law.stderr_[k] > 0
    assert law.r2_ > 0.99 and law.mre_ < 0.01
    # extrapolation to 4x the last observed step
    assert law.predict(0.3, 20000) == pytest.approx(true.predict(0.3, 20000), rel=0.01)


def test_gauge_folds_C_into_A_and_B():
    a = BiMixLaw.from_params(A=1.0, alpha=0.1, B=2.0, beta=0.3, C=4.0)
    b = BiMixLaw.from_params(A=4.0, alpha=0.1, B=0.5, beta=0.3, C=1.0)
    assert np.allclose(a.predict([0.2, 0.5], [10, 1000]), b.predict([0.2, 0.5], [10, 1000]))


def test_interval_covers_truth_delta_and_bootstrap():
    true, r, s, y = _samples(seed=1)
    law = BiMixLaw().fit(r, s, y)
    pred, lo, hi = law.predict_interval([0.2, 0.6], [8000, 8000], level=0.99)
    t = true.predict(np.array([0.2, 0.6]), 8000)
    assert np.all(lo < t) and np.all(t < hi) and np.all(lo < pred) and np.all(pred < hi)
    _, blo, bhi = law.predict_interval([0.4], [8000], method="bootstrap", n_boot=20, level=0.98)
    assert blo[0] < bhi[0]


def test_zero_proportion_points_excluded_with_warning():
    _, r, s, y = _samples()
    r = r.copy()
    r[:10] = 0.0
    with pytest.warns(UserWarning, match="proportion 0 excluded"):
        law = BiMixLaw().fit(r, s, y)
    assert law.n_excluded_ == 10 and law.n_points_ == r.size - 10
    assert np.isinf(law.predict(0.0, 100))


def test_too_few_points_is_a_clear_error():
    _, r, s, y = _samples()
    with pytest.raises(DataError, match="usable point"):
        BiMixLaw().fit(r[:4], s[:4], y[:4])
    with pytest.raises(DataError, match="same proportion"):
        BiMixLaw().fit(np.full(10, 0.3), s[:10], y[:10])
    with pytest.raises(DataError, match="NaN"):
        BiMixLaw().fit(r, s, np.where(np.arange(r.size) == 3, np.nan, y))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        BiMixLaw().predict(0.5, 10)
    with pytest.raises(NotFittedError):
        BiMixModel().predict([[0.5, 0.5]], 10)


def _model(domains=("a", "b", "c")):
    m = BiMixModel()
    m.domains_ = list(domains)
    m.loss_domains_ = list(domains)
    m.laws_ = {
        "a": BiMixLaw.from_params(A=2.0, alpha=0.05, B=3.0, beta=0.4),
        "b": BiMixLaw.from_params(A=3.0, alpha=0.15, B=1.0, beta=0.6),
        "c": BiMixLaw.from_params(A=1.5, alpha=0.30, B=8.0, beta=0.3),
    }
    return m


def test_closed_form_equals_numerical_optimum():
    m = _model()
    w = {"a": 0.2, "b": 0.5, "c": 0.3}
    cf = m.optimize(1000, weights=w, method="closed_form").to_array(m.domains_)
    num = m.optimize(1000, weights=w, method="numerical").to_array(m.domains_)
    assert np.allclose(cf, num, atol=1e-4)
    rng = np.random.default_rng(0)
    for cand in rng.dirichlet(np.ones(3), 200):
        assert m.objective(cf, 1000, w) <= m.objective(cand, 1000, w) + 1e-12


def test_bounds_switch_to_constrained_solver():
    m = _model()
    free = m.optimize(1000)
    assert m.optimize_method_ == "closed_form"
    i = int(np.argmax(free.to_array(m.domains_)))
    dom = m.domains_[i]
    cap = free[dom] * 0.5
    cons = MixtureConstraints.build(m.domains_, upper={dom: cap})
    bounded = m.optimize(1000, constraints=cons)
    assert m.optimize_method_ == "numerical"
    assert bounded[dom] == pytest.approx(cap, abs=1e-6)
    assert cons.satisfied(bounded.to_array(m.domains_))


def test_model_fit_predict_and_recover_optimum():
    true = _model()
    rng = np.random.default_rng(0)
    mixes = rng.dirichlet(np.ones(3) * 2, 8)
    steps = np.geomspace(50, 2000, 8)
    R = np.repeat(mixes, steps.size, axis=0)
    S = np.tile(steps, len(mixes))
    Y = true.predict(R, S) * np.exp(rng.normal(0, 0.002, (R.shape[0], 3)))
    fitted = BiMixModel().fit(R, S, Y, domains=["a", "b", "c"])
    q = rng.dirichlet(np.ones(3), 5)
    assert np.allclose(fitted.predict(q, 8000), true.predict(q, 8000), rtol=0.01)
    opt_t = true.optimize(8000).to_array(["a", "b", "c"])
    opt_f = fitted.optimize(8000).to_array(["a", "b", "c"])
    assert np.allclose(opt_t, opt_f, atol=0.03)
    rows = fitted.summary()
    assert [r["domain"] for r in rows] == ["a", "b", "c"] and all(r["r2"] > 0.99 for r in rows)


def test_loss_domain_without_proportion_is_an_error():
    with pytest.raises(DataError, match="own proportion"):
        BiMixModel().fit([{"a": 0.5, "b": 0.5}] * 6, [1, 2, 3, 4, 5, 6], [{"x": 1.0}] * 6)


def test_share_beta_ties_the_step_exponent_and_recovers_it():
    rng = np.random.default_rng(3)
    truth = {"a": BiMixLaw.from_params(A=2.0, alpha=0.08, B=5.0, beta=0.5),
             "b": BiMixLaw.from_params(A=3.0, alpha=0.03, B=2.0, beta=0.5)}
    ra = np.repeat(rng.uniform(0.1, 0.9, 8), 10)
    R = np.stack([ra, 1 - ra], axis=1)
    S = np.tile(np.geomspace(100, 5000, 10), 8)
    Y = np.stack([truth[d].predict(R[:, k], S) for k, d in enumerate("ab")], axis=1)
    Y = Y * np.exp(rng.normal(0, 0.003, Y.shape))
    m = BiMixModel(share_beta=True).fit(R, S, Y, domains=["a", "b"])
    assert m.beta_ == pytest.approx(0.5, rel=0.1)
    assert m.laws_["a"].beta_ == m.laws_["b"].beta_ == m.beta_
    assert m.laws_["b"].alpha_ == pytest.approx(0.03, rel=0.15)
    assert m.laws_["a"].cov_.shape == (4, 4) and m.laws_["a"].stderr_["beta"] > 0
    pred = m.predict(np.array([[0.3, 0.7]]), 20000)[0]
    assert pred == pytest.approx([float(truth["a"].predict(0.3, 20000)), float(truth["b"].predict(0.7, 20000))], rel=0.01)
    assert not hasattr(BiMixModel().fit(R, S, Y, domains=["a", "b"]), "beta_")
