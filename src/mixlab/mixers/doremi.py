"""DoReMi: domain reweighting with minimax optimisation (Xie et al. 2023, arXiv 2305.10429).

Algorithm 1 of the paper, on mixlab's GPT and :class:`~mixlab.data.MixtureSampler`, with the models
built, optimised and scheduled by the trainer's pieces (:mod:`mixlab.train`):

1. Train a *reference* model on the reference mixture (uniform by default).
2. Train a *proxy* model of the same size with Group DRO. At every step t, on a minibatch drawn from
   the reference mixture, compute per domain i the excess loss
   ``lambda_i = mean over domain-i tokens of max(loss_proxy - loss_ref, 0)``, update the domain
   weights by exponentiated gradient ``alpha <- softmax(log alpha + eta * lambda)``, smooth them
   towards uniform ``alpha <- (1 - c) alpha + c / k``, and take an optimizer step on
   ``sum_i alpha_i * (mean token loss of domain i)``.
3. Return the average of alpha over the T steps.

The paper's settings are the defaults: ``eta = 1``, ``c = 1e-3`` (the reference repository uses
1e-4). A domain absent from a minibatch has ``lambda_i = 0`` at that step, as in the paper, so its
weight decays relative to the others; small batches therefore push the weights towards one-hot (as
users of the reference repository report): use batches holding several sequences per domain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mixlab.data.sampler import MixtureSampler
from mixlab.errors import ConfigError, MixlabError, TrainingError
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture
from mixlab.model import flops_per_token
from mixlab.train import build_model, build_optimizer, evaluate_domains, lr_at, resolve_device

log = logging.getLogger(__name__)


def doremi_update(
    log_alpha: np.ndarray, excess_losses: np.ndarray, eta: float = 1.0, smoothing: float = 1e-3
) -> np.ndarray:
    """One DoReMi domain-weight step (paper Algorithm 1, lines 6-7); returns the new weights alpha.

    ``alpha' = softmax(log_alpha + eta * excess_losses)`` (exponentiated gradient ascent on the
    excess losses), then ``alpha = (1 - smoothing) * alpha' + smoothing / k``.
    """
    log_alpha = np.asarray(log_alpha, dtype=float)
    lam = np.asarray(excess_losses, dtype=float)
    if log_alpha.shape != lam.shape or log_alpha.ndim != 1:
        raise ConfigError(f"doremi_update: log_alpha {log_alpha.shape} and excess_losses {lam.shape} must be equal 1-D")
    if not 0.0 <= smoothing <= 1.0:
        raise ConfigError(f"DoReMi smoothing must be in [0, 1], got {smoothing}")
    z = log_alpha + eta * lam
    z = z - z.max()
    a = np.exp(z)
    a /= a.sum()
    return (1.0 - smoothing) * a + smoothing / a.shape[0]


class DoReMiMixer(Mixer):
    """DoReMi's Group-DRO proxy: returns the average domain weights over proxy training.

    Needs ``ctx.corpus`` (a :class:`mixlab.data.Corpus`). Both models are built, optimised and
    scheduled by the trainer's own pieces (:func:`~mixlab.train.build_model` with the GPT preset
    ``model`` and the corpus's vocabulary, :func:`~mixlab.train.build_optimizer`'s AdamW, the cosine
    schedule of :func:`~mixlab.train.lr_at` from ``lr`` down to a tenth of it after ``warmup`` steps,
    gradients clipped to norm 1), on ``ctx.device`` unless ``device`` is given. Each trains ``steps``
    optimizer steps of ``batch_size`` sequences of ``seq_len`` tokens (``reference_steps`` for the
    reference, default the same). The reference and proxy training FLOPs (plus the reference forward
    passes during proxy training) and tokens are added to ``ctx.compute``.

    After :meth:`propose`: ``weights_`` (alpha per step, ``[T, k]``), ``excess_`` (lambda per step),
    ``reference_val_`` / ``proxy_val_`` (per-domain validation losses of both models, the trainer's
    evaluation on ``eval_batches`` batches per domain).
    """

    name = "doremi"

    def __init__(
        self,
        model: str = "nano-100k",
        steps: int = 200,
        reference_steps: int | None = None,
        batch_size: int = 16,
        seq_len: int = 128,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        warmup: int = 20,
        eta: float = 1.0,
        smoothing: float = 1e-3,
        reference: Mapping[str, float] | None = None,
        eval_batches: int = 4,
        device: str | None = None,
    ) -> None:
        self.model = model
        self.steps = steps
        self.reference_steps = reference_steps
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup = warmup
        self.eta = eta
        self.smoothing = smoothing
        self.reference = reference
        self.eval_batches = eval_batches
        self.device = device

    # ------------------------------------------------------------------ helpers
    def _check(self) -> None:
        for name in ("steps", "batch_size", "seq_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"doremi: {name} must be a positive integer, got {v!r}")
        if self.reference_steps is not None and (not isinstance(self.reference_steps, int) or self.reference_steps < 1):
            raise ConfigError(f"doremi: reference_steps must be a positive integer, got {self.reference_steps!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"doremi: warmup must be a number of steps >= 0, got {self.warmup!r}")
        if not self.eta > 0:
            raise ConfigError(f"doremi: eta must be > 0, got {self.eta}")
        if not 0.0 <= self.smoothing <= 1.0:
            raise ConfigError(f"doremi: smoothing must be in [0, 1], got {self.smoothing}")

    def _lr(self, step: int, total: int) -> float:
        """Linear warm-up, then cosine decay to 10% of the peak (the proxy recipe of the DoReMi paper)."""
        return lr_at(step, total_steps=total, lr=self.lr, min_lr=0.1 * self.lr, warmup=self.warmup)

    def _model(self, vocab_size: int, seed: int, device: Any) -> Any:
        """A freshly initialised GPT of preset ``model`` (seeded like a trainer run) on ``device``."""
        model, _ = build_model(self.model, vocab_size=int(vocab_size), seq_len=self.seq_len, seed=seed)
        return model.to(device)

    def _step(self, model: Any, opt: Any, loss: Any, step: int, total: int, what: str) -> None:
        """One optimizer step on ``loss`` at the schedule's learning rate, gradients clipped to norm 1."""
        if not torch.isfinite(loss):
            raise TrainingError(f"doremi {what} model diverged (loss {float(loss)}) at step {step}; lower lr")
        lr = self._lr(step, total)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    @staticmethod
    def _per_domain(values: Any, mask: Any, onehot: Any) -> tuple[Any, Any]:
        """Per-domain token sums and token counts: ``onehot^T @ (values * mask).sum(-1)``."""
        sums = onehot.T @ (values * mask).sum(dim=1)
        counts = onehot.T @ mask.sum(dim=1)
        return sums, counts

    def _evaluate(self, model: Any, corpus: Any, domains: list[str], device: Any, seed: int) -> dict[str, float]:
        """Mean validation token loss per domain, the trainer's evaluation on ``eval_batches`` batches."""
        losses = evaluate_domains(model, corpus, seq_len=self.seq_len, batches=self.eval_batches,
                                  batch_size=self.batch_size, seed=seed, device=device)
        return {d: losses[d] for d in domains}

    # ------------------------------------------------------------------ the method
    def propose(self, ctx: MixingContext) -> Proposal:
        self._check()
        if ctx.corpus is None:
            raise MixlabError("doremi needs the prepared corpus in the mixing context (ctx.corpus); none was given")
        corpus = ctx.corpus
        domains = list(ctx.domains)
        known = list(corpus.domains)
        missing = [d for d in domains if d not in known]
        if missing:
            raise ConfigError(f"doremi: context domains {missing} are not in the corpus {known}")
        k = len(domains)
        ref_mix = Mixture.uniform(domains) if self.reference is None else Mixture.from_weights(dict(self.reference))
        ref_mix.check_domains(domains, where="doremi reference mixture")
        # The sampler's domain ids index corpus.domains; map them onto ctx.domains.
        to_ctx = torch.tensor([domains.index(d) if d in domains else -1 for d in known], dtype=torch.long)
        sample_mix = Mixture({d: ref_mix[d] for d in known if ref_mix[d] > 0})
        device = resolve_device(self.device or ctx.device, where="doremi")
        ref_steps = self.reference_steps or self.steps
        seed = int(ctx.seed)

        with ctx.compute.timed():
            ref = self._model(corpus.vocab_size, seed, device)
            fpt = flops_per_token(ref.config, self.seq_len)
            tokens_per_step = self.batch_size * self.seq_len
            # 1. reference model, ordinary mean token loss on the reference mixture
            t0 = time.perf_counter()
            sampler = MixtureSampler(
                corpus, sample_mix, seq_len=self.seq_len, batch_size=self.batch_size, seed=seed, on_exceed="warn"
            )
            opt = build_optimizer(ref, lr=self.lr, weight_decay=self.weight_decay, device=device)
            for step in range(ref_steps):
                b = sampler.next_batch().to(device)
                _, loss = ref(b.input_ids, b.labels)
                self._step(ref, opt, loss, step, ref_steps, "reference")
            ctx.compute.add(flops=fpt * ref_steps * tokens_per_step, tokens=ref_steps * tokens_per_step)
            log.info("doremi: reference model trained (%d steps, %.1fs)", ref_steps, time.perf_counter() - t0)
            ref.eval()
            for p in ref.parameters():
                p.requires_grad_(False)

            # 2. proxy model with Group DRO over the domain weights
            t0 = time.perf_counter()
            proxy = self._model(corpus.vocab_size, seed + 1, device)
            opt = build_optimizer(proxy, lr=self.lr, weight_decay=self.weight_decay, device=device)
            sampler = MixtureSampler(
                corpus, sample_mix, seq_len=self.seq_len, batch_size=self.batch_size, seed=seed + 1, on_exceed="warn"
            )
            alpha = np.full(k, 1.0 / k)
            weights = np.zeros((self.steps, k))
            excess_hist = np.zeros((self.steps, k))
            to_ctx_dev = to_ctx.to(device)
            for step in range(self.steps):
                b = sampler.next_batch().to(device)
                onehot = torch.nn.functional.one_hot(to_ctx_dev[b.domain_ids], k).float()
                mask = (b.labels >= 0).float()
                with torch.no_grad():
                    ref_tl = ref.token_losses(b.input_ids, b.labels)
                tl = proxy.token_losses(b.input_ids, b.labels)
                excess = torch.clamp(tl.detach() - ref_tl, min=0.0)
                ex_sum, counts = self._per_domain(excess, mask, onehot)
                present = counts > 0
                lam = torch.where(present, ex_sum / counts.clamp(min=1.0), torch.zeros_like(ex_sum))
                lam_np = lam.double().cpu().numpy()
                alpha = doremi_update(np.log(alpha), lam_np, self.eta, self.smoothing)
                weights[step], excess_hist[step] = alpha, lam_np
                loss_sum, _ = self._per_domain(tl, mask, onehot)
                dom_loss = torch.where(present, loss_sum / counts.clamp(min=1.0), torch.zeros_like(loss_sum))
                loss = (torch.as_tensor(alpha, dtype=dom_loss.dtype, device=device) * dom_loss).sum()
                self._step(proxy, opt, loss, step, self.steps, "proxy")
            # proxy training plus one reference forward (about a third of a training step) per token
            ctx.compute.add(
                flops=fpt * self.steps * tokens_per_step * (1.0 + 1.0 / 3.0),
                tokens=self.steps * tokens_per_step,
            )
            log.info("doremi: proxy trained with Group DRO (%d steps, %.1fs)", self.steps, time.perf_counter() - t0)
            self.weights_ = weights
            self.excess_ = excess_hist
            if self.eval_batches > 0:
                self.reference_val_ = self._evaluate(ref, corpus, domains, device, seed)
                self.proxy_val_ = self._evaluate(proxy, corpus, domains, device, seed)
                ctx.compute.add(
                    flops=fpt / 3.0 * 2 * k * self.eval_batches * tokens_per_step,
                    tokens=0,
                )

        avg = weights.mean(axis=0)
        mixture = Mixture.from_weights(avg, domains)
        log.info("doremi: averaged domain weights %s", mixture)
        cons = ctx.constraints()
        if not cons.satisfied(avg / avg.sum()):
            log.info("doremi: averaged weights break the context's bounds/epoch cap; projected onto them")
            mixture = Mixture.from_weights(cons.clip_and_renormalise(avg / avg.sum()), domains)
        return Proposal(mixture)
