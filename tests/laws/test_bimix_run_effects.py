"""BiMix fitted within runs (``run_effects``): a known law is recovered where the pooled fit is biased."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.errors import ConfigError
from mixlab.laws.bimix import BiMixLaw, BiMixModel

TRUE = {"A": 2.0, "alpha": 0.08, "B": 5.0, "beta": 0.5}


def _biased_runs(seed=0, n_runs=16, noise=0.002, offset_sd=0.03):
    """Runs of a BiMix law, each with a multiplicative offset the law does not model (a stand-in for
    the other domains' shares). Every fourth run is 4x longer and has the largest offsets, so pooled,
    the late part of the curve sits high and the fitted step term flattens."""
    rng = np.random.default_rng(seed)
    law = BiMixLaw.from_params(**TRUE)
    r_all, s_all, y_all, run_all = [], [], [], []
    for g in range(n_runs):
        r = rng.uniform(0.05, 0.9)
        long_run = g % 4 == 0
        steps = np.geomspace(200, 20000 if long_run else 5000, 10)
        offset = abs(rng.normal(0, offset_sd)) + (0.04 if long_run else 0.0)
        y = law.predict(r, steps) * np.exp(offset + rng.normal(0, noise, steps.size))
        r_all.append(np.full(steps.size, r))
        s_all.append(steps)
        y_all.append(y)
        run_all.append(np.full(steps.size, g))
    return law, *(np.concatenate(v) for v in (r_all, s_all, y_all, run_all))


def test_within_run_fit_recovers_the_step_exponent_the_pooled_fit_misses():
    true, r, s, y, runs = _biased_runs()
    pooled = BiMixLaw().fit(r, s, y)
    within = BiMixLaw(run_effects=True).fit(r, s, y, runs=runs)
    assert within.beta_ == pytest.approx(TRUE["beta"], rel=0.05)
    assert within.B_ == pytest.approx(TRUE["B"], rel=0.15)
    assert abs(pooled.beta_ - TRUE["beta"]) > 3 * abs(within.beta_ - TRUE["beta"])
    # the step term's relative drop from 5k to 50k steps (what extrapolation needs)
    def drop(law):
        return float(law.predict(0.3, 50000) / law.predict(0.3, 5000))
    assert drop(within) == pytest.approx(drop(true), abs=2e-3)
    assert abs(drop(pooled) - drop(true)) > 3 * abs(drop(within) - drop(true))
    assert within.stderr_["beta"] > 0 and within.stderr_["alpha"] > 0


def test_without_run_offsets_within_and_pooled_agree_with_the_truth():
    true, r, s, y, runs = _biased_runs(seed=3, offset_sd=0.0)
    y = true.predict(r, s) * np.exp(np.random.default_rng(3).normal(0, 0.002, r.size))
    within = BiMixLaw(run_effects=True).fit(r, s, y, runs=runs)
    pooled = BiMixLaw().fit(r, s, y)
    for k, v in TRUE.items():
        assert within.params_[k] == pytest.approx(v, rel=0.1), k
        assert pooled.params_[k] == pytest.approx(within.params_[k], rel=0.1), k


def test_model_takes_runs_from_identical_mixtures_and_shares_beta():
    true, r, s, y, runs = _biased_runs(seed=1)
    mixtures = np.stack([r, 1 - r], axis=1)
    other = BiMixLaw.from_params(A=3.0, alpha=0.05, B=8.0, beta=0.5)
    losses = np.stack([y, other.predict(1 - r, s)], axis=1)
    model = BiMixModel(run_effects=True, share_beta=True).fit(mixtures, s, losses, domains=["a", "b"])
    explicit = BiMixModel(run_effects=True, share_beta=True).fit(mixtures, s, losses, domains=["a", "b"], runs=runs)
    assert model.beta_ == pytest.approx(explicit.beta_, rel=1e-9)
    assert model.beta_ == pytest.approx(0.5, rel=0.05)
    assert model.laws_["a"].beta_ == model.laws_["b"].beta_ == model.beta_
    assert model.laws_["b"].alpha_ == pytest.approx(0.05, rel=0.1)


def test_run_effects_needs_run_labels():
    _, r, s, y, _ = _biased_runs()
    with pytest.raises(ConfigError, match="runs="):
        BiMixLaw(run_effects=True).fit(r, s, y)


def test_bootstrap_resamples_whole_runs():
    _, r, s, y, runs = _biased_runs(seed=2)
    law = BiMixLaw(run_effects=True).fit(r, s, y, runs=runs)
    draws = law.bootstrap_predictions(np.array([0.3]), np.array([50000.0]), n_boot=30, seed=0)
    assert draws.shape == (30, 1) and np.all(np.isfinite(draws))
    pred, lo, hi = law.predict_interval([0.3], [50000], method="bootstrap", n_boot=30, level=0.9)
    assert lo[0] < pred[0] < hi[0]
    assert np.std(draws) > 0  # resampled runs give different fits
