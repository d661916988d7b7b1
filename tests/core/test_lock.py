"""One owner per run directory: a second process gets an error naming the holder; dead holders free it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mixlab.utils.lock import DirLock, LockedError, is_locked, read_holder

HOLD = "import sys, time; from mixlab.utils.lock import DirLock; DirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert is_locked(tmp_path)
        with pytest.raises(LockedError, match=rf"in use by process {proc.pid} on "):
            DirLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    # the kernel freed the lock of the killed holder: the next process takes it with no clean-up
    with DirLock(tmp_path):
        assert read_holder(tmp_path)["pid"] == os.getpid()
    assert not is_locked(tmp_path)


def test_reentrant_in_one_process(tmp_path):
    a = DirLock(tmp_path).acquire()
    b = DirLock(tmp_path).acquire()
    a.release()
    assert is_locked(tmp_path)
    b.release()
    assert not is_locked(tmp_path)


def test_lock_inherited_by_an_orphan_of_a_dead_pid_is_taken_over(tmp_path):
    # the holder forks a child (which inherits the lock) and dies; the file names the dead pid
    code = (
        "import os, sys, time\n"
        "from mixlab.utils.lock import DirLock\n"
        "DirLock(sys.argv[1]).acquire()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    os.dup2(os.open(os.devnull, os.O_WRONLY), 1); os.dup2(1, 2); time.sleep(20); os._exit(0)\n"
        "print(os.getpid(), child, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    dead, orphan = map(int, out.stdout.split())
    try:
        time.sleep(0.1)
        assert is_locked(tmp_path) and read_holder(tmp_path)["pid"] == dead
        with DirLock(tmp_path):
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    finally:
        os.kill(orphan, signal.SIGKILL)
