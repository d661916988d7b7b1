"""Literal id prefixes, read-only opens that create nothing, and ``interrupted`` for runs no process holds."""

import os
import subprocess
import sys

import pytest

from mixlab.errors import DataError, MixlabError
from mixlab.store import RunStore
from mixlab.utils.lock import DirLock


def test_prefix_is_literal_not_a_like_pattern(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run("train", None, {"a": 1.0}, None, 10, run_id="train-abc")
    store.create_run("train", None, {"a": 1.0}, None, 10, run_id="train-abd")
    for pattern in ("%", "_", "train-%", "t%", "train-ab_"):
        with pytest.raises(MixlabError, match="no run"):
            store.get_run(pattern)
    with pytest.raises(MixlabError, match="start of 2 run ids"):
        store.get_run("train-ab")
    assert store.get_run("train-abc")["id"] == rid


def test_readonly_open_creates_nothing(tmp_path):
    typo = tmp_path / "typo" / "ws"
    with pytest.raises(DataError, match="no run store here"):
        RunStore.existing(typo)
    assert not (tmp_path / "typo").exists()
    RunStore(tmp_path / "ws").create_run("train", None, {"a": 1.0}, None, 10, run_id="r1")
    assert [r["id"] for r in RunStore.existing(tmp_path / "ws").list_runs()] == ["r1"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_readonly_workspace_lists_and_refuses_writes_clearly(tmp_path):
    ws = tmp_path / "ws"
    RunStore(ws).create_run("train", None, {"a": 1.0}, None, 10, run_id="r1")
    for p in (ws / "mixlab.db", ws):
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert [r["id"] for r in RunStore.existing(ws).list_runs()] == ["r1"]
        with pytest.raises(DataError, match="read-only|readonly|cannot open"):
            RunStore(ws).create_run("train", None, {}, None, 1)
    finally:
        ws.chmod(0o755)
        (ws / "mixlab.db").chmod(0o644)


def test_running_run_without_a_live_holder_shows_interrupted(tmp_path):
    store = RunStore(tmp_path / "ws")
    run_dir = tmp_path / "ws" / "runs" / "r1"
    store.create_run("train", None, {"a": 1.0}, None, 10, run_id="r1", run_dir=run_dir)
    store.update_status("r1", "running")
    assert store.get_run("r1")["status"] == "interrupted"  # no process holds its directory
    with DirLock(run_dir):
        assert store.get_run("r1")["status"] == "running"
        assert [r["id"] for r in store.list_runs(status="running")] == ["r1"]
    # a process that held it and was SIGKILLed leaves the row `running`; it reads back interrupted
    code = f"from mixlab.utils.lock import DirLock; import os; DirLock({str(run_dir)!r}).acquire(); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code], check=False)
    assert [r["id"] for r in store.list_runs(status="interrupted")] == ["r1"]
    store.update_status("r1", "interrupted", error="stopped by signal 15")
    assert store.get_run("r1")["status"] == "interrupted"


def test_readonly_open_falls_back_to_immutable_when_no_wal_index_can_be_made(tmp_path, monkeypatch):
    import sqlite3

    RunStore(tmp_path).create_run("train", None, {"a": 1.0}, None, 10, run_id="r1")
    real = sqlite3.connect
    uris = []

    def connect(target, *args, **kwargs):  # what a folder the reader may not write looks like to SQLite
        uris.append(str(target))
        if "mode=ro" in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    assert [r["id"] for r in RunStore.existing(tmp_path).list_runs()] == ["r1"]
    assert any("immutable=1" in u for u in uris)
