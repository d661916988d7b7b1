"""A 2-process torchrun (gloo, CPU) run trains and matches the single-process run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixlab.store import RunStore
from mixlab.train import TrainConfig, Trainer

torch.set_num_threads(1)

SCRIPT = """
import json, os, sys
import torch
torch.set_num_threads(1)
from mixlab.data.corpus import Corpus
from mixlab.train import TrainConfig, Trainer

corpus_path, cfg_json, out = sys.argv[1:4]
cfg = TrainConfig.model_validate_json(cfg_json)
trainer = Trainer(cfg, corpus=Corpus.open(corpus_path))
assert trainer.dist.world_size == 2 and trainer.sampler.world_size == 2
first_batch = trainer.sampler.next_batch  # record which sequences this rank reads
seen = []
def spy():
    b = first_batch()
    seen.append(b.input_ids[:, :4].tolist())
    return b
trainer.sampler.next_batch = spy
result = trainer.fit()
with open(f"{out}.rank{trainer.dist.rank}.json", "w") as fh:
    json.dump({"train_losses": result.train_losses, "curve": result.curve, "tokens": result.tokens,
               "steps": result.steps, "seen": seen}, fh)
"""


def _cfg(tmp_path, **kw):
    base = dict(model="nano-100k", tokens=32 * 8 * 12, seq_len=32, batch_size=4, lr=3e-3, warmup=2,
                eval_interval=4, eval_batches=1, progress=False, device="cpu", workspace=str(tmp_path / "ws"))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
@pytest.mark.slow
def test_torchrun_two_processes_match_single_process(tiny_corpus, tmp_path):
    # single process: 2 micro-batches of 4 per step = the same global stream as 2 ranks x 4
    single = Trainer(_cfg(tmp_path, grad_accum=2, run_name="single"), corpus=tiny_corpus).fit()
    assert single.steps == 12

    script = tmp_path / "ddp_child.py"
    script.write_text(SCRIPT)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    out = tmp_path / "ddp"
    cfg = _cfg(tmp_path, grad_accum=1, run_name="ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(tiny_corpus.root),
         cfg.model_dump_json(), str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = json.loads(Path(f"{out}.rank0.json").read_text())
    r1 = json.loads(Path(f"{out}.rank1.json").read_text())
    assert r0["steps"] == r1["steps"] == 12 and r0["tokens"] == single.tokens
    # the two ranks read different shares of the stream
    assert r0["seen"] != r1["seen"] and len(r0["seen"]) == 12
    ddp_losses = {int(k): v for k, v in r0["train_losses"].items()}
    assert ddp_losses == {int(k): v for k, v in r1["train_losses"].items()}  # all-reduced
    for step, loss in single.train_losses.items():
        assert ddp_losses[step] == pytest.approx(loss, rel=1e-4, abs=1e-4), step
    for step, losses in single.curve.items():
        for d, v in losses.items():
            assert r0["curve"][str(step)][d] == pytest.approx(v, rel=1e-4, abs=1e-4)
    # only rank 0 wrote the store: one run row, one set of metrics
    store = RunStore(tmp_path / "ws")
    run = store.get_run("ddp")
    assert run["status"] == "finished"
    assert len(store.metrics("ddp", "train")) == 12
    ckpt = tmp_path / "ws" / "runs" / "ddp" / "checkpoints" / "step-00000012"
    assert (ckpt / "sampler-0.json").is_file() and (ckpt / "sampler-1.json").is_file()
