"""TiKMiX-D: exact solutions (KKT, brute force), bounds, availability, Pareto, and the live mixer."""

from __future__ import annotations

import itertools
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mixlab.errors import ConfigError, MixlabError
from mixlab.influence import GroupInfluence
from mixlab.mixers import MixingContext, get_mixer
from mixlab.mixers.tikmix_d import (
    hedge_step,
    normalised_influence,
    paper_objective,
    solve_linear,
    solve_tikmix_d,
    target_reliability,
)
from mixlab.mixture import Mixture

torch.set_num_threads(1)
I3 = np.array([[1.0, 0.2], [0.3, 0.9], [-0.5, -0.1]])


def simplex_grid(step=0.01):
    n = round(1 / step)
    for a, b in itertools.product(range(n + 1), repeat=2):
        if a + b <= n:
            yield np.array([a, b, n - a - b]) / n


def entropy(w):
    w = np.clip(w, 1e-300, None)
    return float(-(w * np.log(w)).sum())


@pytest.mark.parametrize("strength", [0.05, 0.3, 2.0])
def test_entropy_solution_satisfies_kkt(strength):
    a = np.array([0.7, 0.1, -0.4, 0.5])
    lo, hi = np.array([0.05, 0.0, 0.1, 0.0]), np.array([0.5, 1.0, 1.0, 0.3])
    w = solve_linear(a, lower=lo, upper=hi, regularizer="entropy", strength=strength)
    assert w.sum() == pytest.approx(1, abs=1e-9) and np.all(w >= lo - 1e-12) and np.all(w <= hi + 1e-12)
    grad = a - strength * (np.log(w) + 1)  # d/dw of the concave objective
    inside = (w > lo + 1e-9) & (w < hi - 1e-9)
    assert inside.any()
    nu = grad[inside].mean()
    np.testing.assert_allclose(grad[inside], nu, atol=1e-7)
    assert np.all(grad[w <= lo + 1e-9] <= nu + 1e-7)
    assert np.all(grad[w >= hi - 1e-9] >= nu - 1e-7)


@pytest.mark.parametrize(
    ("regularizer", "strength"), [("entropy", 0.2), ("kl", 0.2), ("l2", 0.5), ("entropy", 0.0)]
)
def test_linear_objective_beats_brute_force(regularizer, strength):
    prior = np.array([0.2, 0.3, 0.5])
    lo, hi = np.array([0.0, 0.1, 0.0]), np.array([0.7, 1.0, 1.0])
    a = I3 @ np.array([0.5, 0.5])
    sol = solve_tikmix_d(
        I3, lower=lo, upper=hi, objective="linear", regularizer=regularizer, strength=strength, prior=prior
    )

    def value(w):
        reg = {
            "entropy": -entropy(w),
            "kl": float(np.sum(w * np.log(np.clip(w, 1e-300, None) / prior))),
            "l2": 0.5 * float(((w - prior) ** 2).sum()),
        }
        return float(a @ w) - strength * reg[regularizer]

    best = max(value(w) for w in simplex_grid() if np.all(w >= lo - 1e-12) and np.all(w <= hi + 1e-12))
    assert value(sol.weights) >= best - 1e-9
    assert np.all(sol.weights >= lo - 1e-9) and np.all(sol.weights <= hi + 1e-9)


def test_paper_objective_beats_brute_force_and_keeps_pareto():
    prev = np.array([0.2, 0.6, 0.2])
    sol = solve_tikmix_d(I3, previous=prev)
    assert sol.pareto
    S = I3.T
    assert np.all(S @ sol.weights >= S @ prev - 1e-7)
    S_hat, c = normalised_influence(I3), np.array([0.5, 0.5])
    feasible = [w for w in simplex_grid(0.01) if np.all(S @ w >= S @ prev)]
    best = min(paper_objective(w, S_hat, c, 1, 1, 1) for w in feasible)
    assert sol.objective <= best + 1e-6
    free = solve_tikmix_d(I3)
    best_free = min(paper_objective(w, S_hat, c, 1, 1, 1) for w in simplex_grid(0.01))
    assert free.objective <= best_free + 1e-6


