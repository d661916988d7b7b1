"""Entropy proxies: training-free mixtures from per-domain entropy (BiMix, arXiv 2405.14908 Sec. 4).

BiMix proposes choosing proportions with no proxy training at all, from an entropy measure ``H_i``
of each domain's tokenised data, by ``r_i = exp(H_i) / sum_j exp(H_j)`` (paper Eq. 7); the measures
are computed on the packed 1024-token training sequences:

- **SE** Shannon entropy of the unigram token distribution, ``-sum_a p(a) log p(a)``;
- **JE** joint entropy of adjacent token pairs, ``-sum_{a,b} p(a,b) log p(a,b)``;
- **CE** conditional entropy of a token given its predecessor, ``H(X_{t+1} | X_t) = JE - H(X_t)``
  with ``H(X_t)`` the entropy of the pairs' first-token marginal (the paper's best proxy);
- **VNE** von Neumann entropy ``-sum_k lambda_k log lambda_k`` of the trace-normalised kernel matrix
  ``K = E E^T / n`` over the embeddings ``E`` of the domain's samples. The paper embeds with FastText,
  which cannot be downloaded here; mixlab's documented substitute embeds each packed sequence as an
  L2-normalised vector of hashed unigram + bigram token counts (``vne_dim`` buckets). Since ``E E^T``
  and ``E^T E`` share their non-zero eigenvalues, the spectrum comes from the ``dim x dim`` matrix
  accumulated in a stream, so memory does not grow with the number of samples.

All entropies are in nats. Pairs never cross a packed-sequence boundary. Counting is streaming and
chunked: unigram counts with ``np.bincount``; pair counts with ``np.bincount`` on pair ids
``a * V + b`` when ``V^2`` is small, otherwise by merging per-chunk ``np.unique`` counts (memory
bounded by the number of distinct pairs, never by ``V^2``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mixlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MEASURES = ("se", "je", "ce", "vne")
DENSE_PAIR_LIMIT = 1 << 22
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class EntropyResult:
    """Entropy measures (nats) of one domain and how much data they were computed on."""

    se: float
    je: float
    ce: float
    vne: float | None
    tokens: int
    sequences: int

    def get(self, measure: str) -> float:
        value = getattr(self, measure)
        if value is None:
            raise ConfigError(f"measure {measure!r} was not computed (pass vne=True)")
        return float(value)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"se": self.se, "je": self.je, "ce": self.ce, "vne": self.vne, "tokens": self.tokens, "sequences": self.sequences}


def shannon(counts: np.ndarray) -> float:
    """``-sum p log p`` (nats) of a vector of counts; zero counts are ignored."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    n = c.sum()
    if n <= 0:
        return 0.0
    p = c / n
    return float(-(p * np.log(p)).sum())


