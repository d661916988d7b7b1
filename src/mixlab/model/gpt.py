"""A small, readable GPT for proxy runs, in the spirit of nanoGPT.

Pre-norm decoder blocks (RMSNorm or LayerNorm), causal multi-head attention through
``torch.nn.functional.scaled_dot_product_attention``, rotary (RoPE, Su et al. 2021) or learned
absolute positions, a GELU MLP and an output head tied to the token embedding. Shapes in comments
use B = batch, T = sequence length, C = ``n_embd``, H = ``n_head``, D = C / H, V = ``vocab_size``.

Inputs follow the mixlab sampler contract: ``labels`` are the inputs shifted by one already, so the
loss compares ``logits[:, t]`` with ``labels[:, t]`` directly (no shift inside the model). Labels equal
to ``-100`` are ignored, as in PyTorch's ``cross_entropy``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixlab.errors import ConfigError

IGNORE_INDEX = -100


@dataclass
class GPTConfig:
    """Architecture of a :class:`GPT`. ``vocab_size`` is usually filled from the corpus."""

    vocab_size: int = 4096
    """Number of token ids (embedding rows and output logits)."""
    block_size: int = 256
    """Longest sequence the model accepts (size of the learned position table / RoPE cache)."""
    n_layer: int = 4
    """Number of transformer blocks."""
    n_head: int = 4
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 128
    """Model width C."""
    mlp_ratio: float = 4.0
    """Hidden width of the MLP as a multiple of ``n_embd``."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches (0 for proxy runs)."""
    bias: bool = False
    """Use biases in linear layers and LayerNorm."""
    norm: str = "rmsnorm"
    """``rmsnorm`` or ``layernorm``."""
    pos: str = "rope"
    """``rope`` (rotary) or ``learned`` absolute position embeddings."""
    rope_theta: float = 10000.0
    """Base of the rotary frequencies."""
    tie_embeddings: bool = True
    """Share the token embedding with the output head."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model config: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ConfigError("model config: RoPE needs an even head dimension (n_embd / n_head)")
        if self.norm not in ("rmsnorm", "layernorm"):
            raise ConfigError(f"model config: norm must be 'rmsnorm' or 'layernorm', got {self.norm!r}")
        if self.pos not in ("rope", "learned"):
            raise ConfigError(f"model config: pos must be 'rope' or 'learned', got {self.pos!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"model config: dropout must be in [0, 1), got {self.dropout!r}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"model config: mlp_ratio must be positive, got {self.mlp_ratio!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "model") -> GPTConfig:
        """Build from a plain mapping, naming unknown keys in the error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown GPT config field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich 2019): x / rms(x) * g."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def _norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


def rope_cache(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [T, D/2] for rotary embeddings: angle(t, i) = t * theta^(-2i/D)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of x [B, H, T, D] by the angles in cos/sin [T, D/2]."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # [B, H, T, D/2] each
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # [B, H, T, D/2, 2]
    return out.flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # [B, T, C] each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # [B, H, T, D]
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q = apply_rope(q, cos[:T], sin[:T])
            k = apply_rope(k, cos[:T], sin[:T])
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, T, D]
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = int(config.mlp_ratio * config.n_embd)
        self.fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # [B, T, C]


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.norm1 = _norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm2 = _norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """Decoder-only language model; ``GPT(config)(input_ids, labels=None)``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = _norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if config.pos == "rope":
            cos, sin = rope_cache(config.block_size, config.head_dim, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        else:
            self.rope_cos = self.rope_sin = None
        self.apply(self._init_weights)
        # GPT-2 scaled init of residual projections: std 0.02 / sqrt(2 * n_layer).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states [B, T, C] for input_ids [B, T]."""
        B, T = input_ids.shape
        if T > self.config.block_size:
            raise ConfigError(
                f"sequence length {T} exceeds the model's block_size {self.config.block_size}; "
                "raise block_size in the model config or lower seq_len"
            )
        x = self.wte(input_ids)  # [B, T, C]
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=input_ids.device))  # + [T, C]
        x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if self.rope_cos is not None else None
        for block in self.blocks:
            x = block(x, rope)
        return self.norm_f(x)

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, T, V]; with ``labels`` [B, T] also the mean token cross-entropy."""
        logits = self.lm_head(self.hidden_states(input_ids))  # [B, T, V]
        if labels is None:
            return logits
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    def token_losses(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy [B, T] (0 where the label is ignored)."""
        logits = self.lm_head(self.hidden_states(input_ids))  # [B, T, V]
        losses = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        )
        return losses.view(labels.shape)


def count_params(model: nn.Module, *, non_embedding: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once).

    With ``non_embedding=True`` the token and position embedding tables are left out, the convention
    behind the preset names (Kaplan et al. 2020 count non-embedding parameters).
    """
    seen: set[int] = set()
    total = 0
    embed_ids: set[int] = set()
    if non_embedding:
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                embed_ids.add(id(module.weight))
    for p in model.parameters():
        if id(p) in seen or id(p) in embed_ids:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def config_params(config: GPTConfig, *, non_embedding: bool = False) -> int:
    """Parameter count of ``GPT(config)`` computed from the config alone (no model built)."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    hidden = int(config.mlp_ratio * C)
    norm = C * (2 if (config.norm == "layernorm" and config.bias) else 1)
    bias = config.bias
    attn = 3 * C * C + (3 * C if bias else 0) + C * C + (C if bias else 0)
    mlp = C * hidden + (hidden if bias else 0) + hidden * C + (C if bias else 0)
    per_block = attn + mlp + 2 * norm
    body = L * per_block + norm
    if non_embedding:
        return body
    embed = V * C + (config.block_size * C if config.pos == "learned" else 0)
    head = 0 if config.tie_embeddings else V * C
    return body + embed + head


def flops_per_token(config: GPTConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token: 6N + 12 * n_layer * n_embd * T.

    N counts the non-embedding parameters plus the output head (V x C matmul), so embedding lookups
    cost nothing; the second term is the attention score/value matmuls (Kaplan et al. 2020, eq. 2.2
    forward cost 2N + 2 n_layer n_ctx d_attn, times 3 for the backward pass; PaLM appendix B counts
    it as 12 L H Q T, the same quantity with H * Q = n_embd). ``seq_len`` defaults to ``block_size``.
    """
    T = config.block_size if seq_len is None else int(seq_len)
    n = config_params(config, non_embedding=True) + config.vocab_size * config.n_embd
    return float(6 * n + 12 * config.n_layer * config.n_embd * T)