def test_zero_regularisation_puts_all_weight_on_best_domain():
    infl = np.array([[0.1, 0.3], [0.9, 0.8], [0.4, 0.2]])
    lin = solve_tikmix_d(infl, objective="linear", strength=0.0)
    np.testing.assert_allclose(lin.weights, [0, 1, 0])
    paper = solve_tikmix_d(infl, alpha=0.0, gamma=0.0)
    np.testing.assert_allclose(paper.weights, [0, 1, 0], atol=1e-6)
    capped = solve_tikmix_d(infl, objective="linear", strength=0.0, upper=[1, 0.6, 1])
    np.testing.assert_allclose(capped.weights, [0, 0.6, 0.4])  # best up to its cap, then the runner-up


def test_strong_regularisation_stays_near_the_prior():
    infl = np.array([[0.1, 0.3], [0.9, 0.8], [0.4, 0.2]])
    prev = np.array([0.5, 0.2, 0.3])
    kl = solve_tikmix_d(infl, objective="linear", regularizer="kl", strength=1e4, previous=prev)
    np.testing.assert_allclose(kl.weights, prev, atol=1e-4)
    l2 = solve_tikmix_d(infl, objective="linear", regularizer="l2", strength=1e4, previous=prev)
    np.testing.assert_allclose(l2.weights, prev, atol=1e-4)
    ent = solve_tikmix_d(infl, objective="linear", strength=1e4)
    np.testing.assert_allclose(ent.weights, np.full(3, 1 / 3), atol=1e-4)
    paper = solve_tikmix_d(infl, gamma=1e4)
    np.testing.assert_allclose(paper.weights, np.full(3, 1 / 3), atol=1e-3)


def test_infeasible_pareto_is_dropped_with_a_warning(caplog):
    prev = np.array([0.0, 1.0, 0.0])
    with caplog.at_level(logging.WARNING):
        sol = solve_tikmix_d(I3, previous=prev, upper=[1.0, 0.5, 1.0])
    assert not sol.pareto and "Pareto" in caplog.text
    assert sol.weights[1] <= 0.5 + 1e-9


def _ctx(gi, **kw):
    domains = gi.train_domains
    return MixingContext(
        domains=domains, available_tokens={"a": 3000, "b": 100, "c": 5000}, total_tokens=10_000,
        live=SimpleNamespace(influence=gi), target_domains=gi.target_domains, **kw,
    )  # fmt: skip


def test_mixer_respects_bounds_and_availability():
    gi = GroupInfluence(
        np.array([[0.1, 0.3], [0.9, 0.8], [0.4, 0.2]]), np.zeros((3, 2)), ["a", "b", "c"], ["a", "b"]
    )
    for params in (
        {},
        {"objective": "linear", "strength": 0.0},
        {"objective": "linear", "regularizer": "l2", "strength": 0.1},
    ):
        ctx = _ctx(
            gi,
            max_epochs=2.0,
            lower={"a": 0.15},
            upper={"c": 0.5},
            previous=Mixture({"a": 0.4, "b": 0.01, "c": 0.59}),
        )
        mix = get_mixer("tikmix-d", **params).propose(ctx).mixture
        w = mix.to_array(ctx.domains)
        assert ctx.constraints().satisfied(w, tol=1e-7), (params, mix)
        assert w[1] <= 2.0 * 100 / 10_000 + 1e-9  # availability cap of b
        assert w[0] >= 0.15 - 1e-9 and w[2] <= 0.5 + 1e-9


def test_mixer_needs_a_live_model_and_names_a_command_that_exists():
    ctx = MixingContext(domains=["a", "b"], available_tokens={"a": 1, "b": 1}, total_tokens=10)
    with pytest.raises(MixlabError, match="live model") as err:
        get_mixer("tikmix-d").propose(ctx)
    assert "mixlab run --config run.yaml --mixer tikmix-d" in str(err.value)  # `run` has --mixer, not --method


class RandomCorpus:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.domains = ["x", "y", "z"]
        self.data = {
            d: (rng.integers(0, 16 * (i + 1), 3000), rng.integers(0, 16 * (i + 1), 800))
            for i, d in enumerate(self.domains)
        }

    def train_tokens(self, d):
        return self.data[d][0]

    def val_tokens(self, d):
        return self.data[d][1]


def _live_ctx():
    """A 1-layer GPT after one Adam step, as the live model of a stage-1 context over RandomCorpus."""
    from mixlab.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=48, block_size=16, n_layer=1, n_head=2, n_embd=16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16, dtype=torch.long))[1].backward()
    opt.step()
    corpus = RandomCorpus()
    ctx = MixingContext(
        domains=corpus.domains, available_tokens={d: 3000 for d in corpus.domains}, total_tokens=10_000,
        corpus=corpus, live=SimpleNamespace(model=model, optimizer=opt, seq_len=16, batch_size=4), stage=1,
        previous=Mixture.uniform(corpus.domains),
    )  # fmt: skip
    return model, corpus, ctx


