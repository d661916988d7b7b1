"""Entropy-proxy mixers on a corpus double and on a real prepared corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixlab.errors import MixlabError
from mixlab.mixers import MixingContext, get_mixer


class TinyCorpus:
    """The part of the Corpus API the entropy mixers use."""

    def __init__(self, streams, vocab_size):
        self.streams = streams
        self.domains = list(streams)
        self.vocab_size = vocab_size

    def train_tokens(self, domain):
        return self.streams[domain]


def _ctx(corpus, **kw):
    return MixingContext(domains=corpus.domains, available_tokens={d: 10**6 for d in corpus.domains},
                         total_tokens=10**6, corpus=corpus, **kw)


def test_ce_mixer_matches_hand_computed_softmax():
    # "det": deterministic successor (CE = 0); "rand": i.i.d. uniform over 4 tokens (CE ~ log 4)
    rng = np.random.default_rng(0)
    corpus = TinyCorpus({"det": np.tile(np.arange(4), 5000), "rand": rng.integers(0, 4, 20000)}, 4)
    ctx = _ctx(corpus)
    mixer = get_mixer("bimix-entropy-ce", seq_len=64)
    mix = mixer.propose(ctx).mixture
    assert mixer.entropies_["det"] == pytest.approx(0.0, abs=1e-9)
    assert mixer.entropies_["rand"] == pytest.approx(math.log(4), abs=0.01)
    assert mix["rand"] / mix["det"] == pytest.approx(math.exp(mixer.entropies_["rand"]))
    assert ctx.compute.tokens == 40000


@pytest.mark.parametrize("name", ["bimix-entropy-se", "bimix-entropy-je", "bimix-entropy-vne"])
def test_other_measures_rank_diverse_domain_higher(name):
    rng = np.random.default_rng(1)
    corpus = TinyCorpus({"narrow": rng.integers(0, 3, 8000), "wide": rng.integers(0, 64, 8000)}, 64)
    mix = get_mixer(name, seq_len=128).propose(_ctx(corpus)).mixture
    assert mix["wide"] > mix["narrow"]


def test_bounds_and_missing_corpus():
    rng = np.random.default_rng(2)
    corpus = TinyCorpus({"a": rng.integers(0, 2, 4000), "b": rng.integers(0, 50, 4000)}, 50)
    mix = get_mixer("bimix-entropy-ce", seq_len=64).propose(_ctx(corpus, upper={"b": 0.6})).mixture
    assert mix["b"] == pytest.approx(0.6, abs=1e-6)
    with pytest.raises(MixlabError, match="corpus"):
        get_mixer("bimix-entropy-ce").propose(MixingContext(domains=["a"], available_tokens={"a": 1}, total_tokens=1))


def test_on_a_real_prepared_corpus(tmp_path):
    from mixlab.data import prepare_domains

    docs = {"abc": ["abcabcabc " * 20] * 10, "mixed": ["the quick brown fox jumps over a lazy dog 123"] * 10}
    corpus = prepare_domains(tmp_path / "c", docs, val_fraction=0.1)
    mix = get_mixer("bimix-entropy-ce", seq_len=64).propose(_ctx(corpus)).mixture
    assert mix["mixed"] > mix["abc"]
