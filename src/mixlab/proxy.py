"""The proxy-run contract shared by the trainer and the mixing methods.

Methods that train small proxy models (RegMix, BiMix, Data Mixing Laws, DoReMi's reference) ask a
:class:`ProxyRunner` for runs and get :class:`ProxyResult` back; every method records what it spent
choosing in a :class:`ComputeLedger`. The contract sits below both ``train/`` (which implements the
runner, :class:`mixlab.train.LocalProxyRunner`) and ``mixers/`` (which use it), so neither imports the
other.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mixlab.mixture import Mixture


@dataclass
class ComputeLedger:
    """What a method spent choosing its mixture: FLOPs (6 * params * tokens for training, 2x-3x that
    for influence passes, as each method reports), tokens processed by proxy models, wall seconds."""

    flops: float = 0.0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, *, flops: float = 0.0, tokens: int = 0, seconds: float = 0.0) -> None:
        self.flops += float(flops)
        self.tokens += int(tokens)
        self.seconds += float(seconds)

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def to_dict(self) -> dict[str, float]:
        return {"flops": self.flops, "tokens": self.tokens, "seconds": self.seconds}


@dataclass
class ProxyResult:
    """The outcome of one proxy training run.

    ``curve[step][domain]`` is the validation loss per domain at each evaluated step; ``final`` is the
    last evaluation. ``tokens`` and ``flops`` are what the run consumed.
    """

    mixture: Mixture
    curve: dict[int, dict[str, float]]
    tokens: int
    flops: float
    seconds: float = 0.0
    run_id: str | None = None

    @property
    def final(self) -> dict[str, float]:
        return self.curve[max(self.curve)]


@runtime_checkable
class ProxyRunner(Protocol):
    """Trains small proxy models for methods that need them (RegMix, BiMix, DoReMi's reference)."""

    def train(
        self,
        mixture: Mixture,
        *,
        tokens: int,
        seed: int = 0,
        eval_every: int | None = None,
        name: str | None = None,
    ) -> ProxyResult: ...


__all__ = ["ComputeLedger", "ProxyResult", "ProxyRunner"]