def test_mixer_measures_influence_on_the_live_model():
    model, corpus, ctx = _live_ctx()
    mixer = get_mixer("tikmix-d", tokens_per_domain=2 * 4 * 16)
    proposal = mixer.propose(ctx)
    mix = proposal.mixture
    assert mix.domains == corpus.domains
    gi = proposal.influence  # the proposal carries the matrix it was chosen from
    assert proposal.solver["success"] and proposal.measurements[0]["tokens"] == gi.tokens
    assert gi.matrix.shape == (3, 3) and gi.preconditioner == "adam"
    assert ctx.compute.tokens == gi.tokens == 6 * 2 * 4 * 16
    assert ctx.compute.flops == pytest.approx(6 * sum(p.numel() for p in model.parameters()) * gi.tokens)
    S = gi.matrix.T
    prev = np.full(3, 1 / 3)
    assert np.all(S @ mix.to_array(corpus.domains) >= S @ prev - 1e-6 * np.abs(S).max())


def _train_briefly(corpus, steps=80, seq=32, bs=16, seed=0):
    """A 1-layer GPT trained on a uniform mix of the corpus's domains, and its Adam optimizer."""
    from mixlab.model import GPT, GPTConfig

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GPT(GPTConfig(vocab_size=corpus.vocab_size, block_size=seq, n_layer=1, n_head=2, n_embd=32))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        arr = corpus.train_tokens(corpus.domains[step % len(corpus.domains)])
        starts = rng.integers(0, len(arr) - seq - 1, size=bs)
        rows = torch.from_numpy(np.stack([arr[s : s + seq + 1] for s in starts]).astype(np.int64))
        loss = model(rows[:, :-1], rows[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _noise_target_ctx(corpus):
    """A briefly trained live model of the noise/target corpus, at stage 1 after a uniform stage."""
    model, opt = _train_briefly(corpus)
    ctx = MixingContext(
        domains=corpus.domains, available_tokens=corpus.token_counts(), total_tokens=100_000, corpus=corpus,
        target_domains=["target"], previous=Mixture.uniform(corpus.domains), stage=1,
        live=SimpleNamespace(model=model, optimizer=opt, seq_len=32, batch_size=8),
    )  # fmt: skip
    return model, opt, ctx


@pytest.mark.parametrize("objective", ["paper", "linear", "firstorder", "mirror"])
def test_tikmix_d_moves_weight_away_from_noise(noise_target_corpus, objective):
    # noise has nothing to teach about the learnable target domain: its gradients are unaligned with
    # the target's, so Group Influence ranks it last and the mixture moves away from it
    corpus = noise_target_corpus
    model, opt, ctx = _noise_target_ctx(corpus)
    mixer = get_mixer("tikmix-d", objective=objective, tokens_per_domain=4 * 8 * 32, rounds=2)
    proposal = mixer.propose(ctx)
    mix, gi = proposal.mixture, proposal.influence
    infl = dict(zip(gi.train_domains, gi.matrix[:, 0], strict=True))
    assert infl["target"] > infl["noise"]
    assert mix["noise"] < 0.4 < mix["target"]  # the previous (uniform) mixture had 0.5 each


def test_firstorder_objective_recovers_the_best_mixture_of_a_known_loss():
    """Target loss L(w) = -sum_j c_j sum_i u_ji log w_i has its minimum on the simplex at w* = sum_j c_j u_j.

    Its Group Influence at the mixture w is the first-order decrease per unit of domain i,
    I[i, j] = u_ji / w_i. Re-measured at every stage, the first-order objective walks to w* and lowers
    the loss at every stage; the paper's Eq. 10 stops elsewhere (its entropy and std terms)."""
    U = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.1, 0.2, 0.6]])  # two targets, rows sum to 1
    c = np.array([0.7, 0.3])
    best = c @ U

    def loss(w):
        return float(-(c @ U) @ np.log(w))

    w = np.full(4, 0.25)
    losses = [loss(w)]
    for _ in range(25):
        infl = (U / w).T  # [train domains, targets]
        sol = solve_tikmix_d(infl, previous=w, target_weights=c, objective="firstorder", step=0.5)
        assert sol.success and sol.fallback is None
        w = sol.weights
        losses.append(loss(w))
    np.testing.assert_allclose(w, best, atol=1e-4)
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:], strict=False))
    paper = solve_tikmix_d((U / best).T, previous=best, target_weights=c)
    assert np.abs(paper.weights - best).max() > 0.05


