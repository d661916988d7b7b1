"""RegMix mixer on a fake ProxyRunner whose losses follow a known Data Mixing Law."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mixlab.errors import MixlabError
from mixlab.mixers import MixingContext, ProxyResult, get_mixer
from mixlab.mixture import Mixture

torch.set_num_threads(1)

DOMAINS = ["web", "code", "math"]
# L_j(w) = c_j + k_j exp(-T_j . w): each domain helps itself most and the others a little.
C = np.array([2.0, 1.5, 1.8])
K = np.array([3.0, 3.0, 2.5])
T = np.array([[3.0, 0.5, 0.3], [0.4, 3.5, 0.8], [0.3, 1.0, 2.5]])


def true_losses(w: np.ndarray) -> np.ndarray:
    return C + K * np.exp(-(T @ w))


class LawProxy:
    """A ProxyRunner that 'trains' by evaluating the law (plus a little noise)."""

    def __init__(self, noise: float = 0.002) -> None:
        self.calls: list[Mixture] = []
        self.rng = np.random.default_rng(0)
        self.noise = noise

    def train(self, mixture, *, tokens, seed=0, eval_every=None, name=None):
        self.calls.append(mixture)
        w = mixture.to_array(DOMAINS)
        loss = true_losses(w) + self.rng.normal(0, self.noise, 3)
        return ProxyResult(mixture, {100: dict(zip(DOMAINS, loss.tolist(), strict=True))}, tokens=tokens,
                           flops=6.0 * 1e5 * tokens, seconds=0.01)


def _ctx(proxy, **kw):
    base = dict(domains=DOMAINS, available_tokens={"web": 5e6, "code": 2e6, "math": 1e6}, total_tokens=2_000_000,
                proxy=proxy)
    base.update(kw)
    return MixingContext(**base)


def _optimum(upper=None):
    obj = lambda w: true_losses(w).mean()  # noqa: E731
    bounds = [(0, 1 if upper is None else u) for u in (upper or [1, 1, 1])]
    res = minimize(obj, np.ones(3) / 3, bounds=bounds, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                   method="SLSQP")
    return res.x, obj(res.x)


def test_regmix_finds_near_optimal_mixture_and_counts_compute():
    proxy = LawProxy()
    ctx = _ctx(proxy)
    mixer = get_mixer("regmix", n_runs=24, proxy_tokens=10_000, n_samples=20_000, top_k=32)
    mix = mixer.propose(ctx).mixture
    assert len(proxy.calls) == 24
    assert ctx.compute.tokens == 24 * 10_000 and ctx.compute.flops == pytest.approx(24 * 6e5 * 10_000)
    w = mix.to_array(DOMAINS)
    assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all()
    w_star, f_star = _optimum()
    f_uniform = true_losses(np.ones(3) / 3).mean()
    f = true_losses(w).mean()
    # within 1% of the optimal excess over the best possible, and much better than uniform
    assert f - f_star < 0.05 * (f_uniform - f_star)
    assert np.abs(w - w_star).max() < 0.08


def test_regmix_respects_bounds_and_targets():
    proxy = LawProxy()
    ctx = _ctx(proxy, upper={"web": 0.3}, target_domains=["code"])
    mix = get_mixer("regmix", n_runs=20, proxy_tokens=10_000, n_samples=10_000, top_k=16).propose(ctx).mixture
    assert mix["web"] <= 0.3 + 1e-6
    # the target is code's loss only: code must dominate the mixture
    assert mix["code"] == max(mix.weights.values())


def test_regmix_paper_setting_runs_and_needs_a_proxy():
    proxy = LawProxy()
    mix = get_mixer("regmix", n_runs=40, proxy_tokens=10_000, predictor="lightgbm",
                    predictor_params={"min_data_in_leaf": 3, "n_estimators": 200, "learning_rate": 0.05},
                    search="topk", n_samples=5_000, top_k=16).propose(_ctx(proxy)).mixture
    assert abs(sum(mix.weights.values()) - 1) < 1e-9
    with pytest.raises(MixlabError, match="ProxyRunner"):
        get_mixer("regmix").propose(_ctx(None))
