"""Group Influence of training domains on target domains (TiKMiX, arXiv 2508.17677, Eq. 8).

Up-weighting every example of training domain D_i by eps changes the parameters by
-eps H^-1 g_{D_i} (implicit function theorem), so the first-order change of the loss of target j is
-g_{T_j}^T H^-1 g_{D_i}. mixlab reports the *decrease*, so that positive means helpful:

    I[i, j] = g_{T_j}^T P g_{D_i},

with g the mean loss gradient over a sample of batches and P a preconditioner standing for H^-1
(:mod:`mixlab.influence.preconditioners`). Averaging a domain's gradients before the single product
with P is what makes the cost independent of the number of examples.

Algorithm (one forward+backward per batch; nothing per example is stored):
1. Target pass: for each target batch c of domain j, f_c = phi(P g_c) (phi = identity, or a random
   sketch when ``projection_dim`` is set); accumulate their mean v_j.
2. Training pass: for each training batch b of domain i, e_b = phi(g_b) and the scalars
   s_b = (v_j . e_b)_j; I[i, j] = mean_b s_b.
3. Standard errors by the delta method over batches (the estimate is bilinear in two independent batch
   means): Var I[i, j] ~= Var_b(s_b) / n_i + Var_c(t_c) / n_j with t_c = f_c . mean_b e_b. The training
   side is exact from the stored scalars; the target side uses the per-batch target vectors kept
   within ``stderr_memory_mb`` (a uniform subset of batches when they do not all fit: an unbiased
   estimate of the per-batch variance). A variance from n batches has a relative standard error of
   sqrt(2 / (n - 1)), so below ``min_stderr_batches`` (default 8: the standard error itself is then
   known to about +-27%) batches on either side the standard error is reported as NaN, not as a number
   that means nothing (two batches give one degree of freedom).
4. Split-half stability, with every measurement: even-numbered batches (target and training alike)
   form half A, odd-numbered half B; each half gives its own matrix from its own target mean and its
   own training batches (independent samples, one extra [targets x dim] product per batch). The
   reported ``stability`` is the Spearman-Brown reliability 2r / (1 + r) of r, the correlation of the
   two half matrices after centring every target column over the training domains (a constant added
   to a column moves no mixture decision, since the weights sum to one; what the mixture depends on is
   how the domains differ). See :mod:`mixlab.influence.budget` for the threshold and the budget.

Under ``torch.distributed`` each rank takes every ``world_size``-th batch and the sums are
all-reduced, so every rank ends with the same matrix.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from mixlab.errors import ConfigError, DataError
from mixlab.influence.batches import (
    corpus_batches,
    count_terms,
    iterate,
    lm_loss,
    model_device,
    to_device,
    token_batches,
)
from mixlab.influence.matrix import GroupInfluence, split_half_stability
from mixlab.influence.preconditioners import Preconditioner, flat_grad, make_preconditioner, trainable_params
from mixlab.influence.projection import GradientProjector

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        torch.distributed.all_reduce(t)
    return t


def _default_fit_batches(train_batches: Mapping[str, Any], per_domain: int) -> Callable[[], Any]:
    def gen() -> Any:
        for batches in train_batches.values():
            for n, batch in enumerate(iterate(batches)):
                if n >= per_domain:
                    break
                yield batch

    return gen


def compute_group_influence(
    model: torch.nn.Module,
    train_batches: Mapping[str, Any],
    target_batches: Mapping[str, Any],
    *,
    loss_fn: LossFn = lm_loss,
    preconditioner: str | Preconditioner | Callable[[torch.Tensor], torch.Tensor] = "identity",
    optimizer: Any = None,
    damping: float | None = None,
    fit_batches: Any = None,
    fit_batches_per_domain: int = 2,
    projection_dim: int | None = None,
    projection_kind: str = "rademacher",
    seed: int = 0,
    stderr_memory_mb: float = 256.0,
    min_stderr_batches: int = 8,
    progress: bool = False,
    distributed: bool | None = None,
) -> GroupInfluence:
    """The full influence matrix of ``train_batches`` domains on ``target_batches`` domains.

    Each value of the two mappings is a list/iterable of batches or a zero-argument callable that
    returns one (so large samples are streamed). ``loss_fn(model, batch)`` returns the mean loss.
    Preconditioners that need data (``diag-gn``, ``kfac``, ``ekfac``, ``exact``) are fitted on
    ``fit_batches`` (default: the first ``fit_batches_per_domain`` batches of every training domain),
    standing for the training objective's curvature; an instance that is already fitted is reused
    without a new fit (and without its cost). The model is put in eval mode (no dropout) and
    restored afterwards. ``distributed`` (default: whenever ``torch.distributed`` is initialised)
    shares the batches among ranks; every rank must then call this function. Pass ``False`` when only
    one rank measures.
    """
    if not train_batches or not target_batches:
        raise ConfigError("Group Influence needs at least one training domain and one target domain")
    t0 = time.perf_counter()
    rank, world = _dist() if distributed is not False else (0, 1)
    device = model_device(model)
    params = trainable_params(model)
    n_params = sum(p.numel() for p in params)
    was_training = model.training
    model.eval()
    tokens = 0
    fit_count = 0
    bar: _Progress | None = None
    try:
        precond = make_preconditioner(preconditioner, optimizer=optimizer, damping=damping).bind(params)
        if precond.needs_data and not precond.is_fitted():
            source = (
                fit_batches
                if fit_batches is not None
                else _default_fit_batches(train_batches, fit_batches_per_domain)
            )
            counted: list[Any] = []

            def counting() -> Any:
                counted.clear()
                for b in iterate(source):
                    counted.append(count_terms(b))
                    yield b

            precond.fit(model, loss_fn, counting)
            fit_count = len(counted)
            tokens += sum(counted) * (2 if getattr(precond, "eigen_correction", False) else 1)
        projector = (
            GradientProjector(projection_dim, projection_kind, seed).bind(params) if projection_dim else None
        )
        phi = projector.project if projector else (lambda v: v)
        dim = projector.out_dim_ if projector else n_params

        train_names, target_names = list(train_batches), list(target_batches)
        k, m = len(train_names), len(target_names)
        cap = int(stderr_memory_mb * 2**20 / (4 * dim * m))
        bar = _Progress(progress, k + m)

        v_half = torch.zeros(2, m, dim, device=device)
        n_target_half = torch.zeros(2, m, device=device, dtype=torch.float64)
        reservoirs: list[list[torch.Tensor]] = [[] for _ in range(m)]
        rng = np.random.default_rng(seed + 7919 * rank)
        for j, name in enumerate(target_names):
            seen = 0
            for c, batch in enumerate(iterate(target_batches[name])):
                if c % world != rank:
                    continue
                batch = to_device(batch, device)
                tokens += count_terms(batch)
                f = phi(precond.apply(flat_grad(loss_fn(model, batch), params))).detach()
                v_half[c % 2, j] += f
                n_target_half[c % 2, j] += 1
                seen += 1
                if cap >= 2:
                    if len(reservoirs[j]) < cap:
                        reservoirs[j].append(f.clone())
                    elif (r := int(rng.integers(0, seen))) < cap:
                        reservoirs[j][r] = f.clone()
            bar(f"target {name}")
        _all_reduce(v_half, world)
        _all_reduce(n_target_half, world)
        n_target = n_target_half.sum(0)
        if (n_target == 0).any():
            empty = [target_names[j] for j in range(m) if n_target[j] == 0]
            raise DataError(f"no target batches for {empty}; give each target domain at least one batch")
        V = v_half.sum(0) / n_target[:, None].float()
        V_half = v_half / n_target_half.clamp_min(1)[:, :, None].float()

        s_sum = torch.zeros(k, m, device=device, dtype=torch.float64)
        s_sq = torch.zeros(k, m, device=device, dtype=torch.float64)
        n_train = torch.zeros(k, device=device, dtype=torch.float64)
        s_half = torch.zeros(2, k, m, device=device, dtype=torch.float64)
        n_train_half = torch.zeros(2, k, device=device, dtype=torch.float64)
        e_sum = torch.zeros(k, dim, device=device) if cap >= 2 else None
        for i, name in enumerate(train_names):
            for b, batch in enumerate(iterate(train_batches[name])):
                if b % world != rank:
                    continue
                batch = to_device(batch, device)
                tokens += count_terms(batch)
                e = phi(flat_grad(loss_fn(model, batch), params)).detach()
                s = (V @ e).double()
                s_sum[i] += s
                s_sq[i] += s * s
                n_train[i] += 1
                s_half[b % 2, i] += (V_half[b % 2] @ e).double()
                n_train_half[b % 2, i] += 1
                if e_sum is not None:
                    e_sum[i] += e
            bar(f"train {name}")
        for t in (s_sum, s_sq, n_train, s_half, n_train_half):
            _all_reduce(t, world)
        if (n_train == 0).any():
            empty = [train_names[i] for i in range(k) if n_train[i] == 0]
            raise DataError(f"no training batches for {empty}; give each training domain at least one batch")
        n_i = n_train[:, None]
        matrix = s_sum / n_i
        var_train = (s_sq / n_i - matrix**2).clamp_min(0) * n_i / (n_i - 1) / n_i
        var_train = torch.where(n_i > 1, var_train, torch.full_like(var_train, math.nan))
        method = "delta (train and target batches)"
        if e_sum is not None:
            _all_reduce(e_sum, world)
            U = e_sum / n_train[:, None].float()
            t_sum = torch.zeros(k, m, device=device, dtype=torch.float64)
            t_sq = torch.zeros(k, m, device=device, dtype=torch.float64)
            r_cnt = torch.zeros(m, device=device, dtype=torch.float64)
            for j, res in enumerate(reservoirs):
                if res:
                    t = (torch.stack(res) @ U.T).double()
                    t_sum[:, j] = t.sum(0)
                    t_sq[:, j] = (t * t).sum(0)
                    r_cnt[j] = len(res)
            for t in (t_sum, t_sq, r_cnt):
                _all_reduce(t, world)
            r = r_cnt[None, :]
            mean_t = t_sum / r
            var_c = (t_sq / r - mean_t**2).clamp_min(0) * r / (r - 1)
            var_target = torch.where(r > 1, var_c / n_target[None, :], torch.full_like(var_c, math.nan))
        else:
            var_target = torch.zeros_like(var_train)
            method = "delta (train batches only: target batch vectors exceed stderr_memory_mb)"
            log.warning(
                "influence standard errors cover the training side only; raise stderr_memory_mb or set projection_dim"
            )
        stderr = (var_train + var_target).sqrt()
        few = (n_i < min_stderr_batches) | (n_target[None, :] < min_stderr_batches)
        if bool(few.any()):
            stderr = torch.where(few, torch.full_like(stderr, math.nan), stderr)
            method += f"; NaN where a domain has fewer than {min_stderr_batches} batches"
        halves_ok = bool((n_train_half >= 1).all() and (n_target_half >= 1).all())
        halves = (s_half / n_train_half.clamp_min(1)[:, :, None]).cpu().numpy() if halves_ok else None
        tok = torch.tensor([float(tokens)], device=device, dtype=torch.float64)
        _all_reduce(tok, world)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    total_tokens = int(tok.item())
    return GroupInfluence(
        matrix=matrix.cpu().numpy(),
        stderr=stderr.cpu().numpy(),
        train_domains=train_names,
        target_domains=target_names,
        tokens=total_tokens,
        seconds=seconds,
        preconditioner=precond.name,
        flops=6.0 * n_params * total_tokens,
        projection_dim=projector.out_dim_ if projector else None,
        batches={
            "train": {d: int(n_train[i]) for i, d in enumerate(train_names)},
            "target": {d: int(n_target[j]) for j, d in enumerate(target_names)},
            "fit": {"total": fit_count},
        },
        stderr_method=method,
        stability=split_half_stability(halves) if halves is not None else float("nan"),
        half_matrices=halves,
    )


class _Progress:
    """A rich progress bar over domains (or debug logging when disabled); ``close`` always runs."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.prog = None
        if enabled:

            self.prog = Progress(transient=True)
            self.prog.start()
            self.task = self.prog.add_task("Group Influence", total=total)

    def __call__(self, label: str) -> None:
        if self.prog is None:
            log.debug("influence: %s done", label)
        else:
            self.prog.update(self.task, advance=1, description=f"Group Influence: {label}")

    def close(self) -> None:
        if self.prog is not None:
            self.prog.stop()


