"""Preconditioners P that stand for the inverse Hessian in Group Influence, I = g_T^T P g_D.

TiKMiX (arXiv 2508.17677, Eq. 8) writes the influence with H^-1; computing it exactly is only possible
for small models, so mixlab offers a ladder of approximations, all symmetric positive (semi-)definite:

* ``identity``: P = I (TracIn-style gradient inner product; Pruthi et al. 2020).
* ``adam``: P = diag(1 / (sqrt(v_hat) + eps)), the optimizer's own bias-corrected second moment read
  from its state, i.e. the metric the optimizer itself steps in.
* ``diag-gn``: P = (diag F + lambda)^-1 with F the Gauss-Newton/Fisher diagonal, estimated from
  gradients of the loss against labels sampled from the model (or the observed labels, the empirical
  Fisher, for models that are not LMs); lambda = damping x mean(diag F).
* ``kfac`` / ``ekfac``: for every ``nn.Linear`` whose weight no other module shares, the Kronecker
  factored Gauss-Newton G (x) A (Martens & Grosse 2015), optionally with EK-FAC's eigenvalue
  correction (George et al. 2018; used for influence by Grosse et al. 2023, Eq. 16-20), inverted with
  damping lambda = damping x mean eigenvalue; all other parameters (embeddings, norms, tied heads)
  use the damped diagonal above.
* ``exact``: (H + damping I)^-1 from the dense Hessian of the training loss (small models only; the
  reference the known-answer tests compare against).
* any callable ``flat_vector -> flat_vector``.

All preconditioners act on flat vectors laid out as ``torch.cat([p.reshape(-1) for p in params])``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mixlab.errors import ConfigError, MixlabError
from mixlab.influence.batches import (
    count_terms,
    is_lm_batch,
    iterate,
    lm_sampled_loss,
    model_device,
    to_device,
)

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


def trainable_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Trainable parameters in ``model.parameters()`` order (tied weights once)."""
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1).float()
            for g, p in zip(grads, params, strict=True)
        ]
    )


class Preconditioner:
    """Base class: ``bind(params)``, optionally ``fit(model, loss_fn, batches)``, then ``apply(v)``."""

    name: str = "preconditioner"
    needs_data: bool = False
    """True when :meth:`fit` must see training batches (the fit passes are counted as cost)."""

    def bind(self, params: Sequence[torch.Tensor]) -> Preconditioner:
        self.shapes_ = [tuple(p.shape) for p in params]
        self.sizes_ = [p.numel() for p in params]
        self.n_params_ = sum(self.sizes_)
        return self

    def fit(self, model: torch.nn.Module, loss_fn: LossFn, batches: Any) -> Preconditioner:
        return self

    def is_fitted(self) -> bool:
        """True once :meth:`fit` has seen data (``batches_seen_``): Group Influence then reuses the fit
        (e.g. across the pooled measurements of one stage boundary) instead of paying for it again."""
        return hasattr(self, "batches_seen_")

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class IdentityPreconditioner(Preconditioner):
    """P = I: the influence is the plain gradient inner product (TracIn)."""

    name = "identity"

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        return v


