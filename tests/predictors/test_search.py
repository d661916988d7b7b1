"""Mixture search: valid mixtures under bounds/availability, and the known optimum of a convex objective."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.errors import ConfigError
from mixlab.mixture import MixtureConstraints, project_to_bounded_simplex
from mixlab.predictors.base import Predictor
from mixlab.predictors.sampling import regmix_mixtures, temperature_prior
from mixlab.predictors.search import search, search_continuous, search_topk

DOMAINS = ["a", "b", "c", "d", "e"]
W_STAR = np.array([0.4, 0.3, 0.15, 0.1, 0.05])


class Quadratic(Predictor):
    """A 'fitted' convex objective: loss_j(w) = 1 + s_j * |w - w*|^2 (two targets of different scale)."""

    name = "quadratic"

    def __init__(self, center=None) -> None:
        self.center = center

    def min_runs(self, n_domains: int) -> int:
        return 1

    def _fit(self, X, Y):
        self.models_ = []

    def _predict(self, X):
        d = ((X - np.asarray(self.center)) ** 2).sum(axis=1)
        return np.column_stack([1 + d, 1 + 3 * d])


def fitted(center=W_STAR):
    X = np.eye(len(DOMAINS))  # training runs span the whole simplex: no data-range cap
    return Quadratic(center).fit(X, np.ones((len(DOMAINS), 2)), domains=DOMAINS, targets=["x", "y"])


def test_continuous_search_finds_the_unconstrained_optimum():
    res = search_continuous(fitted(), "y")
    np.testing.assert_allclose(res.mixture.to_array(DOMAINS), W_STAR, atol=1e-4)
    assert res.predicted == pytest.approx(1.0, abs=1e-6)


def test_constrained_optimum_is_the_projection_of_the_centre():
    # |w - w*|^2 on the bounded simplex is minimised by the Euclidean projection of w*
    cons = MixtureConstraints.build(
        DOMAINS, upper={"a": 0.25}, lower={"e": 0.12},
        available_tokens={"a": 1e9, "b": 2e6, "c": 1e9, "d": 1e9, "e": 1e9}, remaining_tokens=1e7, max_epochs=1.0,
    )
    expected = project_to_bounded_simplex(W_STAR, cons.lower, cons.upper)
    assert expected[1] == pytest.approx(0.2)  # b is capped by availability: 1 epoch of 2e6 over 1e7 tokens
    for method in ("slsqp", "auto"):
        res = search(fitted(), {"x": 1.0, "y": 1.0}, cons, method=method, n_samples=5000, top_k=16)
        w = res.mixture.to_array(DOMAINS)
        assert cons.satisfied(w)
        np.testing.assert_allclose(w, expected, atol=1e-4)


def test_topk_returns_a_valid_mixture_near_the_optimum():
    cons = MixtureConstraints.build(DOMAINS, upper={"a": 0.35}, lower={"d": 0.05})
    res = search_topk(fitted(), None, cons, prior=W_STAR, n_samples=20_000, top_k=32, seed=1)
    w = res.mixture.to_array(DOMAINS)
    assert cons.satisfied(w) and res.method == "topk"
    best = project_to_bounded_simplex(W_STAR, cons.lower, cons.upper)
    assert np.abs(w - best).max() < 0.08
    # tight bounds that few samples satisfy: the samples are projected, the answer is still feasible
    tight = MixtureConstraints.build(DOMAINS, lower={"e": 0.6})
    w2 = search_topk(fitted(), "x", tight, n_samples=2000, top_k=16).mixture.to_array(DOMAINS)
    assert tight.satisfied(w2)


def test_search_stays_within_training_range_and_checks_targets():
    X = np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [0.3, 0.1, 0.2, 0.2, 0.2], [0.1, 0.3, 0.2, 0.2, 0.2],
                  [0.2, 0.2, 0.3, 0.1, 0.2], [0.2, 0.2, 0.1, 0.3, 0.2], [0.2, 0.2, 0.2, 0.3, 0.1]])
    p = Quadratic([1.0, 0, 0, 0, 0]).fit(X, np.ones((6, 2)), domains=DOMAINS, targets=["x", "y"])
    w = search(p, "x", n_samples=2000, top_k=8).mixture.to_array(DOMAINS)
    assert w[0] <= 0.3 + 1e-6  # capped at the largest weight of a seen in training
    w_free = search(p, "x", method="slsqp", within_data=False).mixture.to_array(DOMAINS)
    assert w_free[0] > 0.99
    with pytest.raises(ConfigError, match="not one of the fitted"):
        search(p, "z")
    with pytest.raises(ConfigError, match="constraints cover"):
        search(p, "x", MixtureConstraints.unconstrained(["a", "b"]))


def test_regmix_sampler_prior_sparsity_and_caps():
    avail = {"a": 4e6, "b": 1e6, "c": 1e4, "d": 9e6, "e": 1e5}
    prior = temperature_prior(avail, DOMAINS)
    np.testing.assert_allclose(prior, np.sqrt([4e6, 1e6, 1e4, 9e6, 1e5]) / np.sqrt([4e6, 1e6, 1e4, 9e6, 1e5]).sum())
    mixes = regmix_mixtures(avail, 200, domains=DOMAINS, tokens=1e6, max_epochs=2.0, seed=0)
    W = np.array([m.to_array(DOMAINS) for m in mixes])
    assert len({tuple(np.round(w, 8)) for w in W}) == 200
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    assert (W[:, 2] <= 2 * 1e4 / 1e6 + 1e-12).all()  # availability cap on the small domain
    zeros = (W == 0).sum(axis=1)
    assert zeros.max() >= 2 and zeros.min() == 0  # a spread of sparsity
    assert W[W > 0].min() >= 2e-4
    with pytest.raises(ConfigError, match="too few tokens"):
        regmix_mixtures(avail, 5, domains=DOMAINS, tokens=1e9, max_epochs=1.0)


class SumRecorder(Quadratic):
    """The quadratic objective, recording how far from 1 each asked-about row sums."""

    def _predict(self, X):
        self.seen_.extend(np.abs(X.sum(axis=1) - 1.0).tolist())
        return super()._predict(X)


@pytest.mark.parametrize("max_iter", [200, 2])  # 2: SLSQP stops early and trust-constr takes over
def test_continuous_search_only_asks_the_predictor_about_mixtures(max_iter):
    """Solver iterates and finite-difference steps leave the simplex; a predictor that validates its
    input (every mixlab predictor does) must never see them, or the search dies on 'do not sum to 1'."""
    model = SumRecorder(W_STAR).fit(np.eye(len(DOMAINS)), np.ones((len(DOMAINS), 2)), domains=DOMAINS, targets=["x", "y"])
    model.seen_ = []
    cons = MixtureConstraints.build(DOMAINS, upper={"a": 0.25}, lower={"e": 0.12})
    res = search_continuous(model, "y", cons, max_iter=max_iter)
    assert cons.satisfied(res.mixture.to_array(DOMAINS))
    assert len(model.seen_) > 10 and max(model.seen_) < 1e-9