def measure_group_influence(
    model: torch.nn.Module,
    corpus: Any,
    *,
    train_domains: Sequence[str] | None = None,
    target_domains: Sequence[str] | None = None,
    tokens_per_domain: int,
    seq_len: int,
    batch_size: int,
    target_tokens_per_domain: int | None = None,
    preconditioner: str | Preconditioner | Callable[[torch.Tensor], torch.Tensor] = "adam",
    optimizer: Any = None,
    projection_dim: int | None = None,
    seed: int = 0,
    loss_fn: LossFn = lm_loss,
    target_sources: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> GroupInfluence:
    """Group Influence of a corpus's training splits on its validation splits (or other targets).

    ``tokens_per_domain`` training tokens are drawn per training domain (and, unless
    ``target_tokens_per_domain`` says otherwise, as many tokens per target) in fixed-seed random
    windows of ``seq_len`` tokens, ``batch_size`` windows per batch. A target is a corpus domain (its
    validation split) or a key of ``target_sources``, a 1-D token array that is evaluated only, such
    as a downstream target (``mixlab.data.targets``). Other keyword arguments go to
    :func:`compute_group_influence`.
    """
    domains = list(corpus.domains)
    extra = dict(target_sources or {})
    train = list(train_domains) if train_domains else domains
    target = list(target_domains) if target_domains else domains
    unknown = sorted((set(train) - set(domains)) | (set(target) - set(domains) - set(extra)))
    if unknown:
        raise ConfigError(f"unknown domain(s) {unknown}; the corpus has {domains}, the targets {sorted(extra)}")
    tgt_tokens = target_tokens_per_domain or tokens_per_domain

    def source(d: str, split: str, tok: int) -> Callable[[], Any]:
        if split == "val" and d in extra and d not in domains:
            return lambda: token_batches(
                extra[d], d, tokens=tok, seq_len=seq_len, batch_size=batch_size, seed=seed
            )
        return lambda: corpus_batches(
            corpus, d, split=split, tokens=tok, seq_len=seq_len, batch_size=batch_size, seed=seed
        )

    for d in train:
        next(iter(source(d, "train", tokens_per_domain)()))
    for d in target:
        next(iter(source(d, "val", tgt_tokens)()))
    return compute_group_influence(
        model,
        {d: source(d, "train", tokens_per_domain) for d in train},
        {d: source(d, "val", tgt_tokens) for d in target},
        loss_fn=loss_fn,
        preconditioner=preconditioner,
        optimizer=optimizer,
        projection_dim=projection_dim,
        seed=seed,
        **kwargs,
    )
