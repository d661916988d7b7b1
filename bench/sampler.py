"""Throughput of the mixture sampler against contiguous memmap reads.

Both sides assemble the same output, int64 ``input_ids``/``labels`` tensors of batch x seq_len
(16 x 512 by default), from the same corpus in the same process:

- baseline: read ``batch * (seq_len + 1)`` consecutive tokens from one domain's memmap, convert
  to int64 and view them as ``[B, T+1]`` (inputs/labels are the two shifted views), i.e. the
  cheapest possible way to produce a batch;
- mixlab: :meth:`MixtureSampler.next_batch` with a uniform mixture over every domain (per-block
  domain assignment, per-epoch chunk permutations, one random window per sequence, copies into
  contiguous inputs/labels).

Pages are warmed first; the two sides then alternate in ``--rounds`` short rounds (so that load from
other processes affects both alike) and the figure is the median of the per-round ratios.
The corpus is the built-in one, prepared into a temporary directory unless ``--corpus`` is given.

Run: ``python bench/sampler.py [--corpus DIR] [--rounds 20] [--batches 300]``. Last line ``sampler_ratio=...``
(mixlab tokens/s divided by baseline tokens/s; target >= 0.5).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mixlab.data import Corpus, MixtureSampler, prepare_builtin
from mixlab.mixture import Mixture


def baseline_batches(mm: np.ndarray, n_batches: int, batch: int, seq_len: int) -> int:
    width = batch * (seq_len + 1)
    pos, tokens = 0, 0
    for _ in range(n_batches):
        if pos + width > len(mm):
            pos = 0
        t = torch.from_numpy(mm[pos : pos + width].astype(np.int64)).view(batch, seq_len + 1)
        inputs, labels = t[:, :-1], t[:, 1:]
        tokens += inputs.numel() + 0 * labels.numel()
        pos += width
    return tokens


def sampler_batches(sampler: MixtureSampler, n_batches: int) -> int:
    tokens = 0
    for _ in range(n_batches):
        tokens += sampler.next_batch().input_ids.numel()
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--corpus", type=Path, default=None, help="a prepared corpus (default: built-in, in a temp dir)"
    )
    ap.add_argument("--batches", type=int, default=300, help="batches per side per round")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Corpus.open(args.corpus) if args.corpus else prepare_builtin(Path(tmp) / "builtin").corpus
        largest = max(corpus.domains, key=lambda d: corpus.token_counts()[d])
        mm = corpus.train_tokens(largest)
        for d in corpus.domains:  # warm the page cache for both sides
            np.asarray(corpus.train_tokens(d)).sum()
        sampler = MixtureSampler(
            corpus, Mixture.uniform(corpus.domains), seq_len=args.seq_len, batch_size=args.batch_size, seed=0
        )
        sampler_batches(sampler, 50)
        # alternate short timed chunks so that load from other processes hits both sides alike;
        # the figure is the median of the per-chunk ratios
        ratios, rates = [], {"baseline": [], "mixlab": []}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            n = baseline_batches(mm, args.batches, args.batch_size, args.seq_len)
            base = n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            n = sampler_batches(sampler, args.batches)
            mix = n / (time.perf_counter() - t0)
            rates["baseline"].append(base)
            rates["mixlab"].append(mix)
            ratios.append(mix / base)
        med = {k: float(np.median(v)) for k, v in rates.items()}
        print(
            f"corpus {corpus.root} ({len(corpus.domains)} domains), batches of {args.batch_size} x {args.seq_len}, "
            f"{args.rounds} alternating rounds of {args.batches} batches"
        )
        print(f"baseline contiguous memmap read ({largest}): median {med['baseline'] / 1e6:.1f} M tokens/s")
        print(
            f"mixlab MixtureSampler (uniform over {len(corpus.domains)} domains): median {med['mixlab'] / 1e6:.1f} M tokens/s"
        )
        print(
            f"per-round ratios: min {min(ratios):.3f}, median {np.median(ratios):.3f}, max {max(ratios):.3f}"
        )
        print(f"sampler_ratio={float(np.median(ratios)):.3f}")


if __name__ == "__main__":
    main()
