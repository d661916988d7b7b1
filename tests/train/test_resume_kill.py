"""Kill a training process with SIGKILL mid-run, resume it, and compare with an uninterrupted run."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from mixlab.train import TrainConfig, Trainer
from mixlab.train import checkpoint as ckpt_io

torch.set_num_threads(1)

CHILD = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from mixlab.data.corpus import Corpus
from mixlab.train import TrainConfig, Trainer
from mixlab.train import checkpoint as ckpt_io

corpus_path, out_dir, kill_step, mode, cfg_json = sys.argv[1:6]
kill_step = int(kill_step)
cfg = TrainConfig.model_validate_json(cfg_json).model_copy(update={"out_dir": out_dir})
trainer = Trainer(cfg, store=False, corpus=Corpus.open(corpus_path))
if mode == "mid-step":
    original = trainer.sampler.next_batch
    def next_batch():
        if trainer.sampler.step == kill_step and trainer.sampler._micro == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return original()
    trainer.sampler.next_batch = next_batch
else:  # die while a checkpoint is being written, after its files but before `latest` moves
    publish = ckpt_io.publish
    def dying_publish(root, ckpt, keep):
        if trainer.step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)
        publish(root, ckpt, keep)
    ckpt_io.publish = dying_publish
trainer.fit()
"""


def _cfg():
    return TrainConfig(model="nano-100k", tokens=32 * 4 * 2 * 24, seq_len=32, batch_size=4, grad_accum=2,
                       lr=3e-3, warmup=3, eval_interval=5, checkpoint_interval=4, eval_batches=1, progress=False)


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.parametrize("mode,kill_step,expect_latest", [("mid-step", 14, 12), ("in-save", 16, 12)])
def test_sigkill_and_resume_reproduces_uninterrupted_curve(tiny_corpus, tmp_path, mode, kill_step, expect_latest,
                                                           ledger):
    cfg = _cfg()
    reference = Trainer(cfg.model_copy(update={"out_dir": str(tmp_path / "ref")}), store=False,
                        corpus=tiny_corpus).fit()
    assert reference.steps == 24

    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_corpus.root), str(run_dir), str(kill_step), mode,
         cfg.model_dump_json()],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    latest = ckpt_io.latest_checkpoint(run_dir / "checkpoints")
    assert latest is not None and latest.name == f"step-{expect_latest:08d}"

    resumed = Trainer(cfg.model_copy(update={"out_dir": str(run_dir)}), store=False, corpus=tiny_corpus)
    assert resumed.resumed_from == expect_latest
    result = resumed.fit()
    ledger.kill("train", result.train_losses == reference.train_losses and result.curve == reference.curve)
    assert result.train_losses == reference.train_losses  # exact, step by step
    assert result.curve == reference.curve
    assert result.tokens == reference.tokens
    ref_w = reference.run_dir / "checkpoints" / "step-00000024" / "model.safetensors"
    run_w = run_dir / "checkpoints" / "step-00000024" / "model.safetensors"
    assert ref_w.read_bytes() == run_w.read_bytes()
