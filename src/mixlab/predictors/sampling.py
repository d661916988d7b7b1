"""RegMix's scheme for drawing the mixtures of a proxy sweep (arXiv 2407.01492, Sec. 3.2;
sail-sg/regmix ``mixture_config/synthesize_mixture.py``).

- Prior: the natural token distribution at temperature 0.5, ``p_i ~ tokens_i^0.5`` (flattens it, so
  small domains are explored).
- Each mixture ~ Dirichlet(strength * p) with the strength drawn from 15 values log-spaced in
  [0.1, 5.0]: small strengths give sparse mixtures (a few domains), large ones mixtures near the prior,
  so the sweep covers a spread of sparsity.
- Weights below 2e-4 are zeroed and the row renormalised.
- Availability: a draw is rejected when it would repeat a domain more than ``max_epochs`` times
  (15 in RegMix) over the proxy's token budget; bounds from :class:`~mixlab.mixture.MixtureConstraints`
  reject draws the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mixlab.errors import ConfigError
from mixlab.mixture import Mixture, MixtureConstraints


def temperature_prior(available_tokens: Mapping[str, float], domains: Sequence[str], temperature: float = 0.5) -> np.ndarray:
    """``p_i ~ tokens_i^temperature`` over ``domains`` (domains with no tokens get 0)."""
    t = np.array([float(available_tokens.get(d, 0.0)) for d in domains])
    if (t < 0).any() or t.sum() <= 0:
        raise ConfigError("available token counts must be >= 0 with a positive total")
    p = np.where(t > 0, t**temperature, 0.0)
    return p / p.sum()


def regmix_mixtures(
    available_tokens: Mapping[str, float],
    n: int,
    *,
    domains: Sequence[str] | None = None,
    tokens: float | None = None,
    max_epochs: float | None = 15.0,
    constraints: MixtureConstraints | None = None,
    temperature: float = 0.5,
    strengths: tuple[float, float] = (0.1, 5.0),
    n_strengths: int = 15,
    min_weight: float = 2e-4,
    seed: int = 0,
    max_draws: int | None = None,
) -> list[Mixture]:
    """Draw ``n`` distinct mixtures with RegMix's scheme (see the module docstring).

    ``tokens`` is each proxy run's budget; with ``max_epochs`` it caps ``w_i <= max_epochs * available_i / tokens``.
    """
    doms = list(domains) if domains is not None else list(available_tokens)
    if n < 1:
        raise ConfigError(f"number of mixtures must be >= 1, got {n}")
    prior = temperature_prior(available_tokens, doms, temperature)
    upper = np.ones(len(doms))
    lower = np.zeros(len(doms))
    if max_epochs is not None and tokens:
        avail = np.array([float(available_tokens.get(d, 0.0)) for d in doms])
        upper = np.minimum(upper, max_epochs * avail / float(tokens))
        if upper.sum() < 1:
            raise ConfigError(
                f"the corpus has too few tokens for {tokens:.3g}-token proxies at max_epochs={max_epochs}: "
                "lower the proxy budget or raise max_epochs"
            )
    if constraints is not None:
        idx = [list(constraints.domains).index(d) for d in doms]
        upper = np.minimum(upper, constraints.upper[idx])
        lower = np.maximum(lower, constraints.lower[idx])
    grid = np.logspace(np.log10(strengths[0]), np.log10(strengths[1]), n_strengths)
    rng = np.random.default_rng(seed)
    alpha = np.maximum(prior, 1e-6)
    out: list[np.ndarray] = []
    seen: set[bytes] = set()
    limit = max_draws or 1000 * n
    draws = 0
    while len(out) < n:
        if draws >= limit:
            raise ConfigError(
                f"only {len(out)} of {n} sampled mixtures satisfy the bounds/availability caps after {draws} "
                "draws; loosen the bounds or raise max_epochs"
            )
        draws += 1
        w = rng.dirichlet(alpha * rng.choice(grid))
        w[w < min_weight] = 0.0
        if w.sum() <= 0:
            continue
        w = w / w.sum()
        if (w > upper + 1e-12).any() or (w < lower - 1e-12).any():
            continue
        key = np.round(w, 6).tobytes()
        if key in seen:
            continue
        seen.add(key)
        out.append(w)
    return [Mixture.from_weights(w, doms) for w in out]