def test_firstorder_step_is_invariant_to_the_influence_scale_and_respects_bounds():
    infl = np.array([[0.1, 0.3], [0.9, 0.8], [0.4, 0.2]])
    prev = np.array([0.5, 0.2, 0.3])
    a = solve_tikmix_d(infl, previous=prev, objective="firstorder")
    b = solve_tikmix_d(1e-6 * infl, previous=prev, objective="firstorder")
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-9)
    assert a.weights[1] > prev[1] and a.weights[0] < prev[0]  # toward the most influential domain
    tiny = solve_tikmix_d(infl, previous=prev, objective="firstorder", step=1e-4)
    np.testing.assert_allclose(tiny.weights, prev, atol=1e-3)  # small step: stays in the trust region
    capped = solve_tikmix_d(infl, previous=prev, objective="firstorder", step=50, upper=[1, 0.4, 1])
    assert capped.weights[1] <= 0.4 + 1e-9 and capped.weights.sum() == pytest.approx(1)


def test_solver_status_is_recorded_and_a_failed_solve_is_visible(caplog):
    prev = np.array([0.2, 0.6, 0.2])
    ok = solve_tikmix_d(I3, previous=prev)
    rec = ok.to_dict()
    assert rec["solver"] == "slsqp" and rec["success"] and rec["status"] == 0 and rec["iterations"] > 0
    assert rec["fallback"] is None and "Optimization terminated" in rec["message"]
    with caplog.at_level(logging.WARNING):
        failed = solve_tikmix_d(I3, previous=prev, maxiter=1)
    assert not failed.success and failed.fallback == "previous" and failed.status == 9
    assert "SLSQP failed" in caplog.text and "Iteration limit" in failed.message
    np.testing.assert_allclose(failed.weights, prev)
    with pytest.raises(MixlabError, match="SLSQP found no converged"):
        solve_tikmix_d(I3, previous=prev, maxiter=1, on_failure="error")


def test_every_measurement_of_the_budget_is_counted_as_choosing_compute():
    _, _, ctx = _live_ctx()
    per = 2 * 4 * 16
    mixer = get_mixer("tikmix-d", tokens_per_domain=per, min_stability=1.0, max_tokens_per_domain=3 * per)
    proposal = mixer.propose(ctx)
    recs = proposal.measurements
    assert len(recs) == 3 and [r["seed"] for r in recs] == [0, 1, 2]
    assert ctx.compute.tokens == proposal.influence.tokens == 3 * 6 * per
    assert all(r["stability"] is None or -1 <= r["stability"] <= 1 for r in recs)


def test_pooled_measurements_fit_ekfac_once():
    _, _, ctx = _live_ctx()
    per = 2 * 4 * 16
    mixer = get_mixer(
        "tikmix-d", tokens_per_domain=per, preconditioner="ekfac", min_stability=1.0, max_tokens_per_domain=2 * per
    )
    proposal = mixer.propose(ctx)
    first, second = proposal.measurements
    assert second["tokens"] == 6 * per  # three training domains and three targets, no refit
    assert first["tokens"] == 6 * per + 2 * 3 * 2 * 4 * 16  # plus the fit: 2 batches per domain, 2 passes
    assert proposal.influence.preconditioner == "ekfac" and ctx.compute.tokens == first["tokens"] + second["tokens"]


def _log_loss_problem():
    """L(w) = -sum_j c_j sum_i u_ji log w_i: minimum on the simplex at w* = sum_j c_j u_j, Group Influence
    (first-order decrease per unit of domain i) I[i, j] = u_ji / w_i."""
    U = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.1, 0.2, 0.6]])
    c = np.array([0.7, 0.3])
    return U, c, c @ U, lambda w: float(-(c @ U) @ np.log(w))


