"""Sweep engine: 4 tiny proxy runs on a local process pool, kill-and-resume, and a 2-run Ray sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mixlab.errors import ConfigError
from mixlab.predictors.data import load_sweep
from mixlab.store import RunStore
from mixlab.sweep import ProxyTask, Sweep, SweepConfig, run_proxy_task

TRAIN = {"eval_batches": 1, "eval_interval": 4, "warmup": 1, "progress": False, "device": "cpu"}


def _config(corpus, ws, **kw):
    base = dict(corpus=str(corpus.root), workspace=str(ws), name="t", n=4, tokens=16 * 2 * 8, model="nano-100k",
                seq_len=16, batch_size=2, lr=3e-3, max_epochs=None, retries=0, workers=2, train=TRAIN)
    base.update(kw)
    return SweepConfig(**base)


def killing_task(task: ProxyTask) -> dict:
    """Runs the real proxy, except that run 2 is killed (SIGKILL-like exit) on its first attempt; every
    call is logged so the test can see which runs were (re)executed."""
    log_dir = Path(task.workspace) / "calls"
    log_dir.mkdir(exist_ok=True)
    n_prev = len(list(log_dir.glob(f"{task.index}-*")))
    (log_dir / f"{task.index}-{n_prev}").touch()
    if task.index == 2 and not (Path(task.workspace) / "allow").exists():
        os._exit(9)
    return run_proxy_task(task)


def _calls(ws: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in (ws / "calls").iterdir())


@pytest.mark.slow
def test_local_sweep_kill_and_resume(tiny_corpus, tmp_path):
    ws = tmp_path / "ws"
    sweep = Sweep(_config(tiny_corpus, ws))
    first = sweep.run(task_fn=killing_task, start_method="fork")
    assert first.finished == [0, 1, 3] and first.failed == [2]
    assert "killed" in first.state["runs"]["2"]["error"]
    assert _calls(ws) == [0, 1, 2, 3]
    # results are in the run store and in RegMix-shaped CSVs
    store = RunStore(ws)
    for i in (0, 1, 3):
        run = store.get_run(first.state["runs"][str(i)]["run_id"])
        assert run["status"] == "finished"
    mix, loss = load_sweep(first.directory / "mixtures.csv", first.directory / "losses.csv")
    assert mix.index == ["0", "1", "3"] and set(loss.columns) == set(tiny_corpus.domains)
    plan = json.loads((first.directory / "plan.json").read_text())["mixtures"]
    assert len(plan) == 4 and len({json.dumps(m, sort_keys=True) for m in plan}) == 4

    (ws / "allow").touch()
    second = Sweep(_config(tiny_corpus, ws)).run(task_fn=killing_task, start_method="fork")
    assert second.skipped == [0, 1, 3] and second.executed == [2]
    assert second.finished == [0, 1, 2, 3] and second.failed == []
    assert _calls(ws) == [0, 1, 2, 2, 3]  # only the killed run ran again
    # the same mixtures were used (the plan is kept), and changing the plan's settings is refused
    assert json.loads((first.directory / "plan.json").read_text())["mixtures"] == plan
    with pytest.raises(ConfigError, match="planned with different"):
        Sweep(_config(tiny_corpus, ws, n=5)).plan()


def die_once_task(task: ProxyTask) -> dict:
    """Run 1 is killed on its first attempt only."""
    log_dir = Path(task.workspace) / "calls"
    log_dir.mkdir(parents=True, exist_ok=True)
    n_prev = len(list(log_dir.glob(f"{task.index}-*")))
    (log_dir / f"{task.index}-{n_prev}").touch()
    if task.index == 1 and n_prev == 0:
        os._exit(9)
    return run_proxy_task(task)


def test_killed_run_is_retried(tiny_corpus, tmp_path):
    ws = tmp_path / "ws"
    res = Sweep(_config(tiny_corpus, ws, n=2, retries=1, workers=1)).run(task_fn=die_once_task, start_method="fork")
    assert res.finished == [0, 1] and res.state["runs"]["1"]["attempts"] == 2
    assert _calls(ws) == [0, 1, 1]


@pytest.mark.slow
def test_ray_two_run_sweep(tiny_corpus, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mixlab[ray]')")
    ws = tmp_path / "ws"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = Sweep(_config(tiny_corpus, ws, n=2, engine="ray", name="r")).run()
    finally:
        ray.shutdown()
    assert res.finished == [0, 1] and res.failed == []
    store = RunStore(ws)
    for i in (0, 1):
        assert store.get_run(res.state["runs"][str(i)]["run_id"])["status"] == "finished"


def test_sweep_targets_reach_every_proxy_and_its_losses(tiny_corpus, tmp_path):
    """A sweep's targets go into every proxy's training config, so each proxy reports target:<name>."""
    docs = tmp_path / "docs.txt"
    docs.write_text("Return the value of x plus one. " * 300, encoding="utf-8")
    sweep = Sweep(_config(tiny_corpus, tmp_path / "ws", n=1, workers=1, targets=[str(docs)]))
    (task,) = sweep.tasks(sweep.plan())
    assert task.train["targets"] == [str(docs)] and task.train["eval_batches"] == 1
    out = run_proxy_task(task)
    assert "target:docs" in out["final"]
