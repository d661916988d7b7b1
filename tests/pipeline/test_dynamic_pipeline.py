"""The dynamic pipeline: stages switch the sampler's proportions, records are written, and a killed
pipeline resumes to the same schedule and losses as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mixlab import ConfigError
from mixlab.pipeline.dynamic import PipelineConfig, run_pipeline
from mixlab.store import RunArtifacts


def _train(tiny_corpus, ws: Path, **extra) -> dict:
    return {
        "corpus": str(tiny_corpus.root), "model": "nano-100k", "tokens": 48 * 8 * 64, "seq_len": 64,
        "batch_size": 8, "lr": 3e-3, "eval_batches": 2, "seed": 0, "workspace": str(ws),
        "progress": False, "max_epochs": 100.0, "on_exceed": "warn",
    } | extra


def test_stages_switch_proportions_and_are_recorded(tiny_corpus, tmp_path):
    cfg = PipelineConfig(train=_train(tiny_corpus, tmp_path), mixer="uniform", stages=2, initial={
        "english": 0.7, "code": 0.1, "arithmetic": 0.1, "noise": 0.1})
    res = run_pipeline(cfg, corpus=tiny_corpus)
    assert [s.start_step for s in res.schedule.stages] == [0, 24]
    counts = res.stage_domain_counts()
    assert len(counts) == 2
    stage0_share = counts[0]["english"] / sum(counts[0].values())
    stage1_share = counts[1]["english"] / sum(counts[1].values())
    assert stage0_share == pytest.approx(0.7, abs=0.03)
    assert stage1_share == pytest.approx(0.25, abs=0.03)
    rec = json.loads((res.run_dir / "stages" / "stage_1" / "record.json").read_text())
    assert rec["mixture"] == pytest.approx({d: 0.25 for d in tiny_corpus.domains})
    assert json.loads((res.run_dir / "schedule.json").read_text())["schedule"][1]["start_step"] == 24
    curve = RunArtifacts(res.run_dir).curve()  # the run's one curve, in its run directory
    assert curve.val == res.curve and curve.tokens_per_step * max(curve.val) == res.tokens


def test_boundaries_as_fractions_and_steps():
    cfg = PipelineConfig(train={}, boundaries=[0.25, 0.5])
    assert cfg.boundary_steps(100) == [25, 50]
    assert PipelineConfig(train={}, boundaries=[10, 30]).boundary_steps(100) == [10, 30]
    assert PipelineConfig(train={}, stages=4).boundary_steps(100) == [25, 50, 75]
    assert PipelineConfig(train={}).boundary_steps(100) == [50]  # the TiKMiX paper's plan
    assert PipelineConfig(train={}, stages=3, first_boundary=0.2).boundary_steps(100) == [20, 60]
    assert PipelineConfig(train={}, first_boundary=0.25).boundary_steps(100) == [25]
    with pytest.raises(ConfigError, match="not both"):
        PipelineConfig.parse({"train": {}, "boundaries": [0.5], "first_boundary": 0.2})
    with pytest.raises(ConfigError, match="boundaries"):
        PipelineConfig.parse({"train": {}, "boundaries": [0.5, 0.2]})
    with pytest.raises(ConfigError, match="unknown field"):
        PipelineConfig.parse({"train": {}, "stagez": 2})


def test_a_decision_inside_the_warmup_is_warned_about(tiny_corpus, tmp_path, caplog):
    """Boundaries before the learning-rate warm-up ends are named in a warning; later ones are not."""
    cfg = PipelineConfig(train=_train(tiny_corpus, tmp_path, warmup=20), mixer="uniform", boundaries=[10, 30])
    with caplog.at_level("WARNING", logger="mixlab.pipeline.stages"):
        run_pipeline(cfg, corpus=tiny_corpus)
    warned = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert len(warned) == 1 and "steps [10]" in warned[0] and "(20 of 48 steps)" in warned[0]
    caplog.clear()
    late = PipelineConfig(train=_train(tiny_corpus, tmp_path / "late", warmup=5), mixer="uniform", boundaries=[10, 30])
    with caplog.at_level("WARNING", logger="mixlab.pipeline.stages"):
        run_pipeline(late, corpus=tiny_corpus)
    assert not [r for r in caplog.records if "warm-up" in r.getMessage()]


def test_unknown_mixer_is_a_clear_error(tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="unknown mixing method"):
        run_pipeline({"train": _train(tiny_corpus, tmp_path), "mixer": "no-such-method"}, corpus=tiny_corpus)


_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    from mixlab.data import Corpus
    from mixlab.pipeline.dynamic import run_pipeline
    cfg = json.loads(sys.argv[1])
    res = run_pipeline(cfg, corpus=Corpus.open(sys.argv[2]))
    print(json.dumps({"schedule": res.schedule.to_json(), "final": res.final}))
    """
)


