"""The one interface every mixing method implements.

A :class:`Mixer` proposes the mixture for the next stretch of training. Static methods (uniform,
natural, RegMix, BiMix, DoReMi) are asked once, before training; dynamic ones (TiKMiX-D/-M) are
asked again at every stage boundary with the live model in the context. The benchmark, the CLI,
the dynamic pipeline and user code all call ``mixer.propose(ctx)`` the same way, and get a
:class:`Proposal` back: the mixture (or schedule) and what the method measured to choose it (its
Group Influence, its solver's outcome, its influence measurements). The stage engine
(:mod:`mixlab.pipeline.stages`) writes these into the stage record. A third-party mixer may still
return a bare :class:`~mixlab.mixture.Mixture`; :meth:`Proposal.of` wraps it.

Adding a method: write ``mixers/<name>.py`` with a subclass of :class:`Mixer` (``__init__`` only
stores its parameters, as in scikit-learn), and add one line to ``REGISTRY`` in ``mixers/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mixlab.errors import MixlabError
from mixlab.influence.matrix import GroupInfluence
from mixlab.mixture import Mixture, MixtureConstraints, Schedule
from mixlab.proxy import ComputeLedger, ProxyRunner


@dataclass
class MixingContext:
    """Everything a mixer may look at when it proposes a mixture.

    Static facts about the corpus and budget are always set; ``proxy``, ``corpus`` and ``live`` are
    set by the pipeline when the method needs them (a mixer that needs one and finds ``None`` raises
    a :class:`~mixlab.errors.MixlabError` saying so).
    """

    domains: Sequence[str]
    """Training domains, in the corpus's order."""
    available_tokens: Mapping[str, int]
    """Training tokens on disk per domain (the natural distribution is proportional to these)."""
    total_tokens: int
    """Token budget of the run the mixture is for."""
    remaining_tokens: int | None = None
    """Tokens still to train from this stage on (defaults to ``total_tokens``)."""
    stage: int = 0
    """Index of the stage being chosen (0 = before training)."""
    previous: Mixture | None = None
    """The mixture of the stage that just ended, if any."""
    max_epochs: float | Mapping[str, float] | None = None
    """Availability cap: at most this many passes over a domain's tokens in the remaining budget."""
    lower: Mapping[str, float] | None = None
    upper: Mapping[str, float] | None = None
    target_domains: Sequence[str] | None = None
    """Targets whose loss the user cares about (default: all domains): training domains (their
    validation split) and evaluation-only targets (keys ``target:<name>``, see ``target_sources``)."""
    target_weights: Mapping[str, float] | None = None
    """Weights c_j over targets (default: equal); every method minimises ``sum_j c_j L_j``."""
    target_sources: Mapping[str, Any] | None = None
    """Token ids of the evaluation-only targets by key (``mixlab.data.targets.TargetSet.eval_sources``):
    read by influence and evaluation, never trained on. Proxy runs report these keys' losses when the
    proxy runner was given the same targets."""
    seed: int = 0
    corpus: Any = None
    """The prepared corpus (``mixlab.data.Corpus``), for methods that read the data themselves."""
    proxy: ProxyRunner | None = None
    """Trains proxy models, for methods that need them."""
    live: Any = None
    """The live training state at a stage boundary (model, optimizer, sampler) for dynamic methods."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Records of earlier stages (mixture, influence matrix, losses), oldest first."""
    compute: ComputeLedger = field(default_factory=ComputeLedger)
    """Mixers add the compute they spend choosing here."""
    device: str = "auto"
    """Torch device for methods that train models themselves (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

    @property
    def remaining(self) -> int:
        return int(self.remaining_tokens if self.remaining_tokens is not None else self.total_tokens)

    @property
    def targets(self) -> list[str]:
        return list(self.target_domains) if self.target_domains else list(self.domains)

    def target_weight_vector(self) -> dict[str, float]:
        if self.target_weights:
            total = sum(self.target_weights.values())
            return {d: float(v) / total for d, v in self.target_weights.items()}
        return {d: 1.0 / len(self.targets) for d in self.targets}

    def natural(self) -> Mixture:
        return Mixture.from_weights({d: float(self.available_tokens[d]) for d in self.domains})

    def constraints(self) -> MixtureConstraints:
        return MixtureConstraints.build(
            self.domains,
            lower=self.lower,
            upper=self.upper,
            available_tokens=self.available_tokens if self.max_epochs is not None else None,
            remaining_tokens=self.remaining if self.max_epochs is not None else None,
            max_epochs=self.max_epochs,
        )


@dataclass
class Proposal:
    """What a mixer proposes: a mixture (or a schedule, for a static method that plans stages itself)
    and what it measured on the way, for the stage record.

    Exactly one of ``mixture`` and ``schedule`` is set. ``influence`` is the Group Influence the choice
    was made from (rows = training domains, columns = targets; :mod:`mixlab.influence.matrix`);
    ``solver`` the solver's outcome as a JSON-able dict (status, message, success, fallback);
    ``measurements`` one entry per influence measurement of the budget; ``details`` anything else a
    caller may inspect (not written to records).
    """

    mixture: Mixture | None = None
    schedule: Schedule | None = None
    influence: GroupInfluence | None = None
    solver: dict[str, Any] | None = None
    measurements: list[dict[str, Any]] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.mixture is None) == (self.schedule is None):
            raise MixlabError("a Proposal holds either a mixture or a schedule (exactly one)")

    @classmethod
    def of(cls, result: Proposal | Mixture | Schedule, *, mixer: object = None) -> Proposal:
        """``result`` as a Proposal: a bare Mixture or Schedule (what older mixers return) is wrapped."""
        if isinstance(result, Proposal):
            return result
        if isinstance(result, Mixture):
            return cls(mixture=result)
        if isinstance(result, Schedule):
            return cls(schedule=result)
        raise MixlabError(
            f"mixer {mixer!r} returned {type(result).__name__}; propose() must return a Proposal, a Mixture or a Schedule"
        )

    def as_schedule(self) -> Schedule:
        """The proposal as a schedule from step 0 (a mixture is a one-stage schedule)."""
        return self.schedule if self.schedule is not None else Schedule.constant(self.mixture)

    def stage_mixture(self, where: str = "a stage boundary") -> Mixture:
        """The one mixture a stage starts with; a multi-stage schedule cannot be one stage."""
        if self.mixture is not None:
            return self.mixture
        if len(self.schedule.stages) == 1:
            return self.schedule.stages[0].mixture
        raise MixlabError(f"{where} takes one mixture, but the mixer proposed a {len(self.schedule.stages)}-stage schedule")


class Mixer(ABC):
    """Proposes a mixture from a :class:`MixingContext`.

    Subclasses set ``name`` (the registry key) and ``dynamic`` (True when the method uses the live
    model at stage boundaries). ``__init__`` stores parameters only; all work happens in ``propose``.
    """

    name: ClassVar[str]
    dynamic: ClassVar[bool] = False

    @abstractmethod
    def propose(self, ctx: MixingContext) -> Proposal:
        """The mixture for the next stage (or the whole run, for a static method) and what was measured."""

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
