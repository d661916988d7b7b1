"""The HF Trainer under torchrun (gloo, 2 processes) with DataLoader workers, killed and resumed.

Each rank records the first tokens of every training sequence its model sees. The uninterrupted run
must read, on rank r, exactly rows ``[r*B, (r+1)*B)`` of each global micro-batch of a single-process
sampler (the ranks partition the stream; the two DataLoader workers of a rank do not repeat or skip
micro-batches). A run killed after its step-3 checkpoint and resumed from it, by the Trainer's own
replay-and-skip and by ``ignore_data_skip=True``, must see the same sequences at steps 4-6.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")
pytest.importorskip("accelerate")

SEQ, BATCH, STEPS, WORKERS = 16, 2, 6, 2
MIX = {"english": 0.4, "code": 0.3, "arithmetic": 0.2, "noise": 0.1}

SCRIPT = """
import json, os, sys
import torch
torch.set_num_threads(1)
import transformers
from mixlab.integrations.hf import MixtureScheduleCallback, MixtureStream

corpus, out, steps, workers, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
stream = MixtureStream(corpus, json.loads(sys.argv[6]), seq_len=SEQ, batch_size=BATCH, seed=3)
torch.manual_seed(0)
cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=SEQ, vocab_size=stream.corpus.vocab_size,
                              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = transformers.GPT2LMHeadModel(cfg)
seen = []
def spy(module, a, kw):  # a hook, so that the Trainer still sees forward's signature
    if module.training:
        seen.append(kw["input_ids"][:, :6].tolist())
model.register_forward_pre_hook(spy, with_kwargs=True)

class Kill(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if mode == "kill" and state.global_step == 5:
            os._exit(17)  # a crash: no cleanup, no checkpoint at step 5

args = transformers.TrainingArguments(
    output_dir=out + "/hf", max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=1e-3,
    save_strategy="steps", save_steps=3, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
    dataloader_num_workers=workers, ddp_backend="gloo", accelerator_config={"dispatch_batches": False},
    ignore_data_skip=(mode == "resume-direct"), logging_steps=1000,
)
trainer = transformers.Trainer(model=model, args=args, train_dataset=stream.to_hf_dataset(num_workers=workers),
                               callbacks=[MixtureScheduleCallback(stream), Kill()])
trainer.train(resume_from_checkpoint=(out + "/hf/checkpoint-3") if mode.startswith("resume") else None)
with open(f"{out}/seen.rank{stream.rank}.json", "w") as fh:
    json.dump(seen, fh)
# Leave the gloo group before the interpreter exits: a group torn down by interpreter shutdown can
# abort a rank ("terminate called without an active exception") after the run has finished.
del trainer
if torch.distributed.is_initialized():
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
""".replace("SEQ", str(SEQ)).replace("BATCH", str(BATCH))


def _torchrun(tmp_path: Path, corpus: Path, out: Path, mode: str, *, source: Path | None = None) -> int:
    script = tmp_path / "hf_ddp_child.py"
    script.write_text(SCRIPT)
    if source is not None:  # resume from the killed run's output directory
        shutil.copytree(source, out)
    out.mkdir(exist_ok=True)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(script), str(corpus), str(out), str(STEPS)]
    cmd += [str(WORKERS), mode, json.dumps(MIX)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if mode != "kill":
        assert res.returncode == 0, res.stderr[-4000:]
    return res.returncode


def _seen(out: Path) -> list[list[list[list[int]]]]:
    return [json.loads((out / f"seen.rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun not installed",
)
def test_trainer_under_torchrun_with_workers_kill_and_resume(tiny_corpus, tmp_path) -> None:
    from mixlab import Mixture
    from mixlab.data import MixtureSampler

    corpus = Path(tiny_corpus.root)
    full = tmp_path / "full"
    _torchrun(tmp_path, corpus, full, "full")
    ranks = _seen(full)
    assert [len(r) for r in ranks] == [STEPS, STEPS]
    # the reference: one process reading the global stream, 2*B sequences per step
    ref = MixtureSampler(tiny_corpus, Mixture(MIX), seq_len=SEQ, batch_size=2 * BATCH, seed=3)
    for step in range(STEPS):
        rows = ref.next_batch().input_ids[:, :6].tolist()
        for r in range(2):
            assert ranks[r][step] == rows[r * BATCH : (r + 1) * BATCH], (step, r)
    assert ranks[0] != ranks[1]

    killed = tmp_path / "killed"
    assert _torchrun(tmp_path, corpus, killed, "kill") != 0
    saved = sorted(p.name for p in (killed / "hf" / "checkpoint-3").glob("mixlab_stream.rank*.json"))
    assert saved == ["mixlab_stream.rank0.json", "mixlab_stream.rank1.json"]
    state = json.loads((killed / "hf" / "checkpoint-3" / "mixlab_stream.rank1.json").read_text())
    assert state["sampler"]["step"] == 3 and state["sampler"]["rank"] == 1
    for mode in ("resume-skip", "resume-direct"):
        out = tmp_path / mode
        _torchrun(tmp_path, corpus, out, mode, source=killed)
        resumed = _seen(out)
        for r in range(2):
            # the resumed model sees exactly what the uninterrupted one saw at steps 4-6
            assert resumed[r][-3:] == ranks[r][3:], (mode, r)
            assert np.asarray(resumed[r][-3:]).shape == (3, BATCH, 6)
