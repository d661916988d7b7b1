"""Mixing laws (estimator style: ``fit`` returns self, fitted state ends in ``_``, ``predict``).

- :class:`BiMixLaw` / :class:`BiMixModel`: BiMix, ``L_i = A_i / r_i^alpha_i * (B_i / s^beta_i + C_i)``
  (arXiv 2405.14908), one domain's law (:mod:`mixlab.laws.bimix_law`) / the model over all modelled
  domains (:mod:`mixlab.laws.bimix`), with extrapolation, uncertainty and the optimal mixture at a
  target step.
- :class:`BiMixTransferModel`: an additional law, BiMix with an effective proportion
  ``r_eff,i = r_i + sum_{j != i} tau_ij r_j`` (``tau >= 0``, cross-domain transfer) in place of ``r_i``.
- :class:`BiMixCrossModel`: an additional law in the whole mixture, BiMix times a Data-Mixing-Laws
  term in the other domains' shares, ``L_i = A_i r_i^-alpha_i exp(sum_{j != i} t_ij r_j) (B_i s^-beta_i + 1)``.
- :class:`DataMixingLaw`: ``L_j = c_j + k_j exp(t_j . r)`` (arXiv 2403.16952), ``fit(X, y)`` /
  ``predict(X)`` / ``optimize``; :class:`NestedDataMixingLaw`: the same on loss curves, nested with a
  step law per run (the paper's Sec. 4).
- :mod:`mixlab.laws.registry`: the laws behind one long-table interface (:class:`LongTable`,
  :data:`REGISTRY`); :func:`fit_law` / :class:`LawSelector` (:mod:`mixlab.laws.select`): the law and
  its fitting settings chosen by leave-runs-out cross-validation, the one fitting path of the CLI,
  the mixers and the benchmarks.
- :mod:`mixlab.laws.entropy`: BiMix's training-free entropy proxies (SE, JE, CE, VNE).
- :mod:`mixlab.laws.table`: the wide CSV format of ``mixlab fit-law``.
"""

from mixlab.laws.bimix import BiMixLaw, BiMixModel, NotFittedError
from mixlab.laws.bimix_cross import BiMixCrossModel
from mixlab.laws.bimix_transfer import BiMixTransferModel
from mixlab.laws.dml import DataMixingLaw, NestedDataMixingLaw
from mixlab.laws.entropy import EntropyResult, corpus_entropies, domain_entropy, entropy_mixture
from mixlab.laws.registry import REGISTRY, LawSpec, LongTable, get_law
from mixlab.laws.select import LawSelector, fit_law

__all__ = [
    "REGISTRY", "BiMixCrossModel", "BiMixLaw", "BiMixModel", "BiMixTransferModel", "DataMixingLaw", "EntropyResult", "LawSelector",
    "LawSpec", "LongTable", "NestedDataMixingLaw", "NotFittedError", "corpus_entropies", "domain_entropy",
    "entropy_mixture", "fit_law", "get_law",
]
