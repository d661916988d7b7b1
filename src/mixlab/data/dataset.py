"""``MixtureDataset``: the mixture sampler as a ``torch.utils.data.IterableDataset``.

Use it with ``DataLoader(ds, batch_size=None, num_workers=n)``: each item is already a micro-batch
(:class:`~mixlab.data.sampler.Batch`). With ``n`` workers, worker ``w`` produces micro-batches
``k`` with ``k % n == w`` of this rank's stream and skips the others without reading them; the
DataLoader takes one item from each worker in turn, so the loader yields exactly the rank's stream,
in order, with no sequence duplicated or skipped, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mixlab.data.corpus import Corpus
from mixlab.data.sampler import Batch, MixtureSampler
from mixlab.errors import ConfigError
from mixlab.mixture import Mixture, Schedule


class MixtureDataset(torch.utils.data.IterableDataset):
    """Iterable dataset over one rank's micro-batches of a :class:`MixtureSampler` stream.

    ``num_batches`` bounds the number of micro-batches (per rank) an iteration yields; ``None``
    means endless. ``state`` (a :meth:`MixtureSampler.state_dict`) resumes the stream.
    """

    def __init__(
        self,
        corpus: Corpus | str | Path,
        mixture_or_schedule: Mixture | Schedule | Mapping[str, float],
        *,
        num_batches: int | None = None,
        state: Mapping[str, Any] | None = None,
        **sampler_kwargs: Any,
    ) -> None:
        super().__init__()
        if num_batches is not None and num_batches < 0:
            raise ConfigError(f"num_batches must be >= 0, got {num_batches}")
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
        self.mixture_or_schedule = mixture_or_schedule
        self.num_batches = num_batches
        self.state = dict(state) if state is not None else None
        self.sampler_kwargs = sampler_kwargs
        # fail early (in the main process) on a bad mixture or settings
        self.make_sampler()

    def make_sampler(self) -> MixtureSampler:
        sampler = MixtureSampler(self.corpus, self.mixture_or_schedule, **self.sampler_kwargs)
        if self.state is not None:
            sampler.load_state_dict(self.state)
        return sampler

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        sampler = self.make_sampler()
        k = 0
        while self.num_batches is None or k < self.num_batches:
            if k % n_workers == worker:
                yield sampler.next_batch()
            else:
                sampler.skip_batch()
            k += 1