@pytest.mark.parametrize("rounds", [3, 5, 100])
def test_mirror_steps_recover_the_best_mixture_of_a_known_loss(rounds):
    """Re-measured at each of K decisions, the exponentiated-gradient step with the Hedge step size (R =
    the largest range measured so far) walks from uniform to w*. K = 5 and 100 lower the loss at every
    step and end at w*; with K = 3 the first step overshoots this sharply curved loss (its Hessian is
    diag(u / w^2)) and the run still ends with less than half the uniform mixture's gap to the optimum."""
    U, c, best, loss = _log_loss_problem()
    w = np.full(4, 0.25)
    losses, ranges = [loss(w)], []
    for _ in range(rounds):
        infl = (U / w).T
        sol = solve_tikmix_d(infl, previous=w, target_weights=c, objective="mirror", reliability=1.0,
                             rounds=rounds, range_bound=max(ranges, default=None))  # fmt: skip
        assert sol.success and sol.details["rounds"] == rounds
        ranges.append(sol.details["range"])
        w = sol.weights
        losses.append(loss(w))
    gap = [x - loss(best) for x in losses]
    if rounds == 3:
        assert gap[-1] < 0.5 * gap[0] and np.abs(w - best).max() < 0.1
    else:
        assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:], strict=False))
        np.testing.assert_allclose(w, best, atol=0.05 if rounds == 5 else 1e-3)
    # normalising each round by its own range instead keeps oscillating around w*
    w = np.full(4, 0.25)
    for _ in range(10):
        w = solve_tikmix_d((U / w).T, previous=w, target_weights=c, objective="mirror", rounds=10).weights
    assert np.abs(w - best).max() > 0.05


def test_mirror_step_size_is_the_hedge_step_scaled_by_reliability_and_unit_free():
    a = np.array([[0.9], [0.5], [0.2], [0.1]])
    prev = np.array([0.1, 0.2, 0.3, 0.4])

    def logratio(sol):
        lr = np.log(sol.weights / prev)
        return lr - lr.mean()

    full = solve_tikmix_d(a, previous=prev, objective="mirror", reliability=1.0, rounds=4)
    # no bound binds: log(w / w0) = eta * rho * a - nu with eta * range(a) = sqrt(8 ln n / K)
    np.testing.assert_allclose(logratio(full), hedge_step(4, 4) * (a[:, 0] - a[:, 0].mean()) / 0.8, atol=1e-9)
    assert hedge_step(4, 4) == pytest.approx(np.sqrt(8 * np.log(4) / 4))
    quarter = solve_tikmix_d(a, previous=prev, objective="mirror", reliability=0.25, rounds=4)
    np.testing.assert_allclose(logratio(quarter), 0.25 * logratio(full), atol=1e-9)
    scaled = solve_tikmix_d(1e-7 * a, previous=prev, objective="mirror", reliability=1.0, rounds=4)
    np.testing.assert_allclose(scaled.weights, full.weights, atol=1e-9)
    longer = solve_tikmix_d(a, previous=prev, objective="mirror", reliability=1.0, rounds=16)
    np.testing.assert_allclose(logratio(longer), 0.5 * logratio(full), atol=1e-9)  # sqrt(1 / K)
    for rho in (0.0, -0.4):  # halves that disagree: the measurement is noise, nothing moves
        still = solve_tikmix_d(a, previous=prev, objective="mirror", reliability=rho, rounds=4)
        np.testing.assert_allclose(still.weights, prev, atol=1e-12)
        assert still.details["eta"] == 0.0
    capped = solve_tikmix_d(a, previous=prev, objective="mirror", reliability=1.0, rounds=1, upper=[0.3, 1, 1, 1])
    assert capped.weights[0] == pytest.approx(0.3) and capped.weights.sum() == pytest.approx(1)
    bounded = solve_tikmix_d(a, previous=prev, objective="mirror", reliability=1.0, rounds=4, range_bound=1.6)
    np.testing.assert_allclose(logratio(bounded), 0.5 * logratio(full), atol=1e-9)  # R = 1.6 = 2 x range
    rec = full.to_dict()
    assert rec["reliability"] == 1.0 and rec["rounds"] == 4 and rec["eta"] == pytest.approx(hedge_step(4, 4) / 0.8)


def test_target_reliability_is_the_split_half_reliability_of_the_weighted_influence():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(5, 2))
    halves = np.stack([signal + 0.1 * rng.normal(size=(5, 2)), signal + 0.1 * rng.normal(size=(5, 2))])
    gi = GroupInfluence(matrix=halves.mean(0), stderr=np.zeros((5, 2)), train_domains=list("abcde"),
                        target_domains=["x", "y"], half_matrices=halves, stability=0.0)  # fmt: skip
    assert target_reliability(gi, np.array([0.5, 0.5])) > 0.9
    # halves that are independent noise: the reliability scatters around 0 (so the step mostly vanishes)
    noise = [target_reliability(SimpleNamespace(half_matrices=rng.normal(size=(2, 5, 2))), np.array([1.0, 0.0]))
             for _ in range(200)]  # fmt: skip
    assert abs(float(np.median(noise))) < 0.3
    assert target_reliability(SimpleNamespace(half_matrices=None, stability=0.7), np.ones(2)) == 0.7


