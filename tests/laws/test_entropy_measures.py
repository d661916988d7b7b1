"""Entropy proxies against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixlab.laws import entropy as E
from mixlab.laws.entropy import domain_entropy, entropy_mixture, shannon, von_neumann_entropy


def test_hand_computed_small_sequence():
    # one sequence 0 1 0 1 2: unigrams {0:2, 1:2, 2:1}; pairs (0,1)x2, (1,0), (1,2)
    toks = np.array([0, 1, 0, 1, 2])
    res = domain_entropy(toks, 3, seq_len=8, vne=False)
    se = -(2 * (0.4 * math.log(0.4)) + 0.2 * math.log(0.2))
    je = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    first = -(0.5 * math.log(0.5) * 2)  # first tokens: 0,1,0,1
    assert res.se == pytest.approx(se)
    assert res.je == pytest.approx(je)
    assert res.ce == pytest.approx(je - first)
    # H(next | prev): after 0 always 1 (0 bits); after 1: 0 or 2 equally (log 2); prev is 1 half the time
    assert res.ce == pytest.approx(0.5 * math.log(2))


def test_pairs_do_not_cross_sequence_boundaries_and_chunking_is_exact():
    toks = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    res = domain_entropy(toks, 4, seq_len=4, vne=False)
    # pairs: (0,1),(1,2),(2,3) twice; the boundary pair (3,0) is not counted
    assert res.je == pytest.approx(math.log(3))
    assert res.ce == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 50, 10_000)
    a = domain_entropy(big, 50, seq_len=64, chunk_sequences=3, vne=False)
    b = domain_entropy(big, 50, seq_len=64, chunk_sequences=1000, vne=False)
    assert (a.se, a.je, a.ce) == pytest.approx((b.se, b.je, b.ce))


def test_sparse_pair_counter_matches_dense(monkeypatch):
    rng = np.random.default_rng(1)
    toks = rng.integers(0, 40, 5000)
    dense = domain_entropy(toks, 40, seq_len=100, vne=False)
    monkeypatch.setattr(E, "DENSE_PAIR_LIMIT", 10)
    sparse = domain_entropy(toks, 40, seq_len=100, chunk_sequences=2, vne=False)
    assert (sparse.je, sparse.ce) == pytest.approx((dense.je, dense.ce))


def test_uniform_iid_tokens_approach_log_v():
    toks = np.random.default_rng(2).integers(0, 8, 200_000)
    res = domain_entropy(toks, 8, vne=False)
    assert res.se == pytest.approx(math.log(8), abs=1e-3)
    assert res.ce == pytest.approx(math.log(8), abs=2e-3)
    assert res.je == pytest.approx(2 * math.log(8), abs=3e-3)


def test_von_neumann_entropy_of_known_spectra():
    assert von_neumann_entropy(np.eye(4)) == pytest.approx(math.log(4))
    assert von_neumann_entropy(np.diag([1.0, 0, 0])) == pytest.approx(0.0)
    # identical samples -> rank-one kernel -> entropy 0; diverse samples -> larger
    same = domain_entropy(np.tile(np.arange(16), 20), 16, seq_len=16)
    diverse = domain_entropy(np.random.default_rng(3).integers(0, 16, 320), 16, seq_len=16)
    assert same.vne == pytest.approx(0.0, abs=1e-9)
    assert diverse.vne > 1.0


def test_mapping_is_softmax_of_entropies():
    mix = entropy_mixture({"a": 1.0, "b": 2.0})
    assert mix["b"] / mix["a"] == pytest.approx(math.e)
    assert sum(mix.values()) == pytest.approx(1.0)
    assert shannon(np.array([0, 5, 5])) == pytest.approx(math.log(2))


def test_bad_token_ids_are_a_clear_error():
    from mixlab.errors import DataError

    with pytest.raises(DataError, match="vocab_size"):
        domain_entropy(np.array([0, 1, 9]), 4, vne=False)