class CallablePreconditioner(Preconditioner):
    """Wraps a user function ``flat_vector -> P @ flat_vector``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str = "callable") -> None:
        self.fn = fn
        self.name = name

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        out = self.fn(v)
        if not isinstance(out, torch.Tensor) or out.shape != v.shape:
            raise ConfigError(f"preconditioner {self.name!r} must return a tensor of shape {tuple(v.shape)}")
        return out


class AdamPreconditioner(Preconditioner):
    """P = diag(1 / (sqrt(v_hat) + eps)) from an Adam/AdamW optimizer's state.

    ``v_hat = exp_avg_sq / (1 - beta2^step)`` (Kingma & Ba 2015, Alg. 1). ``eps`` defaults to the
    optimizer's own.
    """

    name = "adam"

    def __init__(self, optimizer: Any, eps: float | None = None) -> None:
        self.optimizer = optimizer
        self.eps = eps

    def bind(self, params: Sequence[torch.Tensor]) -> AdamPreconditioner:
        super().bind(params)
        if self.optimizer is None:
            raise MixlabError(
                "the 'adam' preconditioner needs the optimizer (its second-moment state); pass optimizer=..., "
                "or choose preconditioner='identity', 'diag-gn' or 'kfac'"
            )
        group_of = {id(p): g for g in self.optimizer.param_groups for p in g["params"]}
        diags = []
        for i, p in enumerate(params):
            state = self.optimizer.state.get(p, {})
            if "exp_avg_sq" not in state or id(p) not in group_of:
                raise MixlabError(
                    f"optimizer has no Adam second moment for parameter #{i} {tuple(p.shape)}; train at least "
                    "one step before measuring influence, or use preconditioner='identity'"
                )
            group = group_of[id(p)]
            beta2 = float(group.get("betas", (0.9, 0.999))[1])
            eps = float(self.eps if self.eps is not None else group.get("eps", 1e-8))
            step = float(state.get("step", 1))
            v_hat = state["exp_avg_sq"].detach().float() / max(1.0 - beta2**step, 1e-12)
            diags.append((1.0 / (v_hat.sqrt() + eps)).reshape(-1).to(p.device))
        self.diag_ = torch.cat(diags)
        return self

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.diag_


def _gn_loss(
    model: torch.nn.Module, loss_fn: LossFn, batch: Any, sampled: bool, gen: torch.Generator | None
) -> torch.Tensor:
    if sampled and is_lm_batch(batch):
        return lm_sampled_loss(model, batch, gen)
    return loss_fn(model, batch)


class DiagonalGNPreconditioner(Preconditioner):
    """P = (diag F + lambda)^-1, F the Gauss-Newton / Fisher diagonal of the mean training loss.

    With labels sampled from the model, a batch-mean gradient over N loss terms satisfies
    N * E[g_batch^2] = mean over terms of E[g_term^2] = diag F (cross terms vanish in expectation), so F
    is estimated from one backward pass per batch, without per-example gradients.
    ``lambda = damping * mean(diag F)``.
    """

    name = "diag-gn"
    needs_data = True

    def __init__(
        self, damping: float = 1e-3, sampled: bool = True, max_batches: int | None = 16, seed: int = 0
    ) -> None:
        self.damping = damping
        self.sampled = sampled
        self.max_batches = max_batches
        self.seed = seed

    def fit(self, model: torch.nn.Module, loss_fn: LossFn, batches: Any) -> DiagonalGNPreconditioner:
        params = trainable_params(model)
        device = model_device(model)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        total = torch.zeros(sum(p.numel() for p in params), device=device)
        n = 0
        for batch in iterate(batches):
            if self.max_batches is not None and n >= self.max_batches:
                break
            batch = to_device(batch, device)
            g = flat_grad(_gn_loss(model, loss_fn, batch, self.sampled, gen), params)
            total += count_terms(batch) * g.square()
            n += 1
        if n == 0:
            raise MixlabError(
                "the diag-gn preconditioner got no batches to estimate the Fisher diagonal from"
            )
        self.fisher_ = total / n
        lam = self.damping * float(self.fisher_.mean()) + 1e-12
        self.diag_ = 1.0 / (self.fisher_ + lam)
        self.batches_seen_ = n
        return self

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.diag_


class KFACPreconditioner(Preconditioner):
    """Damped inverse of the K-FAC (or EK-FAC) Gauss-Newton approximation.

    For a Linear layer with inputs a_t (a 1 appended when it has a bias) and output gradients delta_t
    of the per-term losses, GN ~= G (x) A with A = mean_t a_t a_t^T, G = mean_t delta_t delta_t^T.
    With eigenbases A = Q_A diag(s_A) Q_A^T and G = Q_G diag(s_G) Q_G^T the damped inverse applied to
    a weight gradient X is Q_G [(Q_G^T X Q_A) / (Lambda + lambda)] Q_A^T, with Lambda = s_G s_A^T
    (K-FAC) or, for EK-FAC, Lambda_ij = mean_t (Q_G^T delta_t)_i^2 (Q_A^T a_t)_j^2 from a second pass
    (George et al. 2018). ``lambda = damping * mean(Lambda)`` per layer. Parameters outside such layers
    fall back to :class:`DiagonalGNPreconditioner`'s estimate.
    """

    needs_data = True

    def __init__(
        self,
        damping: float = 1e-3,
        eigen_correction: bool = True,
        sampled: bool = True,
        max_batches: int | None = 16,
        max_dim: int = 4096,
        seed: int = 0,
    ) -> None:
        self.damping = damping
        self.eigen_correction = eigen_correction
        self.sampled = sampled
        self.max_batches = max_batches
        self.max_dim = max_dim
        self.seed = seed

    @property
    def name(self) -> str:  # type: ignore[override]
        return "ekfac" if self.eigen_correction else "kfac"

    def _layers(self, model: torch.nn.Module, params: Sequence[torch.Tensor]) -> dict[int, torch.nn.Linear]:
        owners: dict[int, int] = {}
        for m in model.modules():
            for p in m._parameters.values():
                if p is not None:
                    owners[id(p)] = owners.get(id(p), 0) + 1
        index = {id(p): i for i, p in enumerate(params)}
        layers = {}
        for m in model.modules():
            if not isinstance(m, torch.nn.Linear) or id(m.weight) not in index or owners[id(m.weight)] != 1:
                continue
            if m.bias is not None and (id(m.bias) not in index or owners[id(m.bias)] != 1):
                continue
            if m.in_features + 1 > self.max_dim or m.out_features > self.max_dim:
                continue
            layers[index[id(m.weight)]] = m
        return layers

    def _passes(
        self, model: torch.nn.Module, loss_fn: LossFn, batches: Any, on_layer: Callable, params: Sequence
    ) -> int:
        device = model_device(model)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        handles = []
        for i, m in self.layers_.items():

            def fwd(mod: torch.nn.Module, inputs: tuple, out: torch.Tensor, i: int = i) -> None:
                a = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
                if mod.bias is not None:
                    a = torch.cat([a, torch.ones(a.shape[0], 1, device=a.device)], dim=1)
                if out.requires_grad:
                    out.register_hook(
                        lambda g, i=i, a=a: on_layer(i, a, g.detach().reshape(-1, g.shape[-1]).float())
                    )

            handles.append(m.register_forward_hook(fwd))
        n = 0
        try:
            for batch in iterate(batches):
                if self.max_batches is not None and n >= self.max_batches:
                    break
                batch = to_device(batch, device)
                self._terms = count_terms(batch)
                g = flat_grad(_gn_loss(model, loss_fn, batch, self.sampled, gen), params)
                self._diag_sum += self._terms * g.square()
                n += 1
        finally:
            for h in handles:
                h.remove()
        return n

    def fit(self, model: torch.nn.Module, loss_fn: LossFn, batches: Any) -> KFACPreconditioner:
        params = trainable_params(model)
        self.layers_ = self._layers(model, params)
        A: dict[int, torch.Tensor] = {}
        G: dict[int, torch.Tensor] = {}
        rows: dict[int, int] = {}

        def factors(i: int, a: torch.Tensor, g: torch.Tensor) -> None:
            d = g * self._terms
            A[i] = A.get(i, 0) + a.T @ a
            G[i] = G.get(i, 0) + d.T @ d
            rows[i] = rows.get(i, 0) + a.shape[0]

        self._diag_sum = torch.zeros(sum(p.numel() for p in params), device=model_device(model))
        n = self._passes(model, loss_fn, batches, factors, params)
        if n == 0:
            raise MixlabError(f"the {self.name} preconditioner got no batches to estimate its factors from")
        fisher = self._diag_sum / n
        self.diag_ = 1.0 / (fisher + self.damping * float(fisher.mean()) + 1e-12)
        self.eig_: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for i in self.layers_:
            sA, QA = torch.linalg.eigh((A[i] / rows[i]).double())
            sG, QG = torch.linalg.eigh((G[i] / rows[i]).double())
            lam = torch.outer(sG.clamp_min(0), sA.clamp_min(0))
            self.eig_[i] = (QG.float(), QA.float(), lam.float())
        if self.eigen_correction and self.layers_:
            corr: dict[int, torch.Tensor] = {}

            def correction(i: int, a: torch.Tensor, g: torch.Tensor) -> None:
                QG, QA, _ = self.eig_[i]
                corr[i] = corr.get(i, 0) + ((g * self._terms) @ QG).square().T @ (a @ QA).square()

            self._diag_sum = torch.zeros_like(self._diag_sum)
            self._passes(model, loss_fn, batches, correction, params)
            for i in self.layers_:
                QG, QA, _ = self.eig_[i]
                self.eig_[i] = (QG, QA, corr[i] / rows[i])
        self.batches_seen_ = n
        self.offsets_ = [0]
        for p in params:
            self.offsets_.append(self.offsets_[-1] + p.numel())
        self.bias_of_ = {}
        index = {id(p): j for j, p in enumerate(params)}
        for i, m in self.layers_.items():
            self.bias_of_[i] = index[id(m.bias)] if m.bias is not None else None
        return self

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        out = v * self.diag_
        for i, m in self.layers_.items():
            QG, QA, lam = self.eig_[i]
            o = self.offsets_
            W = v[o[i] : o[i + 1]].view(m.out_features, m.in_features)
            b = self.bias_of_[i]
            X = torch.cat([W, v[o[b] : o[b + 1]].view(-1, 1)], dim=1) if b is not None else W
            Y = QG.T @ X @ QA
            Y = QG @ (Y / (lam + self.damping * float(lam.mean()) + 1e-12)) @ QA.T
            out[o[i] : o[i + 1]] = Y[:, : m.in_features].reshape(-1)
            if b is not None:
                out[o[b] : o[b + 1]] = Y[:, -1]
        return out


class ExactHessianPreconditioner(Preconditioner):
    """P = (H + damping I)^-1 with H the dense Hessian of the mean training loss over the fit batches
    (batches weighted equally). Built from one Hessian-vector row per parameter: small models only."""

    name = "exact"
    needs_data = True

    def __init__(self, damping: float = 0.0, max_params: int = 5000) -> None:
        self.damping = damping
        self.max_params = max_params

    def fit(self, model: torch.nn.Module, loss_fn: LossFn, batches: Any) -> ExactHessianPreconditioner:
        params = trainable_params(model)
        p = sum(q.numel() for q in params)
        if p > self.max_params:
            raise MixlabError(
                f"the exact inverse-Hessian preconditioner builds a {p} x {p} matrix; it is meant for models "
                f"up to max_params={self.max_params} parameters. Use 'ekfac', 'diag-gn' or 'adam' instead"
            )
        device = model_device(model)
        H = torch.zeros(p, p, dtype=torch.float64, device=device)
        n = 0
        for batch in iterate(batches):
            batch = to_device(batch, device)
            grads = torch.autograd.grad(loss_fn(model, batch), params, create_graph=True)
            g = torch.cat([x.reshape(-1) for x in grads])
            for k in range(p):
                row = torch.autograd.grad(g[k], params, retain_graph=True, allow_unused=True)
                H[k] += torch.cat(
                    [
                        (r if r is not None else torch.zeros_like(q)).reshape(-1)
                        for r, q in zip(row, params, strict=True)
                    ]
                ).double()
            n += 1
        if n == 0:
            raise MixlabError("the exact preconditioner got no batches to build the Hessian from")
        H = H / n
        self.hessian_ = 0.5 * (H + H.T)
        self.batches_seen_ = n
        try:
            self.inverse_ = torch.linalg.inv(
                self.hessian_ + self.damping * torch.eye(p, dtype=torch.float64, device=device)
            )
        except RuntimeError:
            raise MixlabError("the Hessian is singular at this point; set damping > 0") from None
        return self

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        return (self.inverse_ @ v.double()).to(v.dtype)


PRECONDITIONERS = ("identity", "adam", "diag-gn", "kfac", "ekfac", "exact")


def make_preconditioner(spec: Any, *, optimizer: Any = None, damping: float | None = None) -> Preconditioner:
    """A :class:`Preconditioner` from a name in ``PRECONDITIONERS``, an instance, or a callable."""
    if isinstance(spec, Preconditioner):
        return spec
    if callable(spec):
        return CallablePreconditioner(spec, getattr(spec, "__name__", "callable"))
    kw = {} if damping is None else {"damping": damping}
    if spec == "identity":
        return IdentityPreconditioner()
    if spec == "adam":
        return AdamPreconditioner(optimizer)
    if spec == "diag-gn":
        return DiagonalGNPreconditioner(**kw)
    if spec in ("kfac", "ekfac"):
        return KFACPreconditioner(eigen_correction=spec == "ekfac", **kw)
    if spec == "exact":
        return ExactHessianPreconditioner(**kw)
    raise ConfigError(
        f"unknown preconditioner {spec!r}; choose one of {list(PRECONDITIONERS)} or pass a callable"
    )
