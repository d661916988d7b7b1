"""Data Mixing Law: recovery, shapes, optimiser vs brute force, errors."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.errors import DataError
from mixlab.laws.dml import DataMixingLaw
from mixlab.mixture import MixtureConstraints

T = np.array([[-2.0, 0.5, 1.5], [1.0, -1.5, 0.5]])
C = np.array([2.0, 1.5])
K = np.array([0.8, 0.6])


def _data(n=30, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(3), n)
    Y = (C + K * np.exp(X @ T.T)) * np.exp(rng.normal(0, noise, (n, 2)))
    return X, Y


def test_recovers_parameters_in_the_zero_sum_gauge():
    X, Y = _data()
    law = DataMixingLaw().fit(X, Y)
    assert np.allclose(law.t_, T, atol=0.1)  # T rows already sum to 0
    assert np.allclose(law.c_, C, rtol=0.05) and np.allclose(law.k_, K, rtol=0.1)
    assert np.all(law.r2_ > 0.99)
    assert law.stderr_["t"].shape == (2, 3) and np.all(law.stderr_["t"] > 0)


def test_one_target_keeps_1d_shape():
    X, Y = _data()
    law = DataMixingLaw().fit(X, Y[:, 0])
    assert law.predict(X[:4]).shape == (4,)
    assert np.allclose(law.predict(X), C[0] + K[0] * np.exp(X @ T[0]), rtol=0.01)


def test_optimum_beats_random_mixtures_and_respects_bounds():
    X, Y = _data()
    law = DataMixingLaw().fit(X, Y)
    r = law.optimize(weights=[0.5, 0.5])
    cands = np.random.default_rng(1).dirichlet(np.ones(3), 2000)
    obj = lambda w: law.predict(np.atleast_2d(w)).mean(axis=1)  # noqa: E731
    assert obj(r)[0] <= obj(cands).min() + 1e-9
    cons = MixtureConstraints.build(["x", "y", "z"], upper={"x": 0.2, "y": 0.2})
    mix = law.optimize(constraints=cons, domains=["x", "y", "z"])
    assert mix["x"] <= 0.2 + 1e-6 and mix["y"] <= 0.2 + 1e-6


def test_too_few_mixtures_and_bad_rows():
    X, Y = _data(n=4)
    with pytest.raises(DataError, match="at least"):
        DataMixingLaw().fit(X, Y)
    with pytest.raises(DataError, match="sum to 1"):
        DataMixingLaw().fit(np.full((10, 3), 0.5), np.ones(10))


def test_nested_law_recovers_the_step_exponent_and_predicts_a_later_step():
    from mixlab.laws.dml import NestedDataMixingLaw

    rng = np.random.default_rng(3)
    t = np.array([[-1.0, 0.7, 0.3], [0.5, -1.2, 0.7]])
    mixes = rng.dirichlet(np.ones(3), 9)
    steps = np.array([100.0, 200.0, 400.0, 800.0])

    def truth(R, s):  # per run E + B s^-b, E following the Data Mixing Law, b = 0.6
        return 2.0 + 1.5 * np.exp(R @ t.T) + 30.0 * np.asarray(s, dtype=float)[..., None] ** -0.6

    R = np.repeat(mixes, steps.size, axis=0)
    s = np.tile(steps, len(mixes))
    law = NestedDataMixingLaw().fit(R, s, truth(R, s), domains=["a", "b", "c"], loss_domains=["x", "y"])
    assert law.b_ == pytest.approx([0.6, 0.6], rel=0.05)
    query = rng.dirichlet(np.ones(3), 4)
    np.testing.assert_allclose(law.predict(query, 3200.0), truth(query, np.full(4, 3200.0)), rtol=2e-3)
    # a step every run was evaluated at uses the observed losses, then the Data Mixing Law
    np.testing.assert_allclose(law.values_at(800.0), truth(law.mixtures_, np.full(9, 800.0)), rtol=1e-12)
    with pytest.raises(DataError, match="need at least 5"):
        NestedDataMixingLaw().fit(R[:16], s[:16], truth(R[:16], s[:16]), domains=["a", "b", "c"])