def test_mirror_needs_the_number_of_decisions():
    _, _, ctx = _live_ctx()
    with pytest.raises(MixlabError, match="number of decisions"):
        get_mixer("tikmix-d", objective="mirror", tokens_per_domain=2 * 4 * 16).propose(ctx)
    ctx.live.boundaries = (10, 20, 30)
    mixer = get_mixer("tikmix-d", objective="mirror", tokens_per_domain=2 * 4 * 16)
    proposal = mixer.propose(ctx)
    first = proposal.solver
    assert first["rounds"] == 3 and first["range_bound"] == first["range"]
    # the step's range bound is the largest range among the run's recorded measurements so far
    ctx.history = [{"stage": 0}, {"stage": 1, "influence": proposal.influence.to_dict() | {
        "matrix": (10 * proposal.influence.matrix).tolist()}}]
    assert mixer.propose(ctx).solver["range_bound"] == pytest.approx(10 * first["range"])


def test_fixed_budget_measures_once_whatever_the_stability():
    _, _, ctx = _live_ctx()
    per = 2 * 4 * 16
    mixer = get_mixer("tikmix-d", tokens_per_domain=per, min_stability=1.0, max_tokens_per_domain=3 * per,
                      budget="fixed", objective="mirror", rounds=2)  # fmt: skip
    assert len(mixer.propose(ctx).measurements) == 1 and ctx.compute.tokens == 6 * per
    with pytest.raises(ConfigError, match="unknown budget"):
        get_mixer("tikmix-d", tokens_per_domain=per, budget="lots").propose(ctx)


def test_measured_step_takes_the_scale_whose_continuation_lowered_the_target_most(noise_target_corpus):
    # the live model of a two-domain corpus whose "target" domain is learnable and "noise" is not:
    # every candidate is the mirror step at one scale; its continuation gain is measured on copies of
    # the model, and the proposal is the candidate with the largest measured gain
    corpus = noise_target_corpus
    model, opt, ctx = _noise_target_ctx(corpus)
    before = [p.detach().clone() for p in model.parameters()]
    mixer = get_mixer("tikmix-d", objective="mirror", tokens_per_domain=4 * 8 * 32, rounds=2, budget="fixed",
                      search_steps=3, search_scales=(0.0, 1.0, 4.0))  # fmt: skip
    proposal = mixer.propose(ctx)
    search = proposal.solver["search"]
    assert search["scales"] == [0.0, 1.0, 4.0] and len(search["gains"]) == 3 and search["steps"] == 3
    best = int(np.argmax(search["gains"]))
    assert search["chosen_scale"] == search["scales"][best] == proposal.solver["step_scale"]
    # the candidates are the mirror steps at those scales, recomputed from the recorded influence
    c = np.array([1.0])
    steps = [solve_tikmix_d(proposal.influence.matrix, previous=np.full(2, 0.5), target_weights=c,
                            objective="mirror", rounds=2, step_scale=x,
                            reliability=target_reliability(proposal.influence, c)).weights
             for x in search["scales"]]  # fmt: skip
    assert np.allclose(steps[0], 0.5)  # scale 0 keeps the previous mixture
    t = corpus.domains.index("target")
    assert steps[2][t] > steps[1][t] > 0.5  # a longer step moves further towards the learnable domain
    assert proposal.mixture.to_array(corpus.domains) == pytest.approx(steps[best], abs=1e-9)
    # the gains are real continuations: learning the target domain for 3 steps lowers its loss more
    # than mixing in noise; the live model is untouched and the continuations are choosing compute
    assert search["gains"][2] > search["gains"][0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert ctx.compute.flops == pytest.approx(proposal.influence.flops + search["flops"])


def test_measured_step_is_only_for_the_mirror_objective():
    _, _, ctx = _live_ctx()
    with pytest.raises(ConfigError, match="objective=mirror"):
        get_mixer("tikmix-d", tokens_per_domain=2 * 4 * 16, search_steps=4).propose(ctx)
    with pytest.raises(ConfigError, match="step scale"):
        solve_tikmix_d(I3, objective="mirror", step_scale=-1.0)
