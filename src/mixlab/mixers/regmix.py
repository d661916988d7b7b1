"""RegMix (arXiv 2407.01492): regression over many small proxy runs, then search the regressor.

1. Draw ``n_runs`` mixtures with RegMix's scheme (:func:`mixlab.predictors.sampling.regmix_mixtures`:
   Dirichlet around the natural distribution at temperature 0.5, strengths log-spaced in [0.1, 5],
   weights < 2e-4 zeroed, at most ``proxy_max_epochs`` passes over a domain in a proxy's budget).
2. Train one proxy per mixture through ``ctx.proxy`` (``ProxyRunner.train``) and read each run's final
   validation loss on the target domains.
3. Fit a mixture -> loss predictor (one output per target domain).
4. Minimise the predicted target objective (``ctx.target_weight_vector()``: the weighted sum of target
   losses) on the simplex under the context's bounds and availability cap: RegMix's average of the
   top-k of many Dirichlet samples, refined by SLSQP when that predicts lower (``search="auto"``).

mixlab's defaults depart from the paper in one place, documented here: the predictor is mixlab's best
(``"mixlab"``, a law + GP ensemble) rather than LightGBM, because a pipeline affords tens of proxies,
not 512, and LightGBM's leaves need 20 runs each (see bench/regmix_data.py: at 102 runs LightGBM ranks
unseen mixtures at Spearman 0.947, mixlab's predictor at 0.99). ``predictor="lightgbm", search="topk"``
is the paper's setting.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mixlab.errors import MixlabError
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.predictors import get_predictor
from mixlab.predictors.sampling import regmix_mixtures, temperature_prior
from mixlab.predictors.search import search as run_search
from mixlab.proxy import ProxyResult

log = logging.getLogger(__name__)


class RegMixMixer(Mixer):
    """Proxy sweep -> predictor -> search (see the module docstring)."""

    name = "regmix"

    def __init__(
        self,
        n_runs: int = 32,
        proxy_tokens: int | None = None,
        predictor: str = "mixlab",
        predictor_params: dict[str, Any] | None = None,
        search: str = "auto",
        n_samples: int = 100_000,
        top_k: int = 128,
        proxy_max_epochs: float | None = 15.0,
        temperature: float = 0.5,
        seed: int | None = None,
    ) -> None:
        self.n_runs = n_runs
        self.proxy_tokens = proxy_tokens
        self.predictor = predictor
        self.predictor_params = predictor_params
        self.search = search
        self.n_samples = n_samples
        self.top_k = top_k
        self.proxy_max_epochs = proxy_max_epochs
        self.temperature = temperature
        self.seed = seed

    def proxy_budget(self, ctx: MixingContext) -> int:
        """Tokens per proxy run: ``proxy_tokens``, else 1/20 of the target run's budget."""
        return int(self.proxy_tokens or max(1, ctx.total_tokens // 20))

    def propose(self, ctx: MixingContext) -> Proposal:
        if ctx.proxy is None:
            raise MixlabError("regmix needs proxy runs: give the mixing context a ProxyRunner (ctx.proxy)")
        if self.n_runs < 2:
            raise MixlabError(f"regmix: n_runs must be >= 2, got {self.n_runs}")
        seed = ctx.seed if self.seed is None else self.seed
        tokens = self.proxy_budget(ctx)
        domains = list(ctx.domains)
        mixtures = regmix_mixtures(
            ctx.available_tokens, self.n_runs, domains=domains, tokens=tokens,
            max_epochs=self.proxy_max_epochs, temperature=self.temperature, seed=seed,
        )
        results: list[ProxyResult] = []
        for i, mix in enumerate(mixtures):
            log.info("regmix: proxy %d/%d on %s", i + 1, len(mixtures), mix)
            res = ctx.proxy.train(mix, tokens=tokens, seed=seed)
            ctx.compute.add(flops=res.flops, tokens=res.tokens, seconds=res.seconds)
            results.append(res)
        targets = ctx.targets
        missing = [t for t in targets if t not in results[0].final]
        if missing:
            raise MixlabError(f"regmix: the proxy runs report no validation loss for target domain(s) {missing}")
        with ctx.compute.timed():
            X = np.array([m.to_array(domains) for m in mixtures])
            Y = np.array([[r.final[t] for t in targets] for r in results])
            model = get_predictor(self.predictor, **(self.predictor_params or {}))
            model.fit(X, Y, domains=domains, targets=targets)
            found = run_search(
                model, dict(ctx.target_weight_vector()), ctx.constraints(), method=self.search,
                prior=temperature_prior(ctx.available_tokens, domains, self.temperature),
                n_samples=self.n_samples, top_k=self.top_k, seed=seed,
            )
        self.mixtures_ = mixtures
        self.results_ = results
        self.predictor_ = model
        self.search_ = found
        log.info("regmix: proposed %s (predicted objective %.4f, %s)", found.mixture, found.predicted, found.method)
        return Proposal(found.mixture)
