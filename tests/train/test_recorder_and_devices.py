"""The pieces split out of the training loop: recording a run, and choosing processes and devices."""

import pytest
import torch

from mixlab.errors import ConfigError
from mixlab.mixture import Mixture, Schedule
from mixlab.store import RunArtifacts, RunCurve, RunStore
from mixlab.train import TrainConfig
from mixlab.train.distributed import DistInfo, resolve_device, resolve_dtype, setup_distributed
from mixlab.train.recorder import RunRecorder, run_dir_of

SCHED = Schedule.constant(Mixture({"a": 0.5, "b": 0.5}))


def test_run_dir_is_out_dir_or_under_the_workspace(tmp_path):
    assert run_dir_of(TrainConfig(workspace=str(tmp_path)), "r1") == tmp_path / "runs" / "r1"
    assert run_dir_of(TrainConfig(workspace=str(tmp_path), out_dir=str(tmp_path / "x")), "r1") == tmp_path / "x"


def test_recorder_writes_the_run_dir_and_the_store_row(tmp_path):
    cfg = TrainConfig(workspace=str(tmp_path / "ws"), mixture=SCHED.to_json(), run_name="r1")
    rec = RunRecorder(run_dir_of(cfg, "r1"), "r1", None, config=cfg, main=True)
    rec.lock()
    rec.started(cfg, {"gpt": {}}, SCHED, "hash")
    rec.running()
    curve = RunCurve({2: {"a": 1.0}}, {1: 3.0, 2: 2.0}, 64)
    rec.finished({"run_id": "r1", "steps": 2, "tokens": 128, "flops": 1.0, "seconds": 0.5, "final": curve.final},
                 curve)
    rec.release()
    run = RunArtifacts(tmp_path / "ws" / "runs" / "r1")
    assert run.schedule() == SCHED and run.curve() == curve and run.config()["run_name"] == "r1"
    row = RunStore(tmp_path / "ws").get_run("r1")
    assert row["status"] == "finished" and row["final_json"] == {"a": 1.0} and row["run_dir"] == str(run.root.resolve())
    assert RunStore(tmp_path / "ws").curve("r1") == curve.val  # read from the run directory


def test_other_ranks_and_store_false_record_nothing(tmp_path):
    cfg = TrainConfig(workspace=str(tmp_path / "ws"))
    other = RunRecorder(tmp_path / "run", "r", None, config=cfg, main=False)
    other.lock()
    other.started(cfg, {}, SCHED, "h")
    other.curve(RunCurve({1: {"a": 1.0}}))
    assert not (tmp_path / "run").exists() and not (tmp_path / "ws").exists()
    quiet = RunRecorder(tmp_path / "run", "r", False, config=cfg, main=True)
    quiet.started(cfg, {}, SCHED, "h")
    quiet.stopped(KeyboardInterrupt())
    assert RunArtifacts(tmp_path / "run").schedule() == SCHED and not (tmp_path / "ws").exists()


def test_single_process_devices_and_dtypes(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup_distributed("cpu")
    assert info == DistInfo() and info.is_main and not info.distributed
    info.barrier()
    value = torch.tensor(2.5)
    assert info.mean(value) is value and float(value) == 2.5
    assert resolve_device("cpu", info) == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("tpu-ish", info)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            resolve_device("cuda", info)
