"""Group Influence on a least-squares model, where the influence has a closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixlab.errors import MixlabError
from mixlab.influence import GroupInfluence, compute_group_influence
from mixlab.influence.group import split_half_stability
from mixlab.influence.preconditioners import ExactHessianPreconditioner

torch.set_num_threads(1)


def mse(model, batch):
    x, y = batch
    return 0.5 * ((model(x).squeeze(-1) - y) ** 2).mean()


def make_problem(seed=0, d=4, n=60):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=d)
    domains = {}
    for i, shift in enumerate((0.0, 1.0, -2.0)):
        X = rng.normal(loc=shift, size=(n, d))
        y = X @ (theta + 0.5 * i * rng.normal(size=d)) + 0.3 * rng.normal(size=n) + i
        domains[f"d{i}"] = (X, y)
    XT = rng.normal(loc=0.5, size=(n, d))
    yT = XT @ theta + 0.1 * rng.normal(size=n)
    return domains, {"t": (XT, yT)}


def fitted_linear(domains):
    X = np.concatenate([v[0] for v in domains.values()])
    y = np.concatenate([v[1] for v in domains.values()])
    Xa = np.hstack([X, np.ones((len(X), 1))])
    sol = np.linalg.lstsq(Xa, y, rcond=None)[0]
    model = torch.nn.Linear(X.shape[1], 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(sol[:-1])[None])
        model.bias.copy_(torch.tensor(sol[-1:]))
    return model, Xa, y, sol


def to_batches(X, y, k=1):
    return [
        (torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
        for a, b in zip(np.array_split(X, k), np.array_split(y, k), strict=True)
    ]


def grad_np(Xa, y, sol):
    return Xa.T @ (Xa @ sol - y) / len(y)


def test_exact_preconditioner_matches_closed_form_and_finite_difference():
    domains, targets = make_problem()
    model, Xa, y, sol = fitted_linear(domains)
    H = Xa.T @ Xa / len(y)
    XT, yT = targets["t"]
    XTa = np.hstack([XT, np.ones((len(XT), 1))])
    gT = grad_np(XTa, yT, sol)
    pooled = (torch.tensor(Xa[:, :-1], dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    gi = compute_group_influence(
        model,
        {d: to_batches(*v, k=3) for d, v in domains.items()},
        {"t": to_batches(XT, yT, k=2)},
        loss_fn=mse,
        preconditioner="exact",
        fit_batches=[pooled],
    )
    for i, (X, yy) in enumerate(domains.values()):
        Xi = np.hstack([X, np.ones((len(X), 1))])
        closed = gT @ np.linalg.solve(H, grad_np(Xi, yy, sol))

        # independent check: re-solve the weighted least squares L + eps * L_i and difference the target loss
        def target_loss(eps, Xi=Xi, yy=yy):
            A = H + eps * Xi.T @ Xi / len(yy)
            b = Xa.T @ y / len(y) + eps * Xi.T @ yy / len(yy)
            th = np.linalg.solve(A, b)
            return 0.5 * np.mean((XTa @ th - yT) ** 2)

        eps = 1e-4
        fd = -(target_loss(eps) - target_loss(-eps)) / (2 * eps)
        assert abs(closed - fd) <= 1e-4 * abs(fd)
        assert abs(gi.matrix[i, 0] - closed) <= 1e-3 * abs(closed), (gi.matrix[i, 0], closed)
    assert gi.preconditioner == "exact"
    assert gi.tokens > 0 and gi.seconds > 0
    assert gi.batches["train"] == {"d0": 3, "d1": 3, "d2": 3}


def test_identity_is_gradient_inner_product():
    domains, targets = make_problem(seed=1)
    model, _, _, _ = fitted_linear({"d0": domains["d0"]})  # not at the joint optimum: gradients nonzero
    params = list(model.parameters())

    def g(X, yy):
        loss = mse(model, (torch.tensor(X, dtype=torch.float32), torch.tensor(yy, dtype=torch.float32)))
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])

    gi = compute_group_influence(
        model, {d: to_batches(*v) for d, v in domains.items()}, {"t": to_batches(*targets["t"])}, loss_fn=mse
    )
    for i, v in enumerate(domains.values()):
        expected = float(g(*targets["t"]) @ g(*v))
        assert gi.matrix[i, 0] == pytest.approx(expected, rel=1e-5)
    assert np.isnan(gi.stderr).all()  # one batch per domain: no spread to estimate


def test_callable_and_adam_preconditioners():
    domains, targets = make_problem(seed=2)
    model, _, _, _ = fitted_linear({"d1": domains["d1"]})
    tb = {d: to_batches(*v) for d, v in domains.items()}
    vb = {"t": to_batches(*targets["t"])}
    base = compute_group_influence(model, tb, vb, loss_fn=mse)
    doubled = compute_group_influence(model, tb, vb, loss_fn=mse, preconditioner=lambda v: 2 * v)
    np.testing.assert_allclose(doubled.matrix, 2 * base.matrix, rtol=1e-6)

    opt = torch.optim.Adam(model.parameters(), lr=0.0)
    with pytest.raises(MixlabError, match="second moment"):
        compute_group_influence(model, tb, vb, loss_fn=mse, preconditioner="adam", optimizer=opt)
    mse(model, tb["d0"][0]).backward()
    opt.step()
    opt.zero_grad()
    adam = compute_group_influence(model, tb, vb, loss_fn=mse, preconditioner="adam", optimizer=opt)
    params = list(model.parameters())
    v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in params]) / (1 - 0.999)
    diag = 1 / (v.sqrt() + 1e-8)
    manual = compute_group_influence(model, tb, vb, loss_fn=mse, preconditioner=lambda x: x * diag)
    np.testing.assert_allclose(adam.matrix, manual.matrix, rtol=1e-5)


def test_stderr_matches_delta_method_by_hand():
    domains, targets = make_problem(seed=3)
    model = torch.nn.Linear(4, 1)
    torch.nn.init.normal_(model.weight, generator=torch.Generator().manual_seed(0))
    params = list(model.parameters())
    tb = {d: to_batches(*v, k=4) for d, v in domains.items()}
    vb = {"t": to_batches(*targets["t"], k=5)}
    gi = compute_group_influence(model, tb, vb, loss_fn=mse, min_stderr_batches=2)

    def g(batch):
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(mse(model, batch), params)]).double()

    T = torch.stack([g(b) for b in vb["t"]])
    for i, d in enumerate(domains):
        D = torch.stack([g(b) for b in tb[d]])
        s = D @ T.mean(0)
        t = T @ D.mean(0)
        var = s.var(unbiased=True) / len(s) + t.var(unbiased=True) / len(t)
        assert gi.matrix[i, 0] == pytest.approx(float(T.mean(0) @ D.mean(0)), rel=1e-5)
        assert gi.stderr[i, 0] == pytest.approx(float(var.sqrt()), rel=1e-4)


def test_exact_refuses_large_models_and_roundtrip(tmp_path):
    model = torch.nn.Linear(200, 100)
    with pytest.raises(MixlabError, match="max_params"):
        ExactHessianPreconditioner().fit(model, mse, [(torch.zeros(2, 200), torch.zeros(2))])
    gi = GroupInfluence(
        np.arange(6.0).reshape(3, 2), np.full((3, 2), np.nan), ["a", "b", "c"], ["x", "y"], tokens=5
    )
    gi.save(tmp_path / "gi.json")
    back = GroupInfluence.load(tmp_path / "gi.json")
    np.testing.assert_array_equal(back.matrix, gi.matrix)
    assert np.isnan(back.stderr).all() and back.train_domains == ["a", "b", "c"] and back.tokens == 5
    assert gi.aggregate({"a": 1.0}) == pytest.approx(0.5)


def test_split_half_matrices_and_stability_by_hand():
    """Half A = even batches, half B = odd ones, each from its own target mean; stability is the
    Spearman-Brown correction of the column-centred correlation of the two halves."""
    domains, targets = make_problem(seed=4)
    model = torch.nn.Linear(4, 1)
    torch.nn.init.normal_(model.weight, generator=torch.Generator().manual_seed(1))
    params = list(model.parameters())
    tb = {d: to_batches(*v, k=4) for d, v in domains.items()}
    vb = {"t": to_batches(*targets["t"], k=6)}
    gi = compute_group_influence(model, tb, vb, loss_fn=mse)

    def g(batch):
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(mse(model, batch), params)]).double()

    halves = np.zeros((2, 3, 1))
    for h in (0, 1):
        v = torch.stack([g(b) for b in vb["t"][h::2]]).mean(0)
        for i, d in enumerate(domains):
            halves[h, i, 0] = float(torch.stack([g(b) for b in tb[d][h::2]]).mean(0) @ v)
    np.testing.assert_allclose(gi.half_matrices, halves, rtol=1e-5)
    a, b = (x[:, 0] - x[:, 0].mean() for x in halves)
    r = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert gi.stability == pytest.approx(2 * r / (1 + r), rel=1e-6)
    assert np.isnan(gi.stderr).all() and "fewer than 8 batches" in gi.stderr_method
    back = GroupInfluence.from_dict(gi.to_dict())
    assert back.stability == pytest.approx(gi.stability)
    np.testing.assert_allclose(back.half_matrices, gi.half_matrices)
    one = compute_group_influence(model, {d: v[:1] for d, v in tb.items()}, vb, loss_fn=mse)
    assert np.isnan(one.stability) and one.half_matrices is None


def test_split_half_stability_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(6, 2))
    noisy = np.stack([signal + 2.0 * rng.normal(size=(6, 2)) for _ in range(2)])
    clean = np.stack([signal + 0.05 * rng.normal(size=(6, 2)) for _ in range(2)])
    assert split_half_stability(clean) > 0.99
    assert split_half_stability(noisy) < 0.8
    # a constant added to a target column (every domain equally helpful) does not count as agreement
    shifted = np.stack([rng.normal(size=(6, 2)) + 100.0, rng.normal(size=(6, 2)) + 100.0])
    assert split_half_stability(shifted) < 0.8
