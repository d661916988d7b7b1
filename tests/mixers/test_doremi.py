import numpy as np
import pytest
import torch

from mixlab.errors import ConfigError, MixlabError
from mixlab.mixers import get_mixer
from mixlab.mixers.base import MixingContext
from mixlab.mixers.doremi import doremi_update


def test_doremi_update_hand_computed():
    # alpha = (0.5, 0.25, 0.25), lambda = (0, ln 2, 0), eta = 1:
    # exp(log alpha + lambda) = (0.5, 0.5, 0.25) -> softmax (0.4, 0.4, 0.2)
    # smoothing c = 0.1: 0.9 * (0.4, 0.4, 0.2) + 0.1 / 3
    out = doremi_update(np.log([0.5, 0.25, 0.25]), np.array([0.0, np.log(2.0), 0.0]), eta=1.0, smoothing=0.1)
    assert out == pytest.approx([0.36 + 0.1 / 3, 0.36 + 0.1 / 3, 0.18 + 0.1 / 3])
    assert out.sum() == pytest.approx(1.0)


def test_doremi_update_eta_and_no_smoothing():
    # eta = 2, lambda = (ln 3 / 2, 0): weights (1/2 * 3, 1/2) -> (0.75, 0.25)
    out = doremi_update(np.log([0.5, 0.5]), np.array([np.log(3.0) / 2, 0.0]), eta=2.0, smoothing=0.0)
    assert out == pytest.approx([0.75, 0.25])
    # equal excess losses leave the weights unchanged; smoothing 1 gives uniform
    assert doremi_update(np.log([0.2, 0.8]), np.array([0.7, 0.7]), smoothing=0.0) == pytest.approx([0.2, 0.8])
    assert doremi_update(np.log([0.2, 0.8]), np.array([5.0, 0.0]), smoothing=1.0) == pytest.approx([0.5, 0.5])
    with pytest.raises(ConfigError):
        doremi_update(np.log([0.5, 0.5]), np.array([0.1]))


def test_doremi_moves_weight_away_from_noise(noise_target_corpus):
    torch.set_num_threads(1)
    corpus = noise_target_corpus
    # the context lists domains in another order than the corpus: results must be aligned by name
    ctx = MixingContext(
        domains=["target", "noise"], available_tokens=corpus.token_counts(), total_tokens=100_000, corpus=corpus
    )
    mixer = get_mixer("doremi", steps=60, batch_size=16, seq_len=32, warmup=5, device="cpu")
    mix = mixer.propose(ctx).mixture
    assert mix["noise"] < 0.4 < mix["target"]  # uniform would be 0.5 each
    assert mixer.weights_.shape == (60, 2)
    assert mixer.weights_.mean(axis=0)[0] == pytest.approx(mix["target"])
    # the reference learned the target domain but not the noise
    assert mixer.reference_val_["target"] < 0.5 * mixer.reference_val_["noise"]
    assert ctx.compute.tokens == 2 * 60 * 16 * 32
    assert ctx.compute.flops > 0 and ctx.compute.seconds > 0


def test_doremi_needs_a_corpus_and_valid_params():
    ctx = MixingContext(domains=["a", "b"], available_tokens={"a": 1, "b": 1}, total_tokens=10)
    with pytest.raises(MixlabError, match="corpus"):
        get_mixer("doremi").propose(ctx)
    with pytest.raises(ConfigError):
        get_mixer("doremi", steps=0).propose(ctx)


def test_doremi_trains_on_the_context_device_through_the_trainer_pieces(noise_target_corpus, monkeypatch):
    """No device given: the context's device is used (the bench sets it for every method alike), and
    the learning rate of every step is the trainer's cosine schedule down to a tenth of the peak."""
    import mixlab.mixers.doremi as doremi

    seen: list[tuple[int, int, float]] = []
    shared = doremi.lr_at

    def spy(step, **kw):
        lr = shared(step, **kw)
        seen.append((step, kw["total_steps"], lr))
        return lr

    monkeypatch.setattr(doremi, "lr_at", spy)
    corpus = noise_target_corpus
    ctx = MixingContext(domains=list(corpus.domains), available_tokens=corpus.token_counts(), total_tokens=1000,
                        corpus=corpus, device="no-such-device")
    mixer = get_mixer("doremi", steps=6, batch_size=4, seq_len=16, warmup=2, eval_batches=0)
    with pytest.raises(ConfigError, match="doremi: device 'no-such-device'"):
        mixer.propose(ctx)
    ctx.device = "cpu"
    mixer.propose(ctx)
    assert [s for s, _, _ in seen] == list(range(6)) * 2  # the reference, then the Group-DRO proxy
    lrs = [lr for _, _, lr in seen[:6]]
    assert lrs[:2] == pytest.approx([1.5e-3, 3e-3]) and lrs[-1] == pytest.approx(3e-4)
