"""Proxy and target training: the trainer, checkpoints/resume, per-domain evaluation, DDP, and the
``LocalProxyRunner`` that mixing methods use."""

from mixlab.train.config import TrainConfig
from mixlab.train.distributed import resolve_device
from mixlab.train.evaluate import evaluate_domains, validation_windows
from mixlab.train.lr import lr_at
from mixlab.train.models import build_model, load_trained_model
from mixlab.train.optim import build_optimizer
from mixlab.train.proxy import LocalProxyRunner
from mixlab.train.trainer import Trainer, TrainResult, train

__all__ = [
    "LocalProxyRunner",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_model",
    "build_optimizer",
    "evaluate_domains",
    "load_trained_model",
    "lr_at",
    "resolve_device",
    "train",
    "validation_windows",
]
