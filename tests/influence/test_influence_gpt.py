"""Group Influence on a tiny GPT trained on a synthetic corpus with known relations between domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixlab.influence import GradientProjector, measure_group_influence
from mixlab.influence.batches import corpus_batches, lm_loss
from mixlab.influence.preconditioners import KFACPreconditioner
from mixlab.model import GPT, GPTConfig

torch.set_num_threads(1)
V = 64


class SyntheticCorpus:
    """target and dup: the same Markov chain over tokens 0-31; unrelated: another chain over 32-63;
    noise: uniform tokens. Duck-types the Corpus read API influence needs."""

    def __init__(self, seed: int = 0, n: int = 12000) -> None:
        rng = np.random.default_rng(seed)

        def chain(lo):
            return lo, rng.dirichlet(np.full(32, 0.1), size=32).cumsum(1)

        def sample(ch, size):
            lo, cum = ch
            u, x, s = rng.random(size), np.empty(size, np.int64), 0
            for t in range(size):
                s = min(int(np.searchsorted(cum[s], u[t])), 31)
                x[t] = lo + s
            return x

        a, b = chain(0), chain(32)
        self.data = {
            "target": (sample(a, n), sample(a, n // 4)),
            "dup": (sample(a, n), sample(a, n // 4)),
            "unrelated": (sample(b, n), sample(b, n // 4)),
            "noise": (rng.integers(0, V, n), rng.integers(0, V, n // 4)),
        }
        self.domains = list(self.data)

    def train_tokens(self, d):
        return self.data[d][0]

    def val_tokens(self, d):
        return self.data[d][1]


@pytest.fixture(scope="module")
def trained():
    corpus = SyntheticCorpus()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    streams = {
        d: corpus_batches(corpus, d, split="train", tokens=10**9, seq_len=32, batch_size=4, seed=1)
        for d in corpus.domains
    }
    for _ in range(150):
        loss = sum(lm_loss(model, next(streams[d])) for d in corpus.domains) / len(corpus.domains)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return corpus, model, opt


@pytest.mark.parametrize("preconditioner", ["adam", "ekfac"])
def test_ranks_target_like_over_unrelated_over_noise(trained, preconditioner):
    corpus, model, opt = trained
    gi = measure_group_influence(
        model,
        corpus,
        target_domains=["target"],
        tokens_per_domain=32 * 8 * 8,
        seq_len=32,
        batch_size=8,
        preconditioner=preconditioner,
        optimizer=opt,
    )
    col = dict(zip(gi.train_domains, gi.matrix[:, 0], strict=True))
    assert min(col["dup"], col["target"]) > col["unrelated"] > col["noise"], col
    assert gi.z_scores()[gi.train_domains.index("dup"), 0] > 3
    assert gi.batches["train"]["dup"] == 8 and gi.tokens >= 4 * 8 * 8 * 32
    assert gi.stability > 0.8  # the two half samples order the domains alike
    assert gi.preconditioner == preconditioner


@pytest.mark.parametrize("kind", ["rademacher", "gaussian", "countsketch"])
def test_projection_agrees_with_full_gradients(trained, kind):
    """Sketch size 1024 for a 26,784-parameter model: cosine of the 4 x 4 matrices > 0.95."""
    corpus, model, opt = trained
    common = dict(
        tokens_per_domain=32 * 8 * 3, seq_len=32, batch_size=8, preconditioner="adam", optimizer=opt
    )
    full = measure_group_influence(model, corpus, **common)
    proj = measure_group_influence(model, corpus, projection_dim=1024, projection_kind=kind, **common)
    a, b = full.matrix.ravel(), proj.matrix.ravel()
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.95
    assert 900 <= proj.projection_dim <= 1200


def test_projector_is_unbiased_and_fixed():
    params = [torch.zeros(40, 30), torch.zeros(50), torch.zeros(3, 4, 5)]
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1310, generator=g), torch.randn(1310, generator=g)
    y = y + x
    est = []
    for seed in range(200):
        p = GradientProjector(128, "rademacher", seed).bind(params)
        est.append(float(p.project(x) @ p.project(y)))
    assert np.mean(est) == pytest.approx(float(x @ y), rel=0.05)
    p1, p2 = GradientProjector(128, seed=3).bind(params), GradientProjector(128, seed=3).bind(params)
    assert torch.equal(p1.project(x), p2.project(x))


def test_kfac_apply_is_damped_kronecker_inverse():
    """On one Linear layer the K-FAC preconditioner equals (G (x) A + lambda I)^-1 built densely."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    X, Y = torch.randn(50, 3), torch.randn(50, 2)

    def loss_fn(model, batch):
        return 0.5 * ((model(batch[0]) - batch[1]) ** 2).sum(-1).mean()

    batches = [(X[:25], Y[:25]), (X[25:], Y[25:])]
    pc = KFACPreconditioner(damping=0.1, eigen_correction=False, sampled=False).bind(list(layer.parameters()))
    pc.fit(layer, loss_fn, batches)
    Xa = torch.cat([X, torch.ones(50, 1)], 1).double()
    A = Xa.T @ Xa / 50
    G = torch.zeros(2, 2, dtype=torch.float64)
    for xb, yb in batches:
        r = (layer(xb) - yb).detach().double()
        G += r.T @ r
    G /= 50
    M = torch.kron(G, A)
    lam = 0.1 * torch.outer(torch.linalg.eigvalsh(G), torch.linalg.eigvalsh(A)).mean()
    v = torch.randn(8)
    W = torch.cat([v[:6].view(2, 3), v[6:].view(2, 1)], 1).reshape(-1).double()
    expected = torch.linalg.solve(M + lam * torch.eye(8, dtype=torch.float64), W).view(2, 4)
    out = pc.apply(v)
    np.testing.assert_allclose(out[:6].view(2, 3).numpy(), expected[:, :3].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[6:].numpy(), expected[:, 3].numpy(), rtol=1e-4, atol=1e-6)


def test_ekfac_uses_per_term_eigenvalue_corrections():
    """EK-FAC rescales K-FAC's eigenbasis by mean_t (Q_G^T d_t)^2 (Q_A^T a_t)^2 (George et al. 2018)."""
    torch.manual_seed(1)
    layer = torch.nn.Linear(3, 2)
    X, Y = torch.randn(40, 3), torch.randn(40, 2)

    def loss_fn(model, batch):
        return 0.5 * ((model(batch[0]) - batch[1]) ** 2).sum(-1).mean()

    batches = [(X[:20], Y[:20]), (X[20:], Y[20:])]
    pc = KFACPreconditioner(damping=0.05, eigen_correction=True, sampled=False).bind(list(layer.parameters()))
    pc.fit(layer, loss_fn, batches)
    a = torch.cat([X, torch.ones(40, 1)], 1).double()
    r = (layer(X) - Y).detach().double()
    _, QA = torch.linalg.eigh(a.T @ a / 40)
    _, QG = torch.linalg.eigh(r.T @ r / 40)
    lam = ((r @ QG) ** 2).T @ ((a @ QA) ** 2) / 40
    v = torch.randn(8)
    W = torch.cat([v[:6].view(2, 3), v[6:].view(2, 1)], 1).double()
    expected = QG @ ((QG.T @ W @ QA) / (lam + 0.05 * lam.mean())) @ QA.T
    out = pc.apply(v)
    np.testing.assert_allclose(out[:6].view(2, 3).numpy(), expected[:, :3].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[6:].numpy(), expected[:, 3].numpy(), rtol=1e-4, atol=1e-6)
    assert pc.name == "ekfac"
