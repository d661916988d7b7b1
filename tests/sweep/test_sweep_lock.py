"""A sweep's folder has one owner: a second sweep of the same name stops with an error naming the first."""

import subprocess
import sys

import pytest

from mixlab.sweep import Sweep, SweepConfig
from mixlab.utils.lock import LockedError

HOLD = "import sys, time; from mixlab.utils.lock import DirLock; DirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"


def test_second_sweep_of_the_same_name_is_refused(tiny_corpus, tmp_path):
    cfg = SweepConfig(corpus=str(tiny_corpus.root), workspace=str(tmp_path), name="s", n=2, tokens=256,
                      model="nano-100k", seq_len=16, batch_size=2)
    sweep = Sweep(cfg)
    sweep.plan()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(sweep.directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"this sweep is in use by process {holder.pid} on "):
            sweep.run(task_fn=_never)
    finally:
        holder.kill()
        holder.wait()
    assert not (sweep.directory / "state.json").exists()


def _never(task):  # pragma: no cover - the lock stops the sweep before any task runs
    raise AssertionError("a task ran although the sweep was locked")
