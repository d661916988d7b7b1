"""Kill points of `mixlab sweep` and `mixlab bench`: SIGKILL the command, check that no worker outlives
it, re-run it, and compare with an uninterrupted run. (The kill points of `mixlab train` and `mixlab run`
are tests/train/test_resume_kill.py and tests/pipeline/test_dynamic_pipeline.py, also in this suite.)"""

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

from mixlab.sweep import Sweep, SweepConfig

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

TRAIN = {"eval_batches": 1, "eval_interval": 16, "checkpoint_interval": 16, "warmup": 1, "progress": False,
         "device": "cpu"}
TOKENS = 16 * 4 * 320  # 320 steps: seconds of training left when the sweep is killed


def _children(pid: int) -> set[int]:
    """Descendants of ``pid`` (from /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _sweep_config(corpus_root: Path, ws: Path) -> SweepConfig:
    return SweepConfig(corpus=str(corpus_root), workspace=str(ws), name="k", n=2, tokens=TOKENS,
                       model="nano-100k", seq_len=16, batch_size=4, workers=2, retries=0, train=TRAIN)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_killed_sweep_leaves_no_orphan_and_resumes_identically(tiny_corpus, tmp_path, ledger):
    ref = Sweep(_sweep_config(tiny_corpus.root, tmp_path / "ref")).run()
    assert ref.finished == [0, 1]

    ws = tmp_path / "ws"
    cfg = _sweep_config(tiny_corpus.root, ws)
    script = textwrap.dedent(
        """
        import sys
        from mixlab.sweep import Sweep, SweepConfig
        Sweep(SweepConfig.model_validate_json(sys.argv[1])).run()
        """
    )
    log = tmp_path / "sweep.log"  # a file, not a pipe: reading a pipe would wait for the workers holding it
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", script, cfg.model_dump_json()],
                                stdout=subprocess.DEVNULL, stderr=fh)
    deadline = time.time() + 240
    workers: set[int] = set()
    # kill the sweep once both workers train (each holds its run directory and has written a checkpoint)
    while time.time() < deadline and proc.poll() is None:
        started = list(ws.glob("runs/k-*/checkpoints/latest"))
        workers = _children(proc.pid)
        if len(started) == 2 and len(workers) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, log.read_text()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    unfinished = not list(ws.glob("runs/k-*/result.json"))
    time.sleep(2.5)  # the workers notice within a second; unwatched ones would still be training
    orphans = [p for p in workers if _alive(p)]
    for p in orphans:  # do not leave them behind even when the test fails
        os.kill(p, signal.SIGKILL)
    ledger.orphans(len(orphans))
    assert unfinished, "a proxy run finished before the sweep was killed; make the runs longer"
    assert not orphans, f"workers {orphans} outlived the killed sweep"
    stderr_tail = log.read_text()
    assert "BrokenPipeError" not in stderr_tail and "Traceback" not in stderr_tail, stderr_tail[-2000:]

    again = Sweep(cfg).run()
    same = (again.finished == [0, 1]
            and (again.directory / "losses.csv").read_text() == (ref.directory / "losses.csv").read_text())
    ledger.kill("sweep", same)
    assert same, ((again.directory / "losses.csv").read_text(), (ref.directory / "losses.csv").read_text())


BENCH_CHILD = """
import os, signal, sys
from mixlab.train import checkpoint as ckpt_io
from mixlab.cli.main import main

publish, seen = ckpt_io.publish, []
def dying_publish(root, ckpt, keep):
    publish(root, ckpt, keep)
    seen.append(ckpt)
    if len(seen) == int(os.environ["KILL_AT"]):  # SIGKILL after this many checkpoints of target runs
        os.kill(os.getpid(), signal.SIGKILL)
ckpt_io.publish = dying_publish
main(sys.argv[1:])
"""


@pytest.mark.parametrize("kill_at", [3])
def test_killed_bench_resumes_identically(tiny_corpus, tmp_path, kill_at, ledger):
    def bench(ws: Path, kill: int | None) -> subprocess.CompletedProcess:
        args = ["bench", "--scale", "tiny", "--methods", "uniform", "--seeds", "1", "--corpus", str(tiny_corpus.root),
                "--workspace", str(ws), "--out", str(ws.parent / f"{ws.name}.json"), "--device", "cpu"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_AT": str(kill or 10**9)}
        return subprocess.run([sys.executable, "-c", BENCH_CHILD, *args], capture_output=True, text=True,
                              timeout=600, env=env)

    ref = bench(tmp_path / "ref", None)
    assert ref.returncode == 0, ref.stderr[-2000:]
    killed = bench(tmp_path / "ws", kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    again = bench(tmp_path / "ws", None)
    assert again.returncode == 0, again.stderr[-2000:]
    keys = ("method", "avg_loss", "worst_loss", "per_domain", "mixture", "choose_flops", "choose_tokens")
    rows = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ref", "ws")]
    same = [{k: r.get(k) for k in keys} for r in rows[0]] == [{k: r.get(k) for k in keys} for r in rows[1]]
    ledger.kill("bench", same)
    assert same, rows


def test_ray_workers_stop_when_the_sweep_is_killed(tiny_corpus, tmp_path, ledger):
    """Ray's own job clean-up already stops a dead driver's tasks (this passes without mixlab's parent
    watch too); the watch covers drivers whose Ray cluster outlives them on the same host."""
    pytest.importorskip("ray")
    ws = tmp_path / "ws"
    cfg = _sweep_config(tiny_corpus.root, ws).model_copy(update={"engine": "ray", "tokens": TOKENS * 4})
    script = "import sys\nfrom mixlab.sweep import Sweep, SweepConfig\nSweep(SweepConfig.model_validate_json(sys.argv[1])).run()\n"
    with open(tmp_path / "sweep.log", "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", script, cfg.model_dump_json()], stdout=fh, stderr=fh,
                                start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(list(ws.glob("runs/k-*/checkpoints/latest"))) < 2:
            time.sleep(0.1)
        assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-2000:]
        # the workers are the processes holding the run directories' locks
        workers = [json.loads(p.read_text())["pid"] for p in ws.glob("runs/k-*/.lock")]
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(3)
        orphans = [p for p in workers if _alive(p)]
        ledger.orphans(len(orphans))
        assert not orphans, f"Ray workers {orphans} outlived the killed sweep"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever Ray left in the session
        except ProcessLookupError:
            pass
