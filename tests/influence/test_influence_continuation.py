"""Short continuations from the live model: a known-answer quadratic problem and the live state untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixlab.influence.continuation import continuation_labels, mixture_batch_fn

MU = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
MU_T = np.array([0.6, 0.5])


class Point(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))


def loss_fn(model, batch):
    kind, w = batch
    if kind == "target":
        return 0.5 * ((model.theta - torch.tensor(MU_T)) ** 2).sum()
    mu = torch.tensor(MU)
    return 0.5 * (torch.tensor(w) * ((model.theta[None] - mu) ** 2).sum(1)).sum()


def test_labels_are_the_measured_nonlinear_loss_change():
    """Gradient steps on sum_i w_i 0.5 |theta - mu_i|^2 give theta_k = m + (1 - lr)^k (theta_0 - m),
    m = sum_i w_i mu_i: the target loss after k steps is quadratic in w, not linear."""
    model = Point()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    W = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
    y, cost = continuation_labels(
        model, opt, W, train_batch=lambda w, step: ("mix", w), eval_batches={"t": [("target", None)]},
        target_weights={"t": 1.0}, steps=5, loss_fn=loss_fn,
    )  # fmt: skip
    base = 0.5 * float(MU_T @ MU_T)
    for w, label in zip(W, y, strict=True):
        m = w @ MU
        theta = m + 0.7**5 * (0 - m)
        assert label == pytest.approx(base - 0.5 * float(((theta - MU_T) ** 2).sum()), rel=1e-9)
    assert abs(y[2] - 0.5 * (y[0] + y[1])) > 0.05  # the midpoint's label is not the mean of the ends
    assert torch.equal(model.theta.detach(), torch.zeros(2, dtype=torch.float64))  # live model untouched
    assert cost["tokens"] > 0 and cost["flops"] > 0


def test_optimizer_state_is_copied_not_shared():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    model(x).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in opt.state[model.weight].items() if torch.is_tensor(v)}
    weight = model.weight.detach().clone()

    def lf(m, batch):
        return (m(batch) ** 2).mean()

    continuation_labels(
        model, opt, np.ones((2, 1)), train_batch=lambda w, s: x, eval_batches={"t": [x]},
        target_weights={"t": 1.0}, steps=3, loss_fn=lf,
    )  # fmt: skip
    for k, v in before.items():
        assert torch.equal(opt.state[model.weight][k], v)
    assert torch.equal(model.weight.detach(), weight)


def test_mixture_batches_follow_the_mixture_with_common_windows():
    arrays = [np.full(500, i, dtype=np.int64) + np.arange(500) * 0 for i in range(3)]
    fn = mixture_batch_fn(arrays, seq_len=8, batch_size=64, seed=1)
    b = fn(np.array([0.5, 0.5, 0.0]), 0)
    assert b.input_ids.shape == (64, 8) and set(b.input_ids[:, 0].tolist()) <= {0, 1}
    again = fn(np.array([0.5, 0.5, 0.0]), 0)
    assert torch.equal(b.input_ids, again.input_ids)
    assert (fn(np.array([0, 0, 1.0]), 3).input_ids == 2).all()
