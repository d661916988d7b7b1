"""The mixture sampler: packed training sequences drawn from domains in the proportions of a mixture.

Design (every choice below exists so that the stream is a pure function of the seed, the schedule and
the position, which makes resuming exact and cheap):

* **Global stream.** Sequences are numbered ``g = 0, 1, 2, ...``. Optimizer step ``s`` consumes the
  ``S = world_size * grad_accum * batch_size`` sequences ``g in [s*S, (s+1)*S)``; inside a step,
  micro-batch ``m`` of rank ``r`` holds ``g = s*S + m*world_size*batch_size + r*batch_size + b``.
  Ranks and DataLoader workers therefore partition the stream: nothing is duplicated or skipped.
* **Domain of a sequence.** Each stage of the schedule starts at ``g0 = start_step * S`` and is cut
  into blocks of 1024 sequences. A block holds exactly the largest-remainder rounding of
  ``1024 * w`` sequences of each domain (Hamilton apportionment), in an order shuffled by a
  counter-based hash permutation of ``(seed, stage start, block index)``. Every block (not just the long-run
  average) thus matches ``w`` to within one sequence per domain, and the domain of any ``g`` is
  computable without generating the earlier blocks. A domain with weight 0 gets no slot, so it is
  never read.
* **Position inside a domain.** The ``o``-th sequence drawn from domain ``k`` (counted over the
  global stream) is chunk ``perm_{k,e}[o mod C_k]`` of epoch ``e = o div C_k``, where the domain's
  packed token stream (documents joined with EOS) is cut into ``C_k = (N_k - 1) div seq_len`` chunks
  of ``seq_len + 1`` tokens overlapping by one token, and ``perm_{k,e}`` is a permutation seeded by
  ``(seed, domain name, e)``. The only state needed to continue is the step, the micro-batch inside
  it, and the per-domain counts ``o`` at the start of the step: a dozen integers.
* **Repetition.** ``o / C_k`` is the number of epochs of domain ``k`` consumed. Before a step would
  read past ``max_epochs * C_k`` chunks the sampler raises :class:`~mixlab.errors.DataError`
  (``on_exceed="error"``) or logs a warning once per domain (``on_exceed="warn"``).
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from mixlab.errors import ConfigError, DataError, TrainingError
from mixlab.mixture import Mixture, Schedule, Stage

if TYPE_CHECKING:
    from mixlab.data.corpus import Corpus

log = logging.getLogger(__name__)

BLOCK = 1024
PLAN_SEQS = 16384
STATE_VERSION = 1


class _Plan(NamedTuple):
    step0: int
    n_steps: int
    doms: np.ndarray  # this rank's sequences' domains, step-major then micro-batch then row
    doms_list: list[int]
    starts_list: list[int]  # token offset of each sequence in its domain's stream
    step_cum: np.ndarray  # [n_steps + 1, D] global sequences per domain in the window's first k steps
    ends: np.ndarray  # [n_steps, D] global per-domain counts after each step
    over: list[bool]  # per step: does some domain pass its max_epochs limit
    micro_cum: np.ndarray  # [n_steps * grad_accum + 1, D] this rank's sequences in the first i micro-batches


class Batch(NamedTuple):
    """One micro-batch: ``input_ids``/``labels`` ``[B, T]`` int64 (labels = inputs shifted by one),
    ``domain_ids`` ``[B]`` int64 indices into ``corpus.domains``.

    ``input_ids`` and ``labels`` are two views of one ``[B, T+1]`` buffer (no copy), so they are not
    contiguous: use ``.reshape`` rather than ``.view``, or call ``.contiguous()``; ``.to(device)``
    returns contiguous tensors."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    domain_ids: torch.Tensor

    def to(self, device: Any, non_blocking: bool = False) -> Batch:
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))


_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser on a Python int (a bijection of 64-bit integers with good avalanche)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def hash_permutation(n: int, *keys: int) -> np.ndarray:
    """A pseudo-random permutation of ``range(n)`` that is a pure function of ``keys``.

    Counter-based (the argsort of splitmix64 hashes of ``key, i``), so any block of the stream is
    generated directly, with no generator state and no per-call RNG construction.
    """
    h = 0x9E3779B97F4A7C15
    for k in keys:
        h = _mix64(h ^ (int(k) & _MASK64))
    x = np.arange(n, dtype=np.uint64) + np.uint64(h)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    # a stable radix sort of the top 16 bits is ~20x faster than sorting 64-bit keys; the rare ties
    # are broken by position, which is just as deterministic
    return np.argsort((x >> np.uint64(48)).astype(np.uint16), kind="stable")