def _run(cfg: dict, corpus_root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(cfg), str(corpus_root)],
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.reliability
def test_kill_and_resume_reproduces_schedule(tiny_corpus, tmp_path, ledger):
    mixer_params = {"tokens_per_domain": 2048, "batch_size": 4, "pareto": False}
    base = {"mixer": "tikmix-d", "mixer_params": mixer_params, "stages": 3, "initial": "uniform"}
    train = _train(tiny_corpus, tmp_path / "a", checkpoint_interval=4)
    full = _run(base | {"train": train}, tiny_corpus.root)

    ws = tmp_path / "b"
    cfg = base | {"train": _train(tiny_corpus, ws, checkpoint_interval=4)}
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, json.dumps(cfg), str(tiny_corpus.root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # Kill it once stage 1 has been decided but before the run ends.
    while time.time() < deadline:
        if list(ws.glob("runs/*/stages/stage_1/record.json")) or proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _run(cfg, tiny_corpus.root)
    ledger.kill("run", resumed == full)
    assert resumed["schedule"] == full["schedule"]
    assert resumed["final"] == full["final"]
    assert len(full["schedule"]) == 3


def test_tikmix_d_optimises_an_evaluation_only_target(tiny_corpus, tmp_path):
    """With a target set the run evaluates the target, and TiKMiX-D's influence columns are its keys."""
    docs = tmp_path / "docs.txt"
    docs.write_text("\n\n".join(f"The value of item {i} is {i * 7} and it is returned." for i in range(300)))
    cfg = PipelineConfig(train=_train(tiny_corpus, tmp_path, tokens=32 * 8 * 8), mixer="tikmix-d", stages=2,
                         mixer_params={"tokens_per_domain": 512}, targets=[str(docs), "domain:code=0.5"])
    res = run_pipeline(cfg, corpus=tiny_corpus)
    assert "target:docs" in res.final and "code" in res.final
    rec = json.loads((res.run_dir / "stages" / "stage_1" / "record.json").read_text())
    assert rec["influence"]["target_domains"] == ["target:docs", "code"]
    with pytest.raises(ConfigError, match="not both"):
        PipelineConfig.parse({"train": {}, "targets": ["a.txt"], "target_domains": ["code"]})


def test_tikmix_stage_record_holds_solver_status_and_stability(tiny_corpus, tmp_path):
    cfg = PipelineConfig(
        train=_train(tiny_corpus, tmp_path), mixer="tikmix-d", first_boundary=0.25,
        mixer_params={"tokens_per_domain": 4 * 8 * 64, "pareto": False},
    )  # fmt: skip
    res = run_pipeline(cfg, corpus=tiny_corpus)
    assert [s.start_step for s in res.schedule.stages] == [0, 12]
    rec = json.loads((res.run_dir / "stages" / "stage_1" / "record.json").read_text())
    assert rec["solver"]["solver"] == "slsqp" and rec["solver"]["status"] == 0 and rec["solver"]["success"]
    assert "message" in rec["solver"] and rec["solver"]["fallback"] is None
    assert -1 <= rec["influence"]["stability"] <= 1 and len(rec["influence"]["half_matrices"]) == 2
    assert len(rec["measurements"]) == 1 and rec["measurements"][0]["tokens"] == rec["influence"]["tokens"]
    assert res.stages[1].solver == rec["solver"]


def test_mirror_plan_counts_every_measurement_as_choosing_compute(tiny_corpus, tmp_path):
    """The mirror variant's plan (uniform for the first quarter, decisions at 1/4, 1/2, 3/4, a fixed budget)
    measures exactly once per decision, whatever min_stability says, and the run's choosing compute is
    the sum of every measurement's FLOPs and tokens."""
    per = 2 * 8 * 64
    cfg = PipelineConfig(
        train=_train(tiny_corpus, tmp_path), mixer="tikmix-d", stages=4, initial="uniform",
        mixer_params={"objective": "mirror", "budget": "fixed", "tokens_per_domain": per, "min_stability": 1.0},
    )  # fmt: skip
    res = run_pipeline(cfg, corpus=tiny_corpus)
    assert [s.start_step for s in res.schedule.stages] == [0, 12, 24, 36]
    decisions = res.stages[1:]
    assert [len(r.measurements) for r in decisions] == [1, 1, 1]
    measured = [m for r in decisions for m in r.measurements]
    assert res.compute.flops == pytest.approx(sum(m["flops"] for m in measured)) and res.compute.flops > 0
    assert res.compute.tokens == sum(m["tokens"] for m in measured)
    assert all(r.solver["rounds"] == 3 for r in decisions)
    # the later steps are bounded by the largest range measured earlier in the run
    assert decisions[2].solver["range_bound"] == pytest.approx(max(r.solver["range"] for r in decisions[:3]))
    saved = json.loads((res.run_dir / "choose_compute.json").read_text())
    assert saved["flops"] == pytest.approx(res.compute.flops)
