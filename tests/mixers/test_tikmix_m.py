"""TiKMiX-M: candidates, linear labels, surrogate quality, Algorithm 1 search, proxy losses."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import spearmanr

from mixlab.errors import MixlabError
from mixlab.influence import GroupInfluence
from mixlab.mixers import MixingContext, ProxyResult, get_mixer
from mixlab.mixers.tikmix_d import normalised_influence, paper_objective, solve_tikmix_d
from mixlab.mixers.tikmix_m import _Surrogate, influence_scores, latin_hypercube_candidates
from mixlab.mixture import Mixture, MixtureConstraints

DOMAINS = ["a", "b", "c", "d"]
MATRIX = np.array([[0.2, 0.1, 0.0], [0.9, 0.7, 0.3], [0.4, 0.5, 0.9], [-0.3, -0.1, -0.2]])
FAST = dict(
    label="sum", n_candidates=128, n_local_candidates=64, search_rounds=5, search_samples=300, top_k=16, n_estimators=150
)


def _gi():
    return GroupInfluence(MATRIX, np.zeros_like(MATRIX), DOMAINS, ["a", "b", "c"])


def _ctx(**kw):
    gi = _gi()
    fields = dict(
        domains=DOMAINS, available_tokens={d: 10_000 for d in DOMAINS}, total_tokens=20_000,
        target_domains=gi.target_domains, live=SimpleNamespace(influence=gi), previous=Mixture.uniform(DOMAINS),
    )  # fmt: skip
    fields.update(kw)
    return MixingContext(**fields)


def test_labels_are_linear_in_the_mixture():
    c = np.array([0.2, 0.3, 0.5])
    W = np.random.default_rng(0).dirichlet(np.ones(4), size=5)
    s = influence_scores(W, MATRIX, c)
    I_hat = MATRIX / np.abs(MATRIX).max(axis=0)  # [train, target], each target's column scaled
    np.testing.assert_allclose(s, (W @ I_hat) @ (3 * c), rtol=1e-6)
    mixed = influence_scores(0.3 * W[:1] + 0.7 * W[1:2], MATRIX, c)
    np.testing.assert_allclose(mixed, 0.3 * s[0] + 0.7 * s[1], rtol=1e-9)
    bal = influence_scores(W, MATRIX, c, label="balanced", alpha=2.0)
    np.testing.assert_allclose(bal, s - 2.0 * (W @ I_hat).std(axis=1), rtol=1e-6)


def test_objective_label_is_minus_the_tikmix_d_objective():
    c = np.ones(3) / 3
    W = np.random.default_rng(1).dirichlet(np.ones(4), size=6)
    got = influence_scores(W, MATRIX, c, label="objective", alpha=0.5, gamma=2.0)
    S_hat = normalised_influence(MATRIX)
    want = [-paper_objective(w, S_hat, c, 0.5, 1.0, 2.0) for w in W]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_lhs_candidates_are_feasible_and_around_the_prior():
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    cons = MixtureConstraints.build(DOMAINS, upper={"d": 0.45})
    X = latin_hypercube_candidates(prior, cons, 200, scale=0.5, seed=0)
    assert X.shape == (200, 4)
    assert np.allclose(X.sum(axis=1), 1) and np.all(X[:, 3] <= 0.45 + 1e-9)
    assert np.abs(X.mean(axis=0) - prior).max() < 0.1
    assert np.all(X[:, 0] <= 0.275 / (0.275 + 0.45) + 1e-9)  # its interval top over the others' bottoms


def test_surrogate_ranks_held_out_mixtures():
    rng = np.random.default_rng(1)
    X = rng.dirichlet(np.ones(4), size=300)
    y = influence_scores(X, MATRIX, np.ones(3) / 3, label="balanced")
    model = _Surrogate(0, 300).fit(X[:200], y[:200])
    assert spearmanr(model.predict(X[200:]), y[200:]).statistic > 0.9


def test_search_improves_the_label_and_respects_constraints():
    ctx = _ctx(max_epochs=1.0, upper={"b": 0.6})
    mixer = get_mixer("tikmix-m", **FAST)
    proposal = mixer.propose(ctx)
    w = proposal.mixture.to_array(DOMAINS)
    assert ctx.constraints().satisfied(w, tol=1e-7)
    c = np.ones(3) / 3
    start = solve_tikmix_d(MATRIX, upper=ctx.constraints().upper, previous=np.full(4, 0.25)).weights
    np.testing.assert_allclose(proposal.details["start"], start, atol=1e-6)
    # the label favours b, then c; the search moves from TiKMiX-D's entropic answer towards them
    assert influence_scores(w, MATRIX, c)[0] > influence_scores(start, MATRIX, c)[0]
    assert influence_scores(w, MATRIX, c)[0] > influence_scores(np.full(4, 0.25), MATRIX, c)[0]
    assert w[3] < 0.05  # the harmful domain is dropped
    X, y = proposal.details["candidates"]
    assert len(X) == 128 + 64 and len(proposal.details["trace"]) == 5
    assert proposal.influence.matrix.shape == MATRIX.shape and proposal.solver["success"]


class FakeProxy:
    """Loss is lowest when domain 'c' dominates: opposes the influence label, which favours 'b'."""

    def __init__(self):
        self.calls = 0

    def train(self, mixture, *, tokens, seed=0, eval_every=None, name=None):
        self.calls += 1
        w = mixture.to_array(DOMAINS)
        loss = 3.0 - 2.0 * w[2]
        return ProxyResult(
            mixture, {tokens: {t: loss for t in ["a", "b", "c"]}}, tokens=tokens, flops=1e6, seconds=0.01
        )


def test_proxy_losses_shift_the_choice():
    proxy = FakeProxy()
    ctx = _ctx(proxy=proxy)
    base = get_mixer("tikmix-m", **FAST).propose(_ctx()).mixture
    mixer = get_mixer("tikmix-m", proxy_runs=40, proxy_tokens=1000, loss_weight=3.0, **FAST)
    mix = mixer.propose(ctx).mixture
    assert proxy.calls == 40
    assert ctx.compute.flops == pytest.approx(40 * 1e6) and ctx.compute.tokens == 40 * 1000
    assert mix["c"] > base["c"]


def test_errors():
    with pytest.raises(MixlabError, match="live model"):
        get_mixer("tikmix-m").propose(
            MixingContext(domains=DOMAINS, available_tokens={d: 1 for d in DOMAINS}, total_tokens=4)
        )
    with pytest.raises(MixlabError, match="ctx.proxy"):
        get_mixer("tikmix-m", proxy_runs=2, **FAST).propose(_ctx())


def test_continuation_labels_on_the_live_model_differ_from_the_matrix_product(noise_target_corpus):
    """Default label: measured continuations of a tiny GPT; not an affine function of w (the matrix
    product is), booked as choosing compute, and the live model is left as it was."""
    import torch

    from mixlab.model import GPT, GPTConfig

    corpus = noise_target_corpus
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=corpus.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    arr = corpus.train_tokens("target")
    for _ in range(5):
        starts = rng.integers(0, len(arr) - 33, size=8)
        rows = torch.from_numpy(np.stack([arr[s : s + 33] for s in starts]).astype(np.int64))
        loss = model(rows[:, :-1], rows[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = MixingContext(
        domains=corpus.domains, available_tokens=corpus.token_counts(), total_tokens=100_000, corpus=corpus,
        target_domains=["target"], previous=Mixture.uniform(corpus.domains), stage=1,
        live=SimpleNamespace(model=model, optimizer=opt, seq_len=32, batch_size=8),
    )  # fmt: skip
    mixer = get_mixer(
        "tikmix-m", tokens_per_domain=2 * 8 * 32, n_measured=10, continuation_steps=6, n_candidates=16,
        n_local_candidates=8, search_rounds=2, search_samples=50, top_k=4, n_estimators=20, interval_scale=1.0,
    )  # fmt: skip
    proposal = mixer.propose(ctx)
    X, y = proposal.details["candidates"]
    assert len(X) == len(y) == 10
    A = np.hstack([X, np.ones((len(X), 1))])
    resid = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]
    assert np.linalg.norm(resid) > 0.05 * np.linalg.norm(y - y.mean())  # not linear in w
    linear = influence_scores(X, proposal.influence.matrix, np.ones(1))
    assert not np.allclose(y, linear)
    assert ctx.compute.tokens > proposal.influence.tokens + 10 * 6 * 8 * 32
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