class _PairCounter:
    """Counts of ``a * V + b`` pair ids: dense bincount for small ``V^2``, sparse merge otherwise."""

    def __init__(self, vocab_size: int) -> None:
        self.V = int(vocab_size)
        self.dense = self.V * self.V <= DENSE_PAIR_LIMIT
        self.counts = np.zeros(self.V * self.V, dtype=np.int64) if self.dense else None
        self.ids = np.zeros(0, dtype=np.int64)
        self.vals = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, pair_ids: np.ndarray) -> None:
        if self.dense:
            self.counts += np.bincount(pair_ids, minlength=self.V * self.V)
            return
        u, c = np.unique(pair_ids, return_counts=True)
        self._pending.append((u, c.astype(np.int64)))
        self._pending_size += u.size
        if self._pending_size > 4 * max(self.ids.size, 1 << 16):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        ids = np.concatenate([self.ids, *(p[0] for p in self._pending)])
        vals = np.concatenate([self.vals, *(p[1] for p in self._pending)])
        u, inv = np.unique(ids, return_inverse=True)
        self.ids, self.vals = u, np.bincount(inv, weights=vals).astype(np.int64)
        self._pending, self._pending_size = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(pair counts, first-token marginal counts)``."""
        if self.dense:
            joint = self.counts
            first = joint.reshape(self.V, self.V).sum(axis=1)
            return joint, first
        self._merge()
        first = np.bincount(self.ids // self.V, weights=self.vals, minlength=self.V)
        return self.vals, first


def _hash_embed(seqs: np.ndarray, dim: int) -> np.ndarray:
    """Hashed unigram + bigram count vectors of packed sequences ``[n, T]``, L2-normalised ``[n, dim]``."""
    n, T = seqs.shape
    s = seqs.astype(np.uint64)
    with np.errstate(over="ignore"):
        uni = (s * _HASH_MULT) >> np.uint64(40)
        bi = ((s[:, :-1] * np.uint64(1_000_003) + s[:, 1:] + np.uint64(1)) * _HASH_MULT) >> np.uint64(40)
    rows = np.repeat(np.arange(n), T + max(T - 1, 0))
    cols = (np.concatenate([uni, bi], axis=1) % np.uint64(dim)).astype(np.int64).ravel()
    E = np.bincount(rows * dim + cols, minlength=n * dim).reshape(n, dim).astype(np.float64)
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.where(norms > 0, norms, 1.0)


def von_neumann_entropy(gram: np.ndarray) -> float:
    """``-sum lambda log lambda`` over the eigenvalues of a PSD matrix normalised to unit trace."""
    tr = float(np.trace(gram))
    if tr <= 0:
        return 0.0
    lam = np.clip(np.linalg.eigvalsh(gram / tr), 0, None)
    lam = lam[lam > 1e-15]
    return float(-(lam * np.log(lam)).sum())


def domain_entropy(
    tokens: np.ndarray,
    vocab_size: int,
    *,
    seq_len: int = 1024,
    chunk_sequences: int = 256,
    max_tokens: int | None = None,
    vne: bool = True,
    vne_dim: int = 512,
    vne_max_sequences: int = 4096,
    on_progress: Callable[[int], None] | None = None,
) -> EntropyResult:
    """SE, JE, CE (and VNE) of one domain's packed token stream (a 1-D array or memmap).

    The stream is cut into ``seq_len``-token sequences (a shorter tail becomes one last sequence) and
    read ``chunk_sequences`` at a time; ``max_tokens`` caps how much is read (from the start).
    ``on_progress(n_tokens)`` is called after each chunk.
    """
    if seq_len < 2:
        raise ConfigError(f"seq_len must be >= 2 to form token pairs, got {seq_len}")
    n_total = int(tokens.shape[0]) if max_tokens is None else min(int(tokens.shape[0]), int(max_tokens))
    if n_total < 2:
        raise DataError(f"need at least 2 tokens to estimate entropies, got {n_total}")
    V = int(vocab_size)
    uni = np.zeros(V, dtype=np.int64)
    pairs = _PairCounter(V)
    gram = np.zeros((vne_dim, vne_dim)) if vne else None
    n_seq_vne = 0
    n_seq = 0
    step = seq_len * int(chunk_sequences)
    for start in range(0, n_total, step):
        block = np.asarray(tokens[start : min(start + step, n_total)], dtype=np.int64)
        if block.size and (block.min() < 0 or block.max() >= V):
            raise DataError(f"token ids outside [0, {V}) in the stream: is vocab_size right?")
        uni += np.bincount(block, minlength=V)
        n_full = block.size // seq_len
        seqs = [block[: n_full * seq_len].reshape(n_full, seq_len)] if n_full else []
        tail = block[n_full * seq_len :]
        for arr in seqs:
            pairs.add((arr[:, :-1] * V + arr[:, 1:]).ravel())
        if tail.size >= 2:
            pairs.add(tail[:-1] * V + tail[1:])
        n_seq += n_full + (1 if tail.size else 0)
        if vne and n_seq_vne < vne_max_sequences:
            take = [a[: vne_max_sequences - n_seq_vne] for a in seqs]
            if tail.size >= 2 and n_seq_vne + sum(a.shape[0] for a in take) < vne_max_sequences:
                take.append(tail[None, :])
            for arr in take:
                E = _hash_embed(arr, vne_dim)
                gram += E.T @ E
                n_seq_vne += arr.shape[0]
        if on_progress is not None:
            on_progress(block.size)
    joint, first = pairs.result()
    je = shannon(joint)
    return EntropyResult(
        se=shannon(uni), je=je, ce=je - shannon(first),
        vne=von_neumann_entropy(gram) if vne else None, tokens=n_total, sequences=n_seq,
    )


def entropy_mixture(entropies: Mapping[str, float], temperature: float = 1.0) -> dict[str, float]:
    """BiMix's mapping ``r_i = exp(H_i / T) / sum_j exp(H_j / T)`` (paper Eq. 7 with T = 1)."""
    if not entropies:
        raise DataError("no domain entropies to turn into a mixture")
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    names = list(entropies)
    h = np.array([float(entropies[d]) for d in names]) / float(temperature)
    z = np.exp(h - h.max())
    return dict(zip(names, (z / z.sum()).tolist(), strict=True))


def corpus_entropies(
    corpus,
    domains: Sequence[str] | None = None,
    *,
    measures: Sequence[str] = MEASURES,
    seq_len: int = 1024,
    max_tokens: int | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    **kwargs,
) -> dict[str, EntropyResult]:
    """Entropies of each domain's training shard of a prepared corpus (``Corpus.train_tokens``)."""
    bad = [m for m in measures if m not in MEASURES]
    if bad:
        raise ConfigError(f"unknown entropy measure(s) {bad}; choose from {list(MEASURES)}")
    out = {}
    for d in domains or corpus.domains:
        toks = corpus.train_tokens(d)
        log.info("entropy of %s (%d tokens)", d, toks.shape[0])
        cb = None if on_progress is None else (lambda n, d=d: on_progress(d, n))
        out[d] = domain_entropy(
            toks, corpus.vocab_size, seq_len=seq_len, max_tokens=max_tokens, vne="vne" in measures,
            on_progress=cb, **kwargs,
        )
    return out

