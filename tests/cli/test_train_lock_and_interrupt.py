"""A run directory has one owner: a second `mixlab train` of the same run stops with an error naming the
holder; SIGTERM stops the holder cleanly and the store records the run as interrupted; it then resumes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from mixlab.cli.main import main
from mixlab.store import RunStore


@pytest.mark.slow
def test_second_trainer_is_refused_and_sigterm_marks_interrupted(tiny_corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIXLAB_DEBUG", raising=False)
    args = ["train", "--corpus", str(tiny_corpus.root), "--model", "nano-100k", "--tokens", str(32 * 4 * 400),
            "--seq-len", "32", "--batch-size", "4", "--eval-interval", "10", "--workspace", "ws",
            "--run-name", "locked", "--no-progress"]
    log = tmp_path / "holder.log"
    with open(log, "w") as fh:
        holder = subprocess.Popen([sys.executable, "-m", "mixlab.cli.main", *args], stdout=fh, stderr=fh,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        latest = tmp_path / "ws" / "runs" / "locked" / "checkpoints" / "latest"
        deadline = time.time() + 120
        while not latest.exists() and time.time() < deadline and holder.poll() is None:
            time.sleep(0.05)
        assert holder.poll() is None, log.read_text()[-2000:]
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = " ".join(capsys.readouterr().err.split())
        assert exc.value.code == 2 and f"in use by process {holder.pid} on " in err and "Traceback" not in err
        assert RunStore(tmp_path / "ws").get_run("locked")["status"] == "running"
        holder.send_signal(signal.SIGTERM)
        holder.wait(60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode != 0 and "Traceback" not in log.read_text()
    run = RunStore(tmp_path / "ws").get_run("locked")
    assert run["status"] == "interrupted" and "signal" in run["error"]
    # the lock went with the holder: the run resumes and finishes
    with pytest.raises(SystemExit) as exc:
        main([*args, "--json"])
    assert exc.value.code in (0, None)
    assert RunStore(tmp_path / "ws").get_run("locked")["status"] == "finished"
