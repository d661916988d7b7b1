import math

import pytest
import torch

from mixlab.errors import ConfigError
from mixlab.model import (
    GPT,
    GPTConfig,
    build_hf_model,
    config_params,
    count_params,
    flops_per_token,
    list_presets,
    preset,
)

torch.set_num_threads(1)


def _cfg(**kw):
    base = dict(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=32)
    base.update(kw)
    return GPTConfig(**base)


@pytest.mark.parametrize("norm,pos", [("rmsnorm", "rope"), ("layernorm", "learned")])
def test_forward_shapes_loss_and_token_losses(norm, pos):
    torch.manual_seed(0)
    model = GPT(_cfg(norm=norm, pos=pos, bias=norm == "layernorm"))
    x = torch.randint(0, 97, (3, 16))
    y = torch.randint(0, 97, (3, 16))
    logits = model(x)
    assert logits.shape == (3, 16, 97)
    _, loss = model(x, y)
    tl = model.token_losses(x, y)
    assert tl.shape == (3, 16)
    assert torch.allclose(tl.mean(), loss, atol=1e-6)
    # a freshly initialised model is close to uniform: loss ~ ln V
    assert abs(loss.item() - math.log(97)) < 0.3
    y2 = y.clone()
    y2[:, :8] = -100
    assert torch.allclose(model(x, y2)[1], tl[:, 8:].mean(), atol=1e-6)


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = GPT(_cfg()).eval()
    x = torch.randint(0, 97, (1, 12))
    x2 = x.clone()
    x2[0, 8:] = (x2[0, 8:] + 1) % 97
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-5)
    assert not torch.allclose(a[0, 8:], b[0, 8:], atol=1e-3)


def test_rope_is_relative_position_invariant():
    from mixlab.model.gpt import apply_rope, rope_cache

    cos, sin = rope_cache(16, 8, 10000.0)
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 16, 8)
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 16, 8)
    qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    # <q_m, k_n> depends only on m - n
    assert torch.allclose((qr[0, 0, 5] * kr[0, 0, 3]).sum(), (qr[0, 0, 12] * kr[0, 0, 10]).sum(), atol=1e-5)


def test_tied_embeddings_and_param_counts():
    cfg = _cfg()
    model = GPT(cfg)
    assert model.lm_head.weight is model.wte.weight
    assert count_params(model) == config_params(cfg)
    untied = _cfg(tie_embeddings=False, pos="learned", norm="layernorm", bias=True)
    assert count_params(GPT(untied)) == config_params(untied)
    assert count_params(model, non_embedding=True) == config_params(cfg, non_embedding=True)
    assert config_params(cfg) - config_params(cfg, non_embedding=True) == 97 * 32


def test_presets_sizes_match_their_names():
    names = list(list_presets())
    assert names[0] == "nano-100k" and "tiny-1m" in names and "small-10m" in names and "base-124m" in names
    expected = {"tiny-1m": 1e6, "small-10m": 10e6, "mini-3m": 3e6, "medium-40m": 40e6}
    for name, n in expected.items():
        got = config_params(preset(name), non_embedding=True)
        assert 0.75 * n < got < 1.25 * n, (name, got)
    gpt2 = preset("base-124m", vocab_size=50257, pos="learned")
    assert 120e6 < config_params(gpt2) < 130e6
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("huge-1t")
    with pytest.raises(ConfigError, match="unknown GPT config"):
        preset("tiny-1m", n_layers=3)


def test_config_validation():
    with pytest.raises(ConfigError, match="divisible"):
        _cfg(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="n_layer"):
        _cfg(n_layer=0)
    with pytest.raises(ConfigError, match="block_size"):
        GPT(_cfg())(torch.zeros(1, 40, dtype=torch.long))


def test_flops_per_token():
    cfg = _cfg()
    n = config_params(cfg, non_embedding=True) + 97 * 32
    assert flops_per_token(cfg, 16) == 6 * n + 12 * 2 * 32 * 16
    assert flops_per_token(cfg) == 6 * n + 12 * 2 * 32 * 32


def test_hf_adapter_builds_llama_without_download_and_trains():
    torch.manual_seed(0)
    model = build_hf_model(
        {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64},
        vocab_size=50,
    )
    assert model.config.vocab_size == 50
    x = torch.randint(0, 50, (2, 8))
    logits, loss = model(x, x)
    assert logits.shape == (2, 8, 50)
    assert torch.allclose(model.token_losses(x, x).mean(), loss, atol=1e-6)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = loss.item()
    for _ in range(15):
        opt.zero_grad()
        model(x, x)[1].backward()
        opt.step()
    assert model(x, x)[1].item() < first - 1.0
    with pytest.raises(ConfigError, match="model_type"):
        build_hf_model({"hidden_size": 8})
    with pytest.raises(ConfigError):
        build_hf_model({"model_type": "no-such-arch"})
