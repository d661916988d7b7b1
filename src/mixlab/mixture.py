"""Mixtures, schedules and the constraints every mixing method must respect.

A :class:`Mixture` is a set of non-negative domain weights that sum to one, always keyed by domain
name (never by position alone: aligning by position silently corrupts constraints when two tools
order domains differently). A :class:`Schedule` is a list of stages ``(start_step, mixture)``; the
mixture of stage k applies from its ``start_step`` up to the next stage's.

:class:`MixtureConstraints` gathers per-domain lower/upper bounds and the *availability* cap: a run
that will still consume ``remaining_tokens`` may not draw more than ``max_epochs`` passes over a
domain's ``available_tokens``, i.e. ``w_i <= max_epochs * available_i / remaining_tokens``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, MixlabError
from mixlab.utils.io import atomic_write_json, atomic_write_yaml, read_json, read_yaml

SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Mixture:
    """Domain weights, validated on construction: finite, non-negative, summing to 1.

    ``Mixture({"web": 0.7, "code": 0.3})``. Use :meth:`from_weights` to normalise raw scores.
    """

    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Mapping):
            raise ConfigError(
                f"a mixture is a mapping of domain -> weight (e.g. {{web: 0.7, code: 0.3}}), got "
                f"{type(self.weights).__name__} {str(self.weights)[:40]!r}"
            )
        if not self.weights:
            raise ConfigError("mixture is empty: give at least one domain weight")
        clean: dict[str, float] = {}
        for name, value in self.weights.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"mixture has an invalid domain name {name!r}")
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"mixture weight for {name!r} is not a number: {value!r}") from None
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"mixture weight for {name!r} must be finite and >= 0, got {value!r}")
            clean[name] = v
        total = sum(clean.values())
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise ConfigError(
                f"mixture weights must sum to 1, got {total:.6g} "
                f"({', '.join(f'{k}={v:g}' for k, v in clean.items())}); normalise them or use Mixture.from_weights"
            )
        object.__setattr__(self, "weights", clean)

    @classmethod
    def from_weights(cls, weights: Mapping[str, float] | Sequence[float], domains: Sequence[str] | None = None) -> Mixture:
        """Normalise non-negative scores (a mapping, or a sequence aligned with ``domains``) to a mixture."""
        if not isinstance(weights, Mapping):
            if domains is None:
                raise ConfigError("a weight vector needs the list of domain names it is aligned with")
            arr = np.asarray(weights, dtype=float).ravel()
            if arr.shape[0] != len(domains):
                raise ConfigError(f"got {arr.shape[0]} weights for {len(domains)} domains {list(domains)}")
            weights = dict(zip(domains, arr.tolist(), strict=True))
        vals = {k: float(v) for k, v in weights.items()}
        if any(not math.isfinite(v) or v < 0 for v in vals.values()):
            raise ConfigError(f"mixture weights must be finite and >= 0, got {vals}")
        total = sum(vals.values())
        if total <= 0:
            raise ConfigError("mixture weights are all zero")
        return cls({k: v / total for k, v in vals.items()})

    @classmethod
    def uniform(cls, domains: Sequence[str]) -> Mixture:
        return cls.from_weights({d: 1.0 for d in domains})

    @property
    def domains(self) -> list[str]:
        return list(self.weights)

    def __getitem__(self, domain: str) -> float:
        return self.weights.get(domain, 0.0)

    def check_domains(self, known: Iterable[str], *, where: str = "mixture") -> None:
        known_set = set(known)
        unknown = [d for d in self.weights if d not in known_set]
        if unknown:
            raise ConfigError(f"{where}: unknown domain(s) {unknown}; the corpus has {sorted(known_set)}")

    def to_array(self, domains: Sequence[str]) -> np.ndarray:
        """Weights aligned with ``domains`` by name (domains absent from the mixture get 0)."""
        self.check_domains(domains)
        return np.array([self.weights.get(d, 0.0) for d in domains], dtype=float)

    def to_dict(self) -> dict[str, float]:
        return dict(self.weights)

    def entropy(self) -> float:
        w = np.array([v for v in self.weights.values() if v > 0])
        return float(-(w * np.log(w)).sum())

    def __str__(self) -> str:
        return ", ".join(f"{k}={v:.3f}" for k, v in self.weights.items())


@dataclass(frozen=True)
class Stage:
    start_step: int
    mixture: Mixture


@dataclass(frozen=True)
class Schedule:
    """Mixtures over training: stage k's mixture applies from ``stages[k].start_step``.

    The first stage starts at step 0; start steps strictly increase.
    """

    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages:
            raise ConfigError("schedule has no stages")
        if stages[0].start_step != 0:
            raise ConfigError(f"schedule must start at step 0, its first stage starts at {stages[0].start_step}")
        for prev, cur in zip(stages, stages[1:], strict=False):
            if cur.start_step <= prev.start_step:
                raise ConfigError(
                    f"schedule start steps must increase: {prev.start_step} is followed by {cur.start_step}"
                )
        object.__setattr__(self, "stages", stages)

    @classmethod
    def constant(cls, mixture: Mixture) -> Schedule:
        return cls((Stage(0, mixture),))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, Mixture | Mapping[str, float]]]) -> Schedule:
        stages = []
        for start, mix in pairs:
            stages.append(Stage(int(start), mix if isinstance(mix, Mixture) else Mixture(mix)))
        return cls(tuple(stages))

    def mixture_at(self, step: int) -> Mixture:
        current = self.stages[0].mixture
        for stage in self.stages:
            if stage.start_step <= step:
                current = stage.mixture
            else:
                break
        return current

    def stage_index(self, step: int) -> int:
        idx = 0
        for i, stage in enumerate(self.stages):
            if stage.start_step <= step:
                idx = i
        return idx

    def with_stage(self, start_step: int, mixture: Mixture) -> Schedule:
        """A new schedule with ``mixture`` from ``start_step`` on (later stages dropped)."""
        kept = [s for s in self.stages if s.start_step < start_step]
        return Schedule(tuple(kept) + (Stage(start_step, mixture),))

    @property
    def domains(self) -> list[str]:
        seen: dict[str, None] = {}
        for stage in self.stages:
            seen.update(dict.fromkeys(stage.mixture.domains))
        return list(seen)

    def check_domains(self, known: Iterable[str]) -> None:
        known = list(known)
        for i, stage in enumerate(self.stages):
            stage.mixture.check_domains(known, where=f"schedule stage {i}")

    @property
    def is_constant(self) -> bool:
        """One stage: the same mixture for the whole run."""
        return len(self.stages) == 1

    def to_json(self) -> list[dict[str, Any]]:
        """The one serialised form of a schedule, ``[{"start_step": 0, "mixture": {domain: weight}}, ...]``.

        Every place that stores a schedule writes this: the run store, checkpoints and the sampler's
        state, the run directory's ``schedule.json`` (under a ``schedule`` key), bench rows and the
        report. :meth:`from_json` reads it back (and the older shapes, so old files still read).
        """
        return [{"start_step": s.start_step, "mixture": s.mixture.to_dict()} for s in self.stages]

    @classmethod
    def from_json(cls, data: Any, *, where: str = "schedule") -> Schedule:
        """Read :meth:`to_json`'s form. Also accepted, as older files hold them: the list under a
        ``schedule`` key, a single mixture under a ``mixture`` key, and a bare mapping of domain weights
        (a constant schedule). A bad value is a :class:`~mixlab.errors.ConfigError` naming ``where``."""
        if isinstance(data, Mapping) and "schedule" in data:
            data = data["schedule"]
        elif isinstance(data, Mapping) and "mixture" in data:
            data = data["mixture"]
        if isinstance(data, Mapping):
            try:
                return cls.constant(Mixture(data))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if not isinstance(data, Sequence) or isinstance(data, str):
            raise ConfigError(
                f"{where}: expected a list of stages [{{start_step, mixture}}, ...] or a mapping of domain "
                f"weights, got {type(data).__name__}"
            )
        pairs = []
        for i, item in enumerate(data):
            if not isinstance(item, Mapping) or "mixture" not in item:
                raise ConfigError(f"{where}[{i}]: each stage needs 'start_step' and 'mixture'")
            try:
                start = int(item.get("start_step", 0))
            except (TypeError, ValueError):
                raise ConfigError(f"{where}[{i}]: start_step must be a whole number, got {item.get('start_step')!r}") from None
            try:
                pairs.append((start, item["mixture"] if isinstance(item["mixture"], Mixture) else Mixture(item["mixture"])))
            except ConfigError as exc:
                raise ConfigError(f"{where}[{i}]: {exc}") from None
        try:
            return cls.from_pairs(pairs)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def __str__(self) -> str:
        if self.is_constant:
            return str(self.stages[0].mixture)
        return "; ".join(f"from step {s.start_step}: {s.mixture}" for s in self.stages)


def load_mixture_or_schedule(path: str | Path) -> Mixture | Schedule:
    """Read a mixture (a mapping domain -> weight, optionally under ``mixture:``) or a schedule
    (a list of stages, optionally under ``schedule:``) from YAML or JSON."""
    p = Path(path)
    data = read_json(p) if p.suffix == ".json" else read_yaml(p)
    if isinstance(data, Mapping) and "schedule" in data:
        data = data["schedule"]
    elif isinstance(data, Mapping) and "mixture" in data:
        data = data["mixture"]
    try:
        if isinstance(data, list):
            return Schedule.from_json(data, where=str(p))
        if isinstance(data, Mapping):
            return Mixture(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    raise ConfigError(f"{p}: expected a mapping of domain weights or a list of stages, got {type(data).__name__}")


def save_mixture(obj: Mixture | Schedule, path: str | Path) -> None:
    """Write a mixture or schedule as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
    payload: Any = {"schedule": obj.to_json()} if isinstance(obj, Schedule) else {"mixture": obj.to_dict()}
    p = Path(path)
    if p.suffix in (".yaml", ".yml"):
        atomic_write_yaml(p, payload)
    else:
        atomic_write_json(p, payload)


