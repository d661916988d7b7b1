"""The typed configuration of a training run (``mixlab train --config run.yaml``)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from mixlab.data.targets import resolve_target_paths
from mixlab.errors import ConfigError
from mixlab.mixture import MixtureSpec, Schedule
from mixlab.utils.config import parse_config
from mixlab.utils.io import read_yaml

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# Fields that do not change what is computed: left out of the run's config hash.
_NOT_HASHED = {"workspace", "out_dir", "run_name", "progress", "checkpoint_interval", "keep_checkpoints",
               "kind", "method", "log_level"}


class TrainConfig(BaseModel):
    """One training run: data, model, budget, optimisation and bookkeeping.

    The run directory is ``out_dir`` when given, else ``<workspace>/runs/<run id>`` where the run id is
    ``run_name`` or ``<kind>-<hash of the config>``: running the same config again resumes (or, when
    it finished, reuses) the same run.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    corpus: str | None = None
    """Path of a prepared corpus (``mixlab prepare``); may be omitted when a Corpus object is passed."""
    model: str | dict[str, Any] = "tiny-1m"
    """A preset name (``mixlab.model.list_presets()``), a GPTConfig mapping (optionally with
    ``preset:`` plus overrides) or a Hugging Face config mapping with ``model_type``."""
    mixture: MixtureSpec | None = None
    """Domain weights, a schedule (list of ``{start_step, mixture}``), a YAML/JSON file of either,
    inline weights ``web=0.7,code=0.3``, ``natural`` (proportional to tokens on disk; the default when
    unset) or ``uniform``. Parsed once, on validation, into a :class:`~mixlab.mixture.MixtureSpec`:
    an explicit :class:`~mixlab.mixture.Schedule`, or a name resolved against the corpus by
    :meth:`resolve_mixture`. Written back (``config.yaml``, the config hash) as the name, the
    weights of a constant mixture, or the list of stages."""
    tokens: int = Field(1_000_000)
    """Training token budget; the run takes ``tokens // tokens_per_step`` optimizer steps."""
    seq_len: int = Field(128, ge=1)
    """Tokens per training sequence."""
    batch_size: int = Field(8, ge=1)
    """Sequences per micro-batch per process."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate of AdamW."""
    min_lr: float | None = Field(None, ge=0)
    """Final learning rate of the decay (default ``lr / 10``)."""
    warmup: float = Field(0.05, ge=0)
    """Linear warmup: a fraction of the steps when < 1, else a number of steps."""
    lr_schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    """Decay after warmup: cosine to ``min_lr``, warmup-stable-decay (linear decay over the last
    ``decay_frac`` of the steps), or constant."""
    decay_frac: float = Field(0.2, gt=0, le=1)
    """Fraction of the steps spent decaying in the ``wsd`` schedule."""
    weight_decay: float = Field(0.1, ge=0)
    """AdamW weight decay, applied to matrices and embeddings (not norms or biases)."""
    beta1: float = Field(0.9, ge=0, lt=1)
    """AdamW beta1."""
    beta2: float = Field(0.95, ge=0, lt=1)
    """AdamW beta2."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value (None: no clipping)."""
    eval_interval: int | None = Field(None, ge=1)
    """Evaluate per-domain validation loss every this many steps (default: 10 evaluations) and at the end."""
    eval_batches: int = Field(4, ge=1)
    """Fixed validation batches per domain."""
    eval_batch_size: int | None = Field(None, ge=1)
    """Sequences per validation batch (default ``batch_size``)."""
    seed: int = 0
    """Seed of the model initialisation and of the sampler's stream."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Autocast precision: ``auto`` is bfloat16 on a GPU that supports it and float32 on CPU."""
    compile: bool = False
    """Run the model through ``torch.compile``."""
    checkpoint_interval: int | None = Field(None, ge=1)
    """Save a checkpoint every this many steps (default: at every evaluation) and at the end."""
    keep_checkpoints: int = Field(2, ge=1)
    """How many of the newest checkpoints to keep."""
    max_epochs: float | dict[str, float] | None = None
    """Most passes over any domain's training tokens (or per domain); None = unlimited."""
    on_exceed: Literal["error", "warn"] = "error"
    """What happens when a domain would be repeated beyond ``max_epochs``."""
    workspace: str | None = None
    """Workspace holding ``mixlab.db`` and ``runs/`` (default ``$MIXLAB_WORKSPACE`` or ``./mixlab-workspace``)."""
    out_dir: str | None = None
    """Explicit run directory (overrides ``<workspace>/runs/<run id>``)."""
    run_name: str | None = None
    """Run id to use instead of the config hash."""
    kind: str = "train"
    """Run kind recorded in the store (``train``, ``proxy``, ``pipeline``, ...)."""
    method: str | None = None
    """Mixing method that produced the mixture, recorded in the store."""
    progress: bool = True
    """Show a progress bar (rank 0 only)."""
    log_level: str | None = None
    """Unused by the trainer itself; lets a run file set the CLI's logging level."""
    targets: list[str | dict[str, Any]] = Field(default_factory=list)
    """Evaluation-only targets evaluated beside the domains (``mixlab.data.targets``: ``PATH[=WEIGHT]``,
    ``builtin:pydoc``, ``domain:NAME`` or mappings); they appear in the curve as ``target:<name>`` and
    are never trained on."""
    target_eval_batches: int | None = Field(None, ge=1)
    """Validation batches per evaluation-only target (default ``4 * eval_batches``), on windows that are
    the same in every run whatever its seed."""

    @field_validator("tokens")
    @classmethod
    def _positive_tokens(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"the token budget must be positive, got {v}")
        return v

    @field_validator("mixture", mode="before")
    @classmethod
    def _parse_mixture(cls, v: Any) -> MixtureSpec | None:
        if v is None:
            return None
        try:
            return MixtureSpec.parse(v, where="mixture")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("mixture: ")) from None

    @field_serializer("mixture")
    def _dump_mixture(self, v: MixtureSpec | None) -> Any:
        return None if v is None else v.to_config()

    @field_validator("run_name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is not None and not RUN_NAME_RE.match(v):
            raise ValueError("use letters, digits, '_', '-' and '.' only (it becomes a directory name)")
        return v

    @model_validator(mode="after")
    def _lr_order(self) -> TrainConfig:
        if self.min_lr is not None and self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} is above lr={self.lr}")
        return self

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: Any, *, where: str = "train config") -> TrainConfig:
        """Validate a mapping; errors become a ConfigError naming ``where`` and each bad field."""
        return parse_config(cls, data, where)

    @classmethod
    def from_yaml(cls, path: str | Path, key: str | None = "train") -> TrainConfig:
        """Read a run file (settings at top level or under ``train:``); relative paths are resolved
        against the file's directory."""
        p = Path(path)
        data = read_yaml(p)
        if isinstance(data, dict) and key and isinstance(data.get(key), dict):
            data = data[key]
        if isinstance(data, dict) and "mixture" in data:  # a mixture file is named relative to the run file
            data = data | {"mixture": MixtureSpec.rebase(data["mixture"], p.parent)}
        cfg = cls.parse(data, where=str(p))
        base = p.parent
        updates: dict[str, Any] = {}
        for field in ("corpus", "workspace", "out_dir"):
            value = getattr(cfg, field)
            if value is not None and not Path(value).is_absolute():
                updates[field] = str(base / value)
        if cfg.targets:
            updates["targets"] = resolve_target_paths(cfg.targets, base)
        return cfg.model_copy(update=updates)

    # -- derived values -------------------------------------------------------------------------
    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def resolve_mixture(self, domains: list[str], token_counts: dict[str, int]) -> Schedule:
        """The schedule this config asks for (``natural`` when unset), checked against the corpus's domains."""
        spec = self.mixture or MixtureSpec(name="natural")
        try:
            return spec.resolve(domains, token_counts)
        except ConfigError as exc:
            raise ConfigError(f"train config: mixture: {exc}") from None

    def config_hash(self, corpus_fingerprint: str = "") -> str:
        """SHA-256 of everything that changes the run's results (plus the corpus fingerprint)."""
        payload = self.model_dump(exclude=_NOT_HASHED)
        if not payload.get("targets"):  # runs without targets keep the hash they had before targets existed
            payload.pop("targets", None)
            payload.pop("target_eval_batches", None)
        payload["corpus"] = corpus_fingerprint or payload.get("corpus")
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()
