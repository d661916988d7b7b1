"""RunArtifacts: the one reader and writer of a run directory, including the layouts older runs left."""

import json

import pytest
import yaml

from mixlab.errors import DataError
from mixlab.mixture import Mixture, Schedule
from mixlab.store import RunArtifacts, RunCurve, RunStore, run_schedule

SCHED = Schedule.from_pairs([(0, {"a": 0.5, "b": 0.5}), (4, {"a": 1.0})])
CURVE = RunCurve(val={4: {"a": 3.0, "b": 4.0}, 8: {"a": 2.0, "b": 3.5}},
                 train={s: 5.0 - 0.25 * s for s in range(1, 9)}, tokens_per_step=128)


def test_curve_rows_truncation_and_json_round_trip():
    assert CURVE.final == {"a": 2.0, "b": 3.5}
    assert RunCurve.from_json(json.loads(json.dumps(CURVE.to_json()))) == CURVE
    early = CURVE.upto(5)
    assert early.val == {4: {"a": 3.0, "b": 4.0}} and max(early.train) == 5 and CURVE.final == {"a": 2.0, "b": 3.5}
    rows = CURVE.rows("r")
    assert rows[0] == {"run_id": "r", "split": "val", "step": 4, "tokens": 512, "domain": "a", "loss": 3.0}
    assert len(CURVE.rows("r", "val")) == 4 and len(CURVE.rows("r", "train")) == 8
    assert RunCurve.from_rows(rows) == CURVE
    with pytest.raises(DataError, match="where: not a run curve"):
        RunCurve.from_json({"val": {"x": {}}}, where="where")


def test_writes_and_reads_every_file(tmp_path):
    run = RunArtifacts(tmp_path / "run")
    assert not run.is_run() and run.curve() is None and run.schedule() is None and run.result() is None
    run.root.mkdir()
    run.write_config({"run_name": "r1", "mixture": SCHED.to_json()})
    run.write_model({"gpt": {"n_layer": 1}})
    run.write_schedule(SCHED)
    run.write_curve(CURVE)
    run.write_result({"run_id": "r1", "steps": 8, "final": CURVE.final})
    assert run.is_run() and run.run_id() == "r1"
    assert run.schedule() == SCHED and run.curve() == CURVE and run.model() == {"gpt": {"n_layer": 1}}
    assert json.loads((run.root / "schedule.json").read_text()) == {"schedule": SCHED.to_json()}
    assert "curve" not in run.result()  # one copy of the curve: curve.json
    assert sorted(p.name for p in run.root.iterdir()) == [
        "config.yaml", "curve.json", "model.json", "result.json", "schedule.json"]  # no temporary files left
    assert run.checkpoints == run.root / "checkpoints"


def test_reads_a_run_directory_in_the_older_layout(tmp_path):
    """What `mixlab train` wrote before curve.json: the curve inside result.json, the store's own rows."""
    root = tmp_path / "train-0123456789ab"
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump({"mixture": {"a": 0.75, "b": 0.25}, "kind": "train"}))
    (root / "model.json").write_text(json.dumps({"gpt": {}}))
    (root / "result.json").write_text(json.dumps({
        "run_id": "train-0123456789ab", "steps": 8, "tokens": 1024, "flops": 1.0, "seconds": 2.0,
        "final": {"a": 2.0, "b": 3.5}, "curve": {"4": {"a": 3.0, "b": 4.0}, "8": {"a": 2.0, "b": 3.5}}}))
    run = RunArtifacts(root)
    curve = run.curve()
    assert curve.val == CURVE.val and curve.tokens_per_step == 128 and curve.train == {}
    assert run.run_id() == "train-0123456789ab" and run.schedule() is None
    rows = run.metric_rows("val")
    assert [(r["step"], r["tokens"], r["domain"]) for r in rows] == [(4, 512, "a"), (4, 512, "b"), (8, 1024, "a"),
                                                                      (8, 1024, "b")]


def test_reads_an_older_metrics_csv_and_schedule_shape(tmp_path):
    """What the pipeline and the Hugging Face callback wrote before curve.json."""
    root = tmp_path / "pipe"
    root.mkdir()
    (root / "metrics.csv").write_text(
        "run_id,split,step,tokens,domain,loss\n"
        "p1,val,4,512,a,3.0\np1,valid,4,512,b,4.0\np1,train,4,512,all,9.0\np1,val,8,,a,2.0\n")
    (root / "schedule.json").write_text(json.dumps(SCHED.to_json()))  # a bare list of stages
    run = RunArtifacts(root)
    assert run.schedule() == SCHED
    assert [r["run_id"] for r in run.metric_rows("val")] == ["p1"] * 3
    curve = run.curve()
    assert curve.val == {4: {"a": 3.0, "b": 4.0}, 8: {"a": 2.0}} and curve.train == {4: 9.0}
    assert curve.tokens_per_step == 128
    (root / "metrics.csv").write_text("step,loss\n1,2\n")
    with pytest.raises(DataError, match=r"metrics.csv: missing column\(s\) \['domain'\]"):
        run.curve()


def test_damaged_files_name_the_file(tmp_path):
    run = RunArtifacts(tmp_path)
    (tmp_path / "schedule.json").write_text(json.dumps({"schedule": [{"start_step": 0, "mixture": {"a": 0.2}}]}))
    with pytest.raises(DataError, match=r"schedule.json\[0\]: mixture weights must sum to 1"):
        run.schedule()
    (tmp_path / "curve.json").write_text("{not json")
    with pytest.raises(DataError, match="curve.json"):
        run.curve()


def test_store_reads_curves_from_the_run_directory(tmp_path):
    store = RunStore(tmp_path / "ws")
    run = RunArtifacts(tmp_path / "runs" / "r1")
    run.root.mkdir(parents=True)
    run.write_curve(CURVE)
    rid = store.create_run("train", None, SCHED, None, 1024, run_id="r1", run_dir=run.root)
    assert run_schedule(store.get_run(rid)) == SCHED
    assert store.curve(rid) == CURVE.val
    assert store.curve(rid, "train") == {s: {"all": v} for s, v in CURVE.train.items()}
    # a run recorded by an older version: no curve in its directory, its rows in the store's table
    old = store.create_run("proxy", None, Mixture({"a": 1.0}), None, 10, run_dir=tmp_path / "gone")
    store.log_metrics(old, [{"step": 2, "tokens": 20, "domain": "a", "loss": 1.5}])
    assert store.curve(old) == {2: {"a": 1.5}}
    assert store.get_run(old)["mixture_json"] == [{"start_step": 0, "mixture": {"a": 1.0}}]
    rows = list(store.export(tmp_path / "m.csv").read_text().splitlines())
    assert len(rows) == 1 + len(CURVE.rows(rid)) + 1
