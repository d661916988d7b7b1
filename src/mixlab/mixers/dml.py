"""Data Mixing Law mixer: fit ``L_j(r) = c_j + k_j exp(t_j . r)`` on proxy runs, take its optimum.

Following Ye et al. (arXiv 2403.16952): train proxies on seeded Dirichlet mixtures (the law has
``k + 1`` free parameters per target in mixlab's zero-sum gauge, so the default is ``2k + 2`` runs),
fit one law per target domain on the proxies' final validation losses, and minimise the weighted sum
of predicted target losses over the simplex within the context's bounds and availability caps.
Unlike BiMix the targets may be any validation domains, not only training domains.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mixlab.errors import MixlabError
from mixlab.laws.registry import LongTable
from mixlab.laws.select import fit_law
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture

log = logging.getLogger(__name__)


class DataMixingLawMixer(Mixer):
    """Data Mixing Laws (arXiv 2403.16952) as a mixing method.

    Parameters: ``n_runs`` (default ``2k + 2``), ``proxy_tokens`` per run (default a tenth of the
    total budget), ``alpha`` the Dirichlet concentration of the design, ``law`` extra
    :class:`~mixlab.laws.dml.DataMixingLaw` arguments. The law is fitted through
    :func:`mixlab.laws.select.fit_law` (``law="dml"``) on the proxies' final losses, the path of
    ``mixlab fit-law``. After ``propose``: ``selector_``, ``law_`` (the Data Mixing Law at the
    proxies' final step), ``results_``.
    """

    name = "dml"

    def __init__(
        self,
        n_runs: int | None = None,
        proxy_tokens: int | None = None,
        alpha: float = 1.0,
        law: dict[str, Any] | None = None,
    ) -> None:
        self.n_runs = n_runs
        self.proxy_tokens = proxy_tokens
        self.alpha = alpha
        self.law = law

    def propose(self, ctx: MixingContext) -> Proposal:
        if ctx.proxy is None:
            raise MixlabError("dml needs proxy training: run it through the pipeline or pass MixingContext(proxy=...)")
        domains = list(ctx.domains)
        k = len(domains)
        targets = ctx.targets
        cons = ctx.constraints()
        rng = np.random.default_rng(ctx.seed)
        n_runs = self.n_runs or 2 * k + 2
        tokens = int(self.proxy_tokens or max(ctx.total_tokens // 10, 1))
        X, Y, results = [], [], []
        with ctx.compute.timed():
            for i in range(n_runs):
                w = rng.dirichlet(np.full(k, float(self.alpha)))
                if not cons.satisfied(w):
                    w = cons.clip_and_renormalise(w)
                mix = Mixture.from_weights(w, domains)
                res = ctx.proxy.train(mix, tokens=tokens, seed=ctx.seed + i, name=f"dml-{i}")
                ctx.compute.add(flops=res.flops, tokens=res.tokens)
                results.append(res)
                final = res.final
                missing = [d for d in targets if d not in final]
                if missing:
                    raise MixlabError(f"proxy run {i} reports no validation loss for target domain(s) {missing}")
                X.append(mix.to_array(domains))
                Y.append([float(final[d]) for d in targets])
            # the registry's law on a table of the final losses (one step per run): the fit path of
            # `mixlab fit-law --law dml`, without cross-validation (the law has no settings to choose)
            step = float(max(r.tokens for r in results))
            table = LongTable.from_arrays(X, np.full(len(X), step), Y, domains=domains, loss_domains=targets)
            self.selector_ = fit_law(table, law="dml", n_folds=0, params=self.law or {})
            self.law_ = self.selector_.estimator_.law_at(step)
            tw = ctx.target_weight_vector()
            mixture = self.selector_.optimize(step, weights={d: tw[d] for d in targets}, constraints=cons)
        self.results_ = results
        log.info("dml optimum: %s", mixture)
        return Proposal(mixture)
