import subprocess
import sys

import pytest

from mixlab.errors import MixlabError
from mixlab.mixture import Mixture
from mixlab.store import RunStore


def test_create_update_get_and_list(tmp_path):
    store = RunStore(tmp_path)
    assert store.path == tmp_path / "mixlab.db"
    rid = store.create_run("proxy", "regmix", Mixture({"a": 0.25, "b": 0.75}), {"n_layer": 2}, 1000, seed=3)
    other = store.create_run("train", None, {"a": 1.0}, None, 50)
    run = store.get_run(rid)
    assert run["mixture_json"] == [{"start_step": 0, "mixture": {"a": 0.25, "b": 0.75}}]  # Schedule.to_json
    assert run["model_config"] == {"n_layer": 2}
    assert run["status"] == "created" and run["seed"] == 3 and run["token_budget"] == 1000
    store.update_status(rid, "running")
    store.update_status(rid, "finished", tokens=999, flops=1.5e9, final={"a": 2.0})
    run = store.get_run(rid)
    assert run["status"] == "finished" and run["started_at"] <= run["finished_at"]
    assert run["tokens"] == 999 and run["final_json"] == {"a": 2.0}
    assert [r["id"] for r in store.list_runs()] == [rid, other]
    assert [r["id"] for r in store.list_runs(kind="train")] == [other]
    assert [r["id"] for r in store.list_runs(method="regmix", status="finished")] == [rid]
    assert store.get_run(rid[:10])["id"] == rid  # unique prefix
    with pytest.raises(MixlabError, match="no run"):
        store.get_run("nope")
    with pytest.raises(MixlabError, match="status"):
        store.update_status(rid, "exploded")


def test_metrics_curve_artifacts_and_replace(tmp_path):
    store = RunStore(tmp_path / "x.db")
    rid = store.create_run("proxy", None, {"a": 1.0}, None, 10)
    store.log_metrics(rid, [{"step": 1, "tokens": 10, "domain": "a", "loss": 3.0},
                            {"step": 1, "tokens": 10, "domain": "b", "loss": 4.0},
                            {"step": 2, "tokens": 20, "domain": "a", "loss": 2.0}])
    store.log_metrics(rid, [{"step": 2, "tokens": 20, "domain": "a", "loss": 1.5}])  # resumed run re-logs
    store.log_metrics(rid, [{"step": 2, "tokens": 20, "domain": "train", "loss": 9.0, "split": "train"}])
    assert store.curve(rid) == {1: {"a": 3.0, "b": 4.0}, 2: {"a": 1.5}}
    assert store.curve(rid, "train") == {2: {"train": 9.0}}
    assert len(store.metrics(rid)) == 4
    store.set_artifact(rid, "stage0", {"mixture": {"a": 1.0}, "influence": [[1.0, 2.0]]})
    assert store.get_artifact(rid, "stage0")["influence"] == [[1.0, 2.0]]
    assert store.get_artifact(rid, "missing", default=7) == 7
    with pytest.raises(MixlabError, match="unknown run"):
        store.log_metrics("ghost", [{"step": 1, "domain": "a", "loss": 1.0}])
    with pytest.raises(MixlabError, match="malformed"):
        store.log_metrics(rid, [{"domain": "a"}])


def test_export_csv_and_parquet(tmp_path):
    import csv

    import pyarrow.parquet as pq

    store = RunStore(tmp_path)
    rid = store.create_run("proxy", "uniform", {"a": 0.5, "b": 0.5}, None, 10)
    store.log_metrics(rid, [{"step": s, "tokens": 10 * s, "domain": d, "loss": float(s)} for s in (1, 2) for d in "ab"])
    out = store.export(tmp_path / "m.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and rows[0]["run_id"] == rid and rows[0]["method"] == "uniform"
    table = pq.read_table(store.export(tmp_path / "m.parquet"))
    assert table.num_rows == 4 and set(table.column("domain").to_pylist()) == {"a", "b"}
    runs = pq.read_table(store.export(tmp_path / "r.parquet", table="runs"))
    assert runs.num_rows == 1
    with pytest.raises(MixlabError, match="format"):
        store.export(tmp_path / "m.xlsx")


WRITER = """
import sys
from mixlab.store import RunStore
path, worker, n_runs, n_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = RunStore(path, timeout=120)
for r in range(n_runs):
    rid = store.create_run("proxy", f"w{worker}", {"a": 1.0}, None, 100)
    store.update_status(rid, "running")
    for step in range(n_rows):
        store.log_metrics(rid, [{"step": step, "tokens": step, "domain": d, "loss": worker + r + step * 0.1}
                                for d in ("a", "b")])
    store.set_artifact(rid, "done", {"worker": worker, "run": r})
    store.update_status(rid, "finished")
"""


@pytest.mark.reliability
def test_four_parallel_writers_lose_no_rows(tmp_path, ledger):
    path = str(tmp_path / "mixlab.db")
    RunStore(path)
    n_runs, n_rows = 3, 15
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(w), str(n_runs), str(n_rows)])
             for w in range(4)]
    for p in procs:
        assert p.wait(120) == 0
    store = RunStore(path)
    runs = store.list_runs()
    assert len(runs) == 4 * n_runs
    assert all(r["status"] == "finished" for r in runs)
    written = sum(len(store.metrics(r["id"])) for r in runs)
    ledger.writers(4, written, 4 * n_runs * n_rows * 2 - written)
    assert written == 4 * n_runs * n_rows * 2
    assert all(store.get_artifact(r["id"], "done") is not None for r in runs)
    assert store._read("PRAGMA journal_mode")[0][0] == "wal"
