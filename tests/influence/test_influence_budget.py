"""The measurement budget: pooling independent measurements until the split-half stability is high."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mixlab.influence import GroupInfluence
from mixlab.influence.budget import STABILITY_THRESHOLD, measure_until_stable, pool_influence
from mixlab.influence.group import split_half_stability

SIGNAL = np.array([[1.0, 0.2], [0.5, 0.9], [-0.3, 0.1], [0.0, -0.6]])


def fake_measure(noise):
    def measure(tokens, seed):
        rng = np.random.default_rng(seed)
        halves = SIGNAL[None] + noise * rng.normal(size=(2, *SIGNAL.shape))
        return GroupInfluence(
            halves.mean(0), np.full(SIGNAL.shape, np.nan), list("abcd"), ["x", "y"], tokens=6 * tokens,
            flops=10.0 * tokens, seconds=1.0, stability=split_half_stability(halves), half_matrices=halves,
            batches={"train": dict.fromkeys("abcd", 2), "target": {"x": 2, "y": 2}, "fit": {"total": 0}},
        )  # fmt: skip

    return measure


def test_pools_until_stable_and_reports_every_measurement():
    seen = []
    gi, records = measure_until_stable(
        fake_measure(1.0), 1000, seed=3, min_stability=0.9, max_tokens_per_domain=64000, on_measurement=seen.append
    )
    assert len(records) == len(seen) >= 2
    assert [r["seed"] for r in records] == list(range(3, 3 + len(records)))
    assert gi.stability >= 0.9 and records[-1]["pooled_stability"] == pytest.approx(gi.stability)
    assert all(r["pooled_stability"] < 0.9 for r in records[:-1])
    assert gi.tokens == sum(r["tokens"] for r in records) and gi.flops == pytest.approx(sum(s.flops for s in seen))
    np.testing.assert_allclose(gi.matrix, np.mean([s.matrix for s in seen], axis=0))
    assert gi.batches["train"]["a"] == 2 * len(records)


def test_stops_at_the_cap_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        gi, records = measure_until_stable(fake_measure(50.0), 1000, min_stability=0.99, max_tokens_per_domain=3000)
    assert len(records) == 3 and gi.stability < STABILITY_THRESHOLD
    assert "unstable" in caplog.text
    one, recs = measure_until_stable(fake_measure(0.01), 1000)
    assert len(recs) == 1 and one.stability > 0.99


def test_pool_rejects_mismatched_domains():
    a = fake_measure(0.1)(10, 0)
    b = GroupInfluence(SIGNAL, np.zeros(SIGNAL.shape), list("abce"), ["x", "y"])
    with pytest.raises(Exception, match="different domains"):
        pool_influence([a, b])
