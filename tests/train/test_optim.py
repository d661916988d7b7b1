import pytest
import torch

from mixlab.errors import ConfigError
from mixlab.model import GPT, preset
from mixlab.train import build_optimizer, resolve_device


def test_resolve_device_names_the_setting_in_its_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match=r"^doremi: device 'tpu7'"):
        resolve_device("tpu7", where="doremi")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda:1")


def test_build_optimizer_decays_matrices_only_and_skips_frozen_parameters():
    torch.manual_seed(0)
    model = GPT(preset("nano-100k", vocab_size=64))
    frozen = next(p for p in model.parameters() if p.dim() >= 2)
    frozen.requires_grad_(False)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.8, 0.9))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert all(p is not frozen for p in decay["params"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == trainable
    assert decay["betas"] == (0.8, 0.9) and decay["lr"] == 1e-3
