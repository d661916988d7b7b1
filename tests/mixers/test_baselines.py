import pytest

from mixlab.errors import ConfigError
from mixlab.mixers import get_mixer
from mixlab.mixers.base import MixingContext
from mixlab.mixers.baselines import unimax_allocation


def _ctx(avail, total, **kw):
    return MixingContext(domains=list(avail), available_tokens=avail, total_tokens=total, **kw)


def test_uniform_and_natural():
    ctx = _ctx({"a": 100, "b": 300, "c": 600}, 500)
    u = get_mixer("uniform").propose(ctx).mixture
    assert u.to_dict() == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    n = get_mixer("natural").propose(ctx).mixture
    assert n.to_dict() == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.6})
    assert ctx.compute.flops == 0 and ctx.compute.tokens == 0


def test_uniform_projected_onto_epoch_cap():
    # budget 900, domain a holds 100 tokens at 1 epoch -> w_a <= 1/9; the rest shared equally
    ctx = _ctx({"a": 100, "b": 1000, "c": 1000}, 900, max_epochs=1.0)
    u = get_mixer("uniform").propose(ctx).mixture.to_dict()
    assert u["a"] == pytest.approx(1 / 9, abs=1e-6)
    assert u["b"] == pytest.approx(4 / 9, abs=1e-6)


def test_unimax_hand_example():
    # budget 1000 over 3 domains, 2 epochs: a (50 tokens) can take 100 < 333, so b and c share 900;
    # b (400 tokens) can take 800 > 450, so b = c = 450.
    alloc = unimax_allocation({"a": 50, "b": 400, "c": 5000}, 1000, 2.0)
    assert alloc == pytest.approx({"a": 100, "b": 450, "c": 450})
    m = get_mixer("unimax", max_epochs=2.0).propose(_ctx({"a": 50, "b": 400, "c": 5000}, 1000)).mixture
    assert m.to_dict() == pytest.approx({"a": 0.10, "b": 0.45, "c": 0.45})


def test_unimax_cascades_and_uses_context_cap():
    # 1 epoch: a=10, b=100 capped, c gets 1000-110 = 890 (its cap is 5000)
    ctx = _ctx({"a": 10, "b": 100, "c": 5000}, 1000, max_epochs=1.0)
    m = get_mixer("unimax").propose(ctx).mixture.to_dict()
    assert m == pytest.approx({"a": 0.01, "b": 0.10, "c": 0.89})


def test_unimax_budget_larger_than_corpus_is_natural_at_cap():
    m = get_mixer("unimax", max_epochs=1.0).propose(_ctx({"a": 10, "b": 30}, 10_000)).mixture.to_dict()
    assert m == pytest.approx({"a": 0.25, "b": 0.75})


def test_unimax_equal_to_uniform_when_data_is_plentiful():
    m = get_mixer("unimax").propose(_ctx({"a": 10**6, "b": 10**7}, 1000)).mixture.to_dict()
    assert m == pytest.approx({"a": 0.5, "b": 0.5})


def test_bad_inputs_raise_mixlab_errors():
    with pytest.raises(ConfigError):
        get_mixer("natural").propose(_ctx({"a": 0, "b": 0}, 10))
    with pytest.raises(ConfigError):
        get_mixer("unimax", max_epochs=0).propose(_ctx({"a": 1, "b": 1}, 10))
    with pytest.raises(ConfigError):
        get_mixer("uniform", bogus=1)