MIXTURE_NAMES = ("natural", "uniform")
"""Mixtures a config may name instead of spelling out: weights proportional to each domain's training
tokens, or equal weights. They depend on the corpus, so :meth:`MixtureSpec.resolve` turns them into a
schedule once the corpus is open."""


@dataclass(frozen=True)
class MixtureSpec:
    """What a config asks to train on: a named mixture (:data:`MIXTURE_NAMES`) or an explicit schedule.

    Every form a user may write parses here, once, when the config is validated
    (``MixtureSpec.parse``): a name, inline weights ``web=0.7,code=0.3`` (normalised), a YAML/JSON
    file of a mixture or schedule, a mapping of weights summing to one, or a list of stages. An explicit
    mixture is a :class:`Schedule` from then on; a name becomes one in :meth:`resolve`, against the
    corpus's domains and token counts.
    """

    name: str | None = None
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.schedule is None):
            raise ConfigError("a mixture spec is either a name or a schedule")
        if self.name is not None and self.name not in MIXTURE_NAMES:
            raise ConfigError(f"unknown mixture name {self.name!r}; use one of {', '.join(MIXTURE_NAMES)}")

    @classmethod
    def parse(cls, value: Any, *, where: str = "mixture") -> MixtureSpec:
        """The spec a config value asks for; a bad value is a ConfigError naming ``where``."""
        if isinstance(value, MixtureSpec):
            return value
        if isinstance(value, Schedule):
            return cls(schedule=value)
        if isinstance(value, Mixture):
            return cls(schedule=Schedule.constant(value))
        if isinstance(value, str):
            text = value.strip()
            if text in MIXTURE_NAMES:
                return cls(name=text)
            if "=" in text and not Path(text).exists():
                return cls(schedule=Schedule.constant(_inline_weights(text, where)))
            try:
                obj = load_mixture_or_schedule(text)
            except MixlabError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            return cls(schedule=obj if isinstance(obj, Schedule) else Schedule.constant(obj))
        if isinstance(value, (Mapping, list, tuple)):
            return cls(schedule=Schedule.from_json(value, where=where))
        raise ConfigError(
            f"{where}: expected {', '.join(MIXTURE_NAMES)}, domain weights, a list of stages or a mixture file, "
            f"got {type(value).__name__} {value!r}"
        )

    @staticmethod
    def rebase(value: Any, base: str | Path) -> Any:
        """``value`` with a relative mixture-file path made relative to ``base`` (a config file's folder)."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text in MIXTURE_NAMES or Path(text).is_absolute() or ("=" in text and not (Path(base) / text).exists()):
            return value
        return str(Path(base) / text)

    def resolve(self, domains: Sequence[str], token_counts: Mapping[str, float]) -> Schedule:
        """The schedule this spec asks for on a corpus with ``domains`` (checked against them)."""
        if self.schedule is not None:
            self.schedule.check_domains(domains)
            return self.schedule
        if self.name == "uniform":
            return Schedule.constant(Mixture.uniform(list(domains)))
        missing = [d for d in domains if d not in token_counts]
        if missing:
            raise ConfigError(f"natural mixture: no token count for domain(s) {missing}")
        return Schedule.constant(Mixture.from_weights({d: float(token_counts[d]) for d in domains}))

    def to_config(self) -> str | dict[str, float] | list[dict[str, Any]]:
        """The form written back to a config file (and hashed into a run id): the name, the mixture's
        weights for a constant schedule, else :meth:`Schedule.to_json`."""
        if self.name is not None:
            return self.name
        assert self.schedule is not None
        return self.schedule.stages[0].mixture.to_dict() if self.schedule.is_constant else self.schedule.to_json()

    def __str__(self) -> str:
        return self.name if self.name is not None else str(self.schedule)


def _inline_weights(text: str, where: str) -> Mixture:
    """``web=0.7,code=0.3`` (any non-negative numbers; normalised to sum to one)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, num = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{where}: cannot read {part!r}; write domain=weight pairs like web=0.7,code=0.3")
        try:
            weights[name.strip()] = float(num)
        except ValueError:
            raise ConfigError(f"{where}: weight of {name.strip()!r} is not a number: {num!r}") from None
    try:
        return Mixture.from_weights(weights)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class MixtureConstraints:
    """Per-domain lower/upper bounds on the weights, aligned with ``domains``.

    Build with :meth:`build`, which folds the availability cap into the upper bounds.
    """

    domains: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def build(
        cls,
        domains: Sequence[str],
        *,
        lower: Mapping[str, float] | None = None,
        upper: Mapping[str, float] | None = None,
        available_tokens: Mapping[str, float] | None = None,
        remaining_tokens: float | None = None,
        max_epochs: float | Mapping[str, float] | None = None,
    ) -> MixtureConstraints:
        doms = tuple(domains)
        lo = np.zeros(len(doms))
        hi = np.ones(len(doms))
        for name, bounds, arr in (("lower", lower, lo), ("upper", upper, hi)):
            for d, v in (bounds or {}).items():
                if d not in doms:
                    raise ConfigError(f"{name} bound for unknown domain {d!r}; domains are {list(doms)}")
                arr[doms.index(d)] = float(v)
        if max_epochs is not None:
            if available_tokens is None or remaining_tokens is None:
                raise ConfigError("max_epochs needs available_tokens and remaining_tokens")
            if remaining_tokens <= 0:
                raise ConfigError(f"remaining_tokens must be positive, got {remaining_tokens}")
            for i, d in enumerate(doms):
                if d not in available_tokens:
                    raise ConfigError(f"available_tokens has no entry for domain {d!r}")
                epochs = max_epochs.get(d, math.inf) if isinstance(max_epochs, Mapping) else max_epochs
                hi[i] = min(hi[i], epochs * float(available_tokens[d]) / float(remaining_tokens))
        out = cls(doms, lo, hi)
        out.validate()
        return out

    @classmethod
    def unconstrained(cls, domains: Sequence[str]) -> MixtureConstraints:
        return cls(tuple(domains), np.zeros(len(domains)), np.ones(len(domains)))

    def validate(self) -> None:
        if np.any(self.lower < 0) or np.any(self.upper < self.lower - 1e-12):
            bad = [d for d, lo, hi in zip(self.domains, self.lower, self.upper, strict=True) if lo < 0 or hi < lo]
            raise ConfigError(f"bounds are inconsistent for {bad}: need 0 <= lower <= upper")
        if self.lower.sum() > 1 + 1e-9:
            raise ConfigError(f"lower bounds sum to {self.lower.sum():.4g} > 1: no mixture can satisfy them")
        if self.upper.sum() < 1 - 1e-9:
            caps = ", ".join(f"{d}<={u:.3g}" for d, u in zip(self.domains, self.upper, strict=True))
            raise ConfigError(
                f"upper bounds sum to {self.upper.sum():.4g} < 1 ({caps}): not enough data for the token "
                "budget at this max_epochs; raise max_epochs, add data or lower the budget"
            )

    def satisfied(self, w: np.ndarray, tol: float = 1e-6) -> bool:
        w = np.asarray(w, dtype=float)
        return bool(
            abs(w.sum() - 1) <= tol and np.all(w >= self.lower - tol) and np.all(w <= self.upper + tol)
        )

    def clip_and_renormalise(self, w: np.ndarray) -> np.ndarray:
        """The closest feasible point in the sense of a bounded-simplex projection (Euclidean)."""
        return project_to_bounded_simplex(np.asarray(w, dtype=float), self.lower, self.upper)


def project_to_bounded_simplex(v: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` onto {w : sum w = 1, lower <= w <= upper} by bisection on the
    shift ``tau`` in ``w = clip(v - tau, lower, upper)`` (monotone in tau)."""
    lo_tau = float(np.min(v - upper)) - 1.0
    hi_tau = float(np.max(v - lower)) + 1.0
    for _ in range(200):
        tau = 0.5 * (lo_tau + hi_tau)
        s = np.clip(v - tau, lower, upper).sum()
        if s > 1:
            lo_tau = tau
        else:
            hi_tau = tau
    w = np.clip(v - 0.5 * (lo_tau + hi_tau), lower, upper)
    return w / w.sum()
