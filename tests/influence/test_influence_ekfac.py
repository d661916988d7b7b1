"""EK-FAC against the exact Gauss-Newton on a model small enough to build it densely.

A softmax language model that is linear in its trainable parameters (a frozen embedding, one trainable
Linear head) has a Hessian of the cross-entropy equal to its Gauss-Newton matrix, so the exact
inverse-Hessian preconditioner is the exact inverse GN. EK-FAC (George et al. 2018; Grosse et al.
2023, Eq. 16-20) keeps K-FAC's Kronecker eigenbasis Q = Q_G (x) Q_A and fits the eigenvalues to the
gradients; its eigenvalues estimate diag(Q^T GN Q), the best diagonal in that basis.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixlab.influence import compute_group_influence, corpus_batches
from mixlab.influence.batches import lm_loss
from mixlab.influence.preconditioners import ExactHessianPreconditioner, KFACPreconditioner, trainable_params

torch.set_num_threads(1)
V, D = 10, 6


class SoftmaxLM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(V, D)
        self.emb.weight.requires_grad_(False)
        self.head = torch.nn.Linear(D, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids))


class ChainCorpus:
    """Four Markov chains over V tokens; ``t`` is the target."""

    domains = ["a", "b", "c", "t"]

    def __init__(self) -> None:
        self.data = {}
        for i, d in enumerate(self.domains):
            r = np.random.default_rng(i)
            P = r.dirichlet(np.full(V, 0.3), size=V)
            x = [0]
            for _ in range(4000):
                x.append(int(r.choice(V, p=P[x[-1]])))
            self.data[d] = np.array(x)

    def train_tokens(self, d):
        return self.data[d]

    def val_tokens(self, d):
        return self.data[d]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    corpus = ChainCorpus()
    model = SoftmaxLM()
    opt = torch.optim.Adam(trainable_params(model), lr=0.05)
    for step in range(100):
        loss = sum(
            lm_loss(model, next(corpus_batches(corpus, d, split="train", tokens=256, seq_len=16, batch_size=16, seed=step)))
            for d in "abc"
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    fit = [
        b for d in "abc" for b in corpus_batches(corpus, d, split="train", tokens=16 * 64 * 8, seq_len=16, batch_size=64, seed=99)
    ]  # fmt: skip
    return corpus, model, opt, fit


def test_ekfac_eigenvalues_are_the_gauss_newton_diagonal_in_the_kronecker_eigenbasis(setup):
    _, model, _, fit = setup
    params = trainable_params(model)
    pc = KFACPreconditioner(damping=0.1).bind(params).fit(model, lm_loss, fit)
    exact = ExactHessianPreconditioner().bind(params).fit(model, lm_loss, fit)
    QG, QA, lam = pc.eig_[0]
    # reorder the dense Hessian to the layer's [out, in + bias] layout
    order = [o * D + i if i < D else V * D + o for o in range(V) for i in range(D + 1)]
    H = exact.hessian_[order][:, order]
    Q = torch.kron(QG.double(), QA.double())
    target = torch.diagonal(Q.T @ H @ Q).view(V, D + 1).numpy()
    assert np.corrcoef(target.ravel(), lam.numpy().ravel())[0, 1] > 0.97
    assert abs(lam.numpy().sum() / target.sum() - 1) < 0.05  # trace of the GN (basis-free)


def test_ekfac_influence_is_closest_to_the_exact_inverse_gauss_newton(setup):
    corpus, model, opt, fit = setup
    params = trainable_params(model)
    lam = KFACPreconditioner(damping=0.1).bind(params).fit(model, lm_loss, fit).eig_[0][2]
    tb = {d: list(corpus_batches(corpus, d, split="train", tokens=2048, seq_len=16, batch_size=32, seed=5)) for d in "abc"}
    vb = {"t": list(corpus_batches(corpus, "t", split="val", tokens=2048, seq_len=16, batch_size=32, seed=6))}
    preconditioners = {
        "exact": ExactHessianPreconditioner(damping=0.1 * float(lam.mean())),  # the same damping as EK-FAC's
        "ekfac": KFACPreconditioner(damping=0.1),
        "kfac": KFACPreconditioner(damping=0.1, eigen_correction=False),
        "diag-gn": "diag-gn",
        "adam": "adam",
        "identity": "identity",
    }
    m = {
        name: compute_group_influence(model, tb, vb, preconditioner=p, fit_batches=fit, optimizer=opt, damping=None).matrix[:, 0]
        for name, p in preconditioners.items()
    }
    exact = m.pop("exact")
    err = {k: np.linalg.norm(v - exact) / np.linalg.norm(exact) for k, v in m.items()}
    cos = m["ekfac"] @ exact / np.linalg.norm(m["ekfac"]) / np.linalg.norm(exact)
    assert cos > 0.9, (cos, m, exact)
    assert err["ekfac"] == min(err.values()), err
    assert err["ekfac"] < 0.5