def largest_remainder(w: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` closest to ``w * total`` (Hamilton's method).

    Zero weights always get zero, so a weight-0 domain never receives a slot.
    """
    exact = np.asarray(w, dtype=float) * total
    counts = np.floor(exact).astype(np.int64)
    short = int(total - counts.sum())
    if short > 0:
        frac = exact - counts
        frac[np.asarray(w) <= 0] = -1.0
        order = np.argsort(-frac, kind="stable")
        counts[order[:short]] += 1
    return counts


class MixtureSampler:
    """Deterministic, resumable, shardable stream of micro-batches following a mixture or schedule.

    ``MixtureSampler(corpus, mixture, seq_len=256, batch_size=8)``; call :meth:`next_batch` for this
    rank's next micro-batch. A :class:`~mixlab.mixture.Schedule`'s ``start_step`` counts optimizer
    steps (one step = ``world_size * grad_accum * batch_size`` sequences of the global stream).
    """

    def __init__(
        self,
        corpus: Corpus,
        mixture_or_schedule: Mixture | Schedule | Mapping[str, float],
        *,
        seq_len: int,
        batch_size: int,
        grad_accum: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_epochs: float | Mapping[str, float] | None = None,
        on_exceed: Literal["error", "warn"] = "error",
        split: str = "train",
    ) -> None:
        for name, value, lo in (
            ("seq_len", seq_len, 1),
            ("batch_size", batch_size, 1),
            ("grad_accum", grad_accum, 1),
            ("world_size", world_size, 1),
        ):
            if not isinstance(value, (int, np.integer)) or value < lo:
                raise ConfigError(f"sampler {name} must be an integer >= {lo}, got {value!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"sampler rank must be in [0, world_size={world_size}), got {rank}")
        if on_exceed not in ("error", "warn"):
            raise ConfigError(f"sampler on_exceed must be 'error' or 'warn', got {on_exceed!r}")
        self.corpus = corpus
        self.domains = list(corpus.domains)
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.grad_accum = int(grad_accum)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.seed = int(seed)
        self.split = split
        self.on_exceed = on_exceed
        self.seqs_per_step = self.world_size * self.grad_accum * self.batch_size
        # plain ndarray views of the memmaps: slicing a np.memmap object costs several microseconds
        self._tokens = [corpus.tokens(d, split).view(np.ndarray) for d in self.domains]
        self._n_chunks = np.array(
            [max(0, (len(t) - 1) // self.seq_len) for t in self._tokens], dtype=np.int64
        )
        self._domain_keys = [zlib.crc32(d.encode()) for d in self.domains]
        self._limits = self._epoch_limits(max_epochs)
        self._warned: set[int] = set()
        self._schedule = self._coerce(mixture_or_schedule)
        self._weights = [self._stage_weights(s) for s in self._schedule.stages]
        self._step = 0
        self._micro = 0
        self._start_counts = np.zeros(len(self.domains), dtype=np.int64)
        self._rank_counts = np.zeros(len(self.domains), dtype=np.int64)
        self._plan: _Plan | None = None
        self._plan_idx0 = 0
        self._torch = torch
        self._block_cache: dict[tuple[int, int], np.ndarray] = {}
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_config(
        cls,
        corpus: Corpus,
        mixture_or_schedule: Mixture | Schedule | Mapping[str, float],
        config: Any,
        *,
        rank: int = 0,
        world_size: int = 1,
        split: str = "train",
    ) -> MixtureSampler:
        """Build from a :class:`~mixlab.data.config.SamplerConfig` (e.g. loaded from YAML)."""
        return cls(
            corpus,
            mixture_or_schedule,
            seq_len=config.seq_len,
            batch_size=config.batch_size,
            grad_accum=config.grad_accum,
            seed=config.seed,
            rank=rank,
            world_size=world_size,
            max_epochs=config.max_epochs,
            on_exceed=config.on_exceed,
            split=split,
        )

    # ----------------------------------------------------------------- configuration
    def _coerce(self, obj: Mixture | Schedule | Mapping[str, float]) -> Schedule:
        if isinstance(obj, Schedule):
            sched = obj
        elif isinstance(obj, Mixture):
            sched = Schedule.constant(obj)
        elif isinstance(obj, Mapping):
            sched = Schedule.constant(Mixture(obj))
        else:
            raise ConfigError(f"sampler needs a Mixture or Schedule, got {type(obj).__name__}")
        sched.check_domains(self.domains)
        return sched

    def _stage_weights(self, stage: Stage) -> np.ndarray:
        w = stage.mixture.to_array(self.domains)
        empty = [d for d, wi, c in zip(self.domains, w, self._n_chunks, strict=True) if wi > 0 and c == 0]
        if empty:
            raise DataError(
                f"domain(s) {empty} have fewer than seq_len+1={self.seq_len + 1} {self.split} tokens but a "
                f"positive weight (stage from step {stage.start_step}); add data, lower seq_len or give them weight 0"
            )
        return w

    def _epoch_limits(self, max_epochs: float | Mapping[str, float] | None) -> np.ndarray:
        limits = np.full(len(self.domains), np.iinfo(np.int64).max, dtype=np.int64)
        if max_epochs is None:
            return limits
        if isinstance(max_epochs, Mapping):
            unknown = [d for d in max_epochs if d not in self.domains]
            if unknown:
                raise ConfigError(
                    f"max_epochs names unknown domain(s) {unknown}; the corpus has {self.domains}"
                )
            items = {d: max_epochs.get(d) for d in self.domains}
        else:
            items = dict.fromkeys(self.domains, max_epochs)
        for i, d in enumerate(self.domains):
            e = items[d]
            if e is None:
                continue
            if not isinstance(e, (int, float)) or not e > 0 or math.isnan(e):
                raise ConfigError(f"max_epochs for {d!r} must be a positive number, got {e!r}")
            if math.isfinite(e):
                limits[i] = int(math.floor(e * self._n_chunks[i]))
        return limits

    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @property
    def step(self) -> int:
        """The optimizer step the next micro-batch belongs to."""
        return self._step

    def set_schedule(self, schedule: Schedule | Mixture) -> None:
        """Use ``schedule`` (or a mixture) from the next whole optimizer step on; steps already begun keep theirs.

        The stages before that step are kept (they are part of the stream's history and of the
        state dict), so the result stays deterministic and resumable.
        """
        new = self._coerce(schedule)
        boundary = self._step + (1 if self._micro > 0 else 0)
        kept = [s for s in self._schedule.stages if s.start_step < boundary]
        stages = kept + [Stage(boundary, new.mixture_at(boundary))] if kept else [Stage(0, new.mixture_at(0))]
        stages += [s for s in new.stages if s.start_step > max(boundary, 0)]
        # a stage that repeats the mixture before it is dropped, so re-applying the current schedule
        # (e.g. after a resume) leaves the stream exactly as it was
        merged = [stages[0]]
        for st in stages[1:]:
            if st.mixture.to_dict() != merged[-1].mixture.to_dict():
                merged.append(st)
        candidate = Schedule(tuple(merged))
        weights = [self._stage_weights(s) for s in candidate.stages]
        self._schedule, self._weights = candidate, weights
        self._block_cache.clear()
        self._drop_plan()  # the current step's stages are unchanged, so replanning from it is exact

    # ----------------------------------------------------------------- the stream
    def _block(self, stage_idx: int, block: int) -> np.ndarray:
        start = self._schedule.stages[stage_idx].start_step
        key = (start, block)
        arr = self._block_cache.get(key)
        if arr is None:
            counts = largest_remainder(self._weights[stage_idx], BLOCK)
            arr = np.repeat(np.arange(len(self.domains), dtype=np.int64), counts)
            arr = arr[hash_permutation(BLOCK, self.seed, start, block, 0xB10C)]
            if len(self._block_cache) > 64:
                self._block_cache.clear()
            self._block_cache[key] = arr
        return arr

    def _domains_of(self, g0: int, g1: int) -> np.ndarray:
        """Domain index of every global sequence in ``[g0, g1)``."""
        out = np.empty(g1 - g0, dtype=np.int64)
        stages = self._schedule.stages
        starts = [s.start_step * self.seqs_per_step for s in stages]
        g = g0
        while g < g1:
            k = int(np.searchsorted(starts, g, side="right")) - 1
            rel = g - starts[k]
            block, off = divmod(rel, BLOCK)
            stop = min(g1, starts[k] + (block + 1) * BLOCK)
            if k + 1 < len(starts):
                stop = min(stop, starts[k + 1])
            out[g - g0 : stop - g0] = self._block(k, block)[off : off + stop - g]
            g = stop
        return out

    def _perm(self, k: int, epoch: int) -> np.ndarray:
        key = (k, epoch)
        p = self._perm_cache.get(key)
        if p is None:
            rng = np.random.default_rng([self.seed, self._domain_keys[k], epoch, 0x5EED])
            p = rng.permutation(int(self._n_chunks[k]))
            for old in [x for x in self._perm_cache if x[0] == k and x[1] < epoch - 1]:
                del self._perm_cache[old]
            self._perm_cache[key] = p
        return p

    def _plan_window(self, step0: int) -> _Plan:
        """Domains and token offsets of this rank's sequences for a window of whole steps from ``step0``.

        Planning a window of about ``PLAN_SEQS`` global sequences at once keeps the per-batch work to
        the token copies. Nothing here depends on anything but ``(seed, schedule, step0, counts at
        step0)``, so a resumed sampler plans exactly the same window.
        """
        S, B, A, D = self.seqs_per_step, self.batch_size, self.grad_accum, len(self.domains)
        K = max(1, -(-PLAN_SEQS // S))
        doms = self._domains_of(step0 * S, (step0 + K) * S)
        # In domain-sorted order each domain's sequences are consecutive draws o = counts[k], +1, ...,
        # so their chunks are plain slices of the per-epoch permutations (no per-sequence lookups).
        order = np.argsort(doms.astype(np.uint8) if D < 256 else doms, kind="stable")  # radix sort
        per_dom = np.bincount(doms, minlength=D)
        bounds = np.concatenate([[0], np.cumsum(per_dom)])
        chunk_sorted = np.empty(len(doms), dtype=np.int64)
        for k in np.flatnonzero(per_dom).tolist():
            a, n_k, c = int(bounds[k]), int(per_dom[k]), int(self._n_chunks[k])
            o, done = int(self._start_counts[k]), 0
            while done < n_k:
                epoch, p = divmod(o, c)
                take = min(n_k - done, c - p)
                chunk_sorted[a + done : a + done + take] = self._perm(k, epoch)[p : p + take]
                done += take
                o += take
        starts_all = np.empty(len(doms), dtype=np.int64)
        starts_all[order] = chunk_sorted * self.seq_len
        step_counts = np.bincount(np.repeat(np.arange(K), S) * D + doms, minlength=K * D).reshape(K, D)
        ends = self._start_counts + np.cumsum(step_counts, axis=0)
        # this rank's slice of every micro-batch of every step of the window
        sel = (
            np.arange(K)[:, None, None] * S
            + np.arange(A)[None, :, None] * self.world_size * B
            + self.rank * B
            + np.arange(B)[None, None, :]
        ).ravel()
        rdoms, starts = doms[sel], starts_all[sel]
        micro_of = np.repeat(np.arange(K * A), B)
        micro_counts = np.bincount(micro_of * D + rdoms, minlength=K * A * D).reshape(K * A, D)
        zero = np.zeros((1, D), dtype=np.int64)
        step_cum = np.concatenate([zero, np.cumsum(step_counts, axis=0)])
        micro_cum = np.concatenate([zero, np.cumsum(micro_counts, axis=0)])
        over = (ends > self._limits).any(axis=1).tolist()
        return _Plan(step0, K, rdoms, rdoms.tolist(), starts.tolist(), step_cum, ends, over, micro_cum)

    def _exceeded(self, k: int, wanted: int) -> None:
        name = self.domains[k]
        c = int(self._n_chunks[k])
        msg = (
            f"domain {name!r} would be read for {wanted / c:.2f} epochs ({wanted} sequences of {c} per epoch), "
            f"beyond its max_epochs limit of {self._limits[k] / c:.2f}; lower its weight, raise max_epochs, "
            "add data or shorten training"
        )
        if self.on_exceed == "error":
            raise DataError(msg)
        if k not in self._warned:
            self._warned.add(k)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
            log.warning(msg)

    def _counts_now(self) -> tuple[np.ndarray, np.ndarray]:
        """(global counts at the start of the current step, this rank's counts so far)."""
        plan = self._plan
        if plan is None:
            return self._start_counts, self._rank_counts
        k = self._step - plan.step0
        idx = k * self.grad_accum + self._micro
        return (
            self._start_counts + plan.step_cum[k],
            self._rank_counts + plan.micro_cum[idx] - plan.micro_cum[self._plan_idx0],
        )

    def _drop_plan(self) -> None:
        """Fold the current window's progress into the base counts and forget the window."""
        self._start_counts, self._rank_counts = self._counts_now()
        self._plan = None

    def _advance(self, read: bool) -> Batch | None:
        # per-batch work is kept to integer arithmetic and the token copies; counts are derived
        # lazily from the window's cumulative tables (see _counts_now)
        plan = self._plan
        if plan is None or self._step >= plan.step0 + plan.n_steps:
            self._drop_plan()
            plan = self._plan = self._plan_window(self._step)
            self._plan_idx0 = self._micro
        k = self._step - plan.step0
        if self._micro == 0 and plan.over[k]:
            for d in np.flatnonzero(plan.ends[k] > self._limits):
                self._exceeded(int(d), int(plan.ends[k][d]))
        batch = None
        if read:
            torch = self._torch
            B, T1 = self.batch_size, self.seq_len + 1
            lo = (k * self.grad_accum + self._micro) * B
            toks = self._tokens
            pairs = zip(plan.doms_list[lo : lo + B], plan.starts_list[lo : lo + B], strict=True)
            full = np.concatenate([toks[d][o : o + T1] for d, o in pairs], dtype=np.int64).reshape(B, T1)
            # slicing in numpy and wrapping with from_numpy is several times cheaper than torch slicing
            batch = Batch(
                torch.from_numpy(full[:, :-1]),
                torch.from_numpy(full[:, 1:]),
                torch.from_numpy(plan.doms[lo : lo + B]),
            )
        self._micro += 1
        if self._micro == self.grad_accum:
            self._step += 1
            self._micro = 0
        return batch

    def next_batch(self) -> Batch:
        """This rank's next micro-batch."""
        batch = self._advance(read=True)
        assert batch is not None
        return batch

    def skip_batch(self) -> None:
        """Advance past this rank's next micro-batch without reading its tokens."""
        self._advance(read=False)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    # ----------------------------------------------------------------- bookkeeping
    def domain_counts(self) -> dict[str, int]:
        """Sequences this rank has drawn from each domain so far."""
        return {d: int(c) for d, c in zip(self.domains, self._counts_now()[1], strict=True)}

    def global_domain_counts(self) -> dict[str, int]:
        """Sequences of each domain in the global stream (all ranks) before the current step."""
        return {d: int(c) for d, c in zip(self.domains, self._counts_now()[0], strict=True)}

    def epochs(self) -> dict[str, float]:
        """Epochs of each domain consumed by the global stream before the current step."""
        return {
            d: (float(c) / float(n) if n > 0 else 0.0)
            for d, c, n in zip(self.domains, self._counts_now()[0], self._n_chunks, strict=True)
        }

    def chunks_per_epoch(self) -> dict[str, int]:
        return {d: int(n) for d, n in zip(self.domains, self._n_chunks, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """A small JSON-able dict from which :meth:`load_state_dict` continues the exact stream."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "world_size": self.world_size,
            "rank": self.rank,
            "split": self.split,
            "domains": list(self.domains),
            "step": self._step,
            "micro": self._micro,
            "global_counts": self.global_domain_counts(),
            "rank_counts": self.domain_counts(),
            "schedule": self._schedule.to_json(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``. Seed, shapes, world size and domains must match this sampler."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise TrainingError(
                "sampler state is missing or from an incompatible mixlab version; cannot resume"
            )
        for key in ("seed", "seq_len", "batch_size", "grad_accum", "world_size", "split"):
            if state.get(key) != getattr(self, key):
                raise TrainingError(
                    f"cannot resume: sampler {key} was {state.get(key)!r} in the saved state, now {getattr(self, key)!r}; "
                    "resume with the same data settings"
                )
        if list(state.get("domains", [])) != self.domains:
            raise TrainingError(
                f"cannot resume: the saved sampler state has domains {state.get('domains')}, the corpus has "
                f"{self.domains}"
            )
        schedule = Schedule.from_json(state["schedule"], where="sampler state schedule")
        weights = [self._stage_weights(s) for s in schedule.stages]
        self._schedule, self._weights = schedule, weights
        self._step = int(state["step"])
        self._micro = int(state["micro"])
        if not 0 <= self._micro < self.grad_accum or self._step < 0:
            raise TrainingError(
                f"sampler state has an invalid position step={self._step} micro={self._micro}"
            )
        self._start_counts = np.array([int(state["global_counts"][d]) for d in self.domains], dtype=np.int64)
        if state.get("rank") == self.rank:
            self._rank_counts = np.array([int(state["rank_counts"][d]) for d in self.domains], dtype=np.int64)
        else:
            self._rank_counts = np.zeros(len(self.domains), dtype=np.int64)
        self._plan = None
        self._block_cache.clear()
