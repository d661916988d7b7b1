"""A damaged latest checkpoint falls back to the newest intact one, with a warning, and resumes exactly."""

import logging

import pytest
import torch

from mixlab.errors import TrainingError
from mixlab.train import TrainConfig, Trainer
from mixlab.train import checkpoint as ckpt_io

torch.set_num_threads(1)


def _cfg(out):
    return TrainConfig(model="nano-100k", tokens=32 * 4 * 16, seq_len=32, batch_size=4, lr=3e-3, warmup=2,
                       eval_interval=4, checkpoint_interval=4, keep_checkpoints=3, eval_batches=1, progress=False,
                       out_dir=str(out))


@pytest.fixture(scope="module")
def reference(tiny_corpus, tmp_path_factory):
    return Trainer(_cfg(tmp_path_factory.mktemp("ref")), store=False, corpus=tiny_corpus).fit()


@pytest.mark.parametrize("damage", ["truncated-weights", "garbage-optimizer", "garbage-pointer"])
def test_damaged_latest_falls_back_and_resumes_identically(tiny_corpus, tmp_path, reference, damage, caplog):
    trainer = Trainer(_cfg(tmp_path), store=False, corpus=tiny_corpus)
    trainer.train_until(12)
    trainer.close()
    root = trainer.ckpt_root
    latest = root / "step-00000012"
    if damage == "truncated-weights":
        w = latest / "model.safetensors"
        w.write_bytes(w.read_bytes()[:100])
    elif damage == "garbage-optimizer":
        (latest / "optimizer.pt").write_bytes(b"\x80\x04garbage that is not a checkpoint")
    else:
        (root / "latest").write_text("../../../etc\n")
    with caplog.at_level(logging.WARNING):
        resumed = Trainer(_cfg(tmp_path), store=False, corpus=tiny_corpus)
    expect = 12 if damage == "garbage-pointer" else 8
    assert resumed.resumed_from == expect
    if damage != "garbage-pointer":
        assert "unusable" in caplog.text and "older checkpoint" in caplog.text
        assert (root / "latest").read_text().strip() == "step-00000008"
    result = resumed.fit()
    assert result.train_losses == reference.train_losses and result.curve == reference.curve


def test_garbage_optimizer_error_never_advises_unsafe_loading(tmp_path):
    bad = tmp_path / "optimizer.pt"
    bad.write_bytes(b"PK\x03\x04 not a torch file")
    with pytest.raises(TrainingError) as exc:
        ckpt_io.torch_load_safe(bad)
    assert "weights_only" not in str(exc.value) and "optimizer.pt" in str(exc.value)


def test_no_readable_checkpoint_is_one_error(tiny_corpus, tmp_path):
    trainer = Trainer(_cfg(tmp_path), store=False, corpus=tiny_corpus)
    trainer.train_until(4)
    trainer.close()
    w = trainer.ckpt_root / "step-00000004" / "model.safetensors"
    w.write_bytes(b"")
    with pytest.raises(TrainingError, match="no checkpoint of run .* can be read"):
        Trainer(_cfg(tmp_path), store=False, corpus=tiny_corpus)
