"""BiMix mixer: a few short proxy runs, a fitted bivariate law, the optimum at the final run's length.

The paper's design (arXiv 2405.14908 Sec. 3.3): train a handful of proxy models on diverse mixtures,
evaluate each at several steps, fit the per-domain law ``L_i(r_i, s)`` (:class:`~mixlab.laws.bimix.BiMixModel`) on all
(mixture, step, loss) points, and minimise the (weighted) sum of predicted target-domain losses at
the target training length. mixlab measures ``s`` in *tokens* (proxy step x tokens per step, known
from each :class:`ProxyResult`), so a law fitted on small proxies is evaluated at the final run's
token budget without assuming the two runs share a batch size; a power law in steps is the same
law in tokens with a rescaled ``B``.

Design of the proxy mixtures (every domain > 0, as the law needs): the uniform mixture plus, for each
domain, one mixture tilted towards it (``tilt`` on that domain, the rest shared equally), giving
``k + 1`` runs with three distinct proportions per domain; ``n_runs`` above ``k + 1`` adds seeded
Dirichlet draws (floored at ``min_weight``). Each design mixture is projected onto the context's
bounds and availability caps. Static method: a dynamic pipeline calling it again per stage gets a
re-fit from that stage's own proxy curves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import nnls

from mixlab.errors import ConfigError, MixlabError
from mixlab.laws.registry import LongTable, get_law
from mixlab.laws.select import fit_law
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture, MixtureConstraints
from mixlab.proxy import ProxyResult

log = logging.getLogger(__name__)


def design_mixtures(
    domains: list[str], n_runs: int, *, tilt: float = 0.5, min_weight: float = 0.02, seed: int = 0
) -> list[np.ndarray]:
    """Uniform + one tilted mixture per domain (+ Dirichlet draws), all with every weight > 0."""
    k = len(domains)
    if not 0 < tilt < 1:
        raise ConfigError(f"tilt must be in (0, 1), got {tilt}")
    out = [np.full(k, 1.0 / k)]
    for i in range(k):
        w = np.full(k, (1 - tilt) / max(k - 1, 1))
        w[i] = tilt
        out.append(w)
    rng = np.random.default_rng(seed)
    while len(out) < n_runs:
        w = np.maximum(rng.dirichlet(np.ones(k)), min_weight)
        out.append(w / w.sum())
    return out[: max(n_runs, 1)]


def curve_points(results: list[ProxyResult], domains: list[str], targets: list[str]):
    """Long table (mixtures, tokens seen, losses) from proxy curves; step 0 is skipped."""
    R, S, Y = [], [], []
    for res in results:
        steps = sorted(s for s in res.curve if s > 0)
        if not steps:
            continue
        tokens_per_step = res.tokens / max(steps)
        w = res.mixture.to_array(domains)
        for s in steps:
            row = res.curve[s]
            R.append(w)
            S.append(s * tokens_per_step)
            Y.append([float(row.get(d, np.nan)) for d in targets])
    return np.array(R), np.array(S), np.array(Y)


def target_domain_weights(
    results: list[ProxyResult], domains: list[str], targets: list[str], weights: Mapping[str, float]
) -> dict[str, float]:
    """Weights over training domains that stand in for targets that are not training domains.

    BiMix's law predicts a *training domain's* loss from that domain's own proportion, so a target
    that is no training domain (a downstream text) has no law of its own. mixlab's rule: on the proxy
    runs' curves, at every evaluated step, the target's deviation from the mean over runs is fitted as
    a nonnegative combination of the domains' deviations (non-negative least squares; the per-step
    centring removes training progress, so only the mixture's effect is fitted):
    ``L_T - mean_s(L_T) ~ sum_i a_Ti (L_i - mean_s(L_i))`` with ``a_Ti >= 0``. The weighted target loss
    ``sum_j c_j L_j`` then becomes ``sum_i (c_i + sum_T c_T a_Ti) L_i`` (c_i for targets that are
    training domains), which the BiMix law minimises as usual. A target no domain's loss tracks
    (every ``a_Ti = 0``) contributes equal weights over domains, with a warning.
    """

    out = {d: float(weights.get(d, 0.0)) for d in domains}
    by_step: dict[float, list[dict[str, float]]] = {}
    for res in results:
        for s, row in res.curve.items():
            if s > 0:
                by_step.setdefault(float(s * res.tokens / max(res.curve)), []).append(row)
    for t in targets:
        if t in domains:
            continue
        X, y = [], []
        for rows in by_step.values():
            if len(rows) < 2:
                continue
            missing = [k for k in [t, *domains] if any(k not in r for r in rows)]
            if missing:
                raise MixlabError(f"bimix: proxy runs report no loss for {missing}; give the proxy runner the targets")
            L = np.array([[r[d] for d in domains] for r in rows], float)
            yt = np.array([r[t] for r in rows], float)
            X.append(L - L.mean(0))
            y.append(yt - yt.mean())
        if not X:
            raise MixlabError("bimix: the target rule needs at least two proxy runs evaluated at the same step")
        a, _ = nnls(np.concatenate(X), np.concatenate(y))
        c = float(weights.get(t, 0.0))
        if a.sum() <= 0:
            log.warning("bimix: no domain's loss tracks target %s across the proxies; spreading its weight equally", t)
            a = np.full(len(domains), 1.0 / len(domains))
        for i, d in enumerate(domains):
            out[d] += c * float(a[i])
    log.info("bimix: target weights over training domains %s", {d: round(v, 4) for d, v in out.items()})
    return out


class BiMixMixer(Mixer):
    """BiMix (arXiv 2405.14908): fit the bivariate law on proxy curves, optimise at the target length.

    Parameters: ``n_runs`` proxy runs (default ``k + 1``); ``proxy_tokens`` per run (default a tenth
    of the context's total budget); ``eval_every`` proxy steps between evaluations (the runner's
    default when ``None``; the law needs >= 3 evaluations per run); ``tilt``, ``min_weight`` shape the
    design (module doc); ``target_tokens`` overrides the length the optimum is computed for (default
    the context's remaining tokens). The law is fitted by :func:`mixlab.laws.select.fit_law`, the
    same path as ``mixlab fit-law``: its fitting settings (warm-up cut, late-point weight, shared
    step exponent, within-run fit) are chosen by leave-runs-out cross-validation over the proxy runs
    (``select=False`` keeps the defaults). ``law`` is either a dict of settings to fix (e.g.
    ``{"run_effects": True}``) or a registered law's name: ``"bimix"`` (the paper's, the default),
    ``"bimix-transfer"`` or ``"auto"`` (the law chosen by cross-validation too). ``transfer=True``
    is ``law="bimix-transfer"``: :class:`~mixlab.laws.bimix_transfer.BiMixTransferModel` (BiMix whose
    proportion term also counts the other domains' shares, an additional law, not the paper's),
    optimised numerically. That law has ``k + 1`` mixture coefficients per domain, so its default is
    ``2k`` proxy runs, and the optimum of any law but BiMix is kept within the proportions the
    proxies covered (each domain at least its smallest proxy share): below them a fitted transfer
    would be extrapolated to a domain left out altogether.

    Targets that are not training domains (evaluation-only targets, ``target:<name>``) are carried
    over to weights on the training domains by :func:`target_domain_weights` (``target_rule_`` after
    ``propose``); the proxy runner must evaluate them.

    After ``propose``: ``selector_`` (the :class:`~mixlab.laws.select.LawSelector`: chosen law,
    settings and cross-validation table), ``model_`` (the fitted law), ``results_`` (the proxy runs).
    """

    name = "bimix"

    def __init__(
        self,
        n_runs: int | None = None,
        proxy_tokens: int | None = None,
        eval_every: int | None = None,
        tilt: float = 0.5,
        min_weight: float = 0.02,
        target_tokens: int | None = None,
        law: str | dict[str, Any] | None = None,
        transfer: bool = False,
        select: bool = True,
    ) -> None:
        self.n_runs = n_runs
        self.proxy_tokens = proxy_tokens
        self.eval_every = eval_every
        self.tilt = tilt
        self.min_weight = min_weight
        self.target_tokens = target_tokens
        self.law = law
        self.transfer = transfer
        self.select = select

    def _law_choice(self) -> tuple[str, dict[str, Any]]:
        """The law's name and the settings held fixed (see the class docstring)."""
        if isinstance(self.law, str):
            if self.law != "auto":
                get_law(self.law)
            return self.law, {}
        return ("bimix-transfer" if self.transfer else "bimix"), dict(self.law or {})

    def propose(self, ctx: MixingContext) -> Proposal:
        if ctx.proxy is None:
            raise MixlabError("bimix needs proxy training: run it through the pipeline or pass MixingContext(proxy=...)")
        domains = list(ctx.domains)
        targets = ctx.targets
        others = [d for d in targets if d not in domains]
        cons = ctx.constraints()
        law_name, fixed = self._law_choice()
        n_runs = self.n_runs or (len(domains) + 1 if law_name == "bimix" else 2 * len(domains))
        tokens = int(self.proxy_tokens or max(ctx.total_tokens // 10, 1))
        design = design_mixtures(domains, n_runs, tilt=self.tilt, min_weight=self.min_weight, seed=ctx.seed)
        results = []
        with ctx.compute.timed():
            for i, w in enumerate(design):
                if not cons.satisfied(w):
                    w = cons.clip_and_renormalise(w)
                mix = Mixture.from_weights(w, domains)
                log.info("bimix proxy %d/%d on %s", i + 1, len(design), mix)
                res = ctx.proxy.train(mix, tokens=tokens, seed=ctx.seed + i, eval_every=self.eval_every, name=f"bimix-{i}")
                ctx.compute.add(flops=res.flops, tokens=res.tokens)
                results.append(res)
            weights = ctx.target_weight_vector()
            if others:  # the law is per training domain: carry the other targets over by the stated rule
                weights = target_domain_weights(results, domains, targets, weights)
                self.target_rule_ = weights
                targets = [d for d in domains if weights.get(d, 0.0) > 0]
            R, S, Y = curve_points(results, domains, targets)
            n_steps = min(len([s for s in r.curve if s > 0]) for r in results)
            if n_steps < 3:
                raise MixlabError(
                    f"bimix needs each proxy run evaluated at >= 3 steps, got {n_steps}: set eval_every smaller"
                )
            table = LongTable.from_arrays(R, S, Y, domains=domains, loss_domains=targets)
            self.selector_ = fit_law(table, law=law_name, fixed=fixed, search=self.select)
            self.model_ = self.selector_.estimator_
            log.info("bimix law %s with %s (%s)", self.selector_.law_, self.selector_.settings_, self.selector_.selected_by_)
            target = float(self.target_tokens or ctx.remaining)
            if self.selector_.law_ != "bimix":
                covered = np.minimum(cons.upper, np.min([r.mixture.to_array(domains) for r in results], axis=0))
                cons = MixtureConstraints(cons.domains, np.maximum(cons.lower, covered), cons.upper)
            mixture = self.model_.optimize(target, weights={d: weights[d] for d in targets}, constraints=cons)
        self.results_ = results
        log.info("bimix optimum at %.3g tokens: %s", target, mixture)
        return Proposal(mixture)
