import json

import pytest
import yaml
from typer.testing import CliRunner

from mixlab import Mixture, Schedule
from mixlab.cli.main import build_app

runner = CliRunner()


@pytest.fixture()
def app():
    return build_app()


def test_train_from_run_file_then_eval_and_runs_commands(app, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({"train": {
        "corpus": str(tiny_corpus.root), "model": "nano-100k", "mixture": {"english": 0.5, "code": 0.5},
        "tokens": 32 * 4 * 8, "seq_len": 32, "batch_size": 4, "eval_interval": 4, "eval_batches": 1,
        "workspace": "ws", "run_name": "cli-run",
    }}))
    res = runner.invoke(app, ["train", "--config", str(run_file), "--lr", "0.003", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["run_id"] == "cli-run" and out["steps"] == 8 and set(out["final"]) == set(tiny_corpus.domains)
    cfg = yaml.safe_load((tmp_path / "ws" / "runs" / "cli-run" / "config.yaml").read_text())
    assert cfg["lr"] == 0.003 and cfg["workspace"] == str(tmp_path / "ws")

    res = runner.invoke(app, ["eval", "cli-run", "--workspace", "ws", "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.output.strip().splitlines()[-1])
    assert ev["step"] == 8 and ev["losses"] == pytest.approx(out["final"], rel=1e-6)

    res = runner.invoke(app, ["runs", "list", "--workspace", "ws"])
    assert res.exit_code == 0 and "cli-run" in res.output
    res = runner.invoke(app, ["runs", "show", "cli-run", "--workspace", "ws", "--json"])
    assert res.exit_code == 0
    shown = json.loads(res.output)
    assert shown["run"]["status"] == "finished" and sorted(map(int, shown["curve"])) == [4, 8]
    res = runner.invoke(app, ["runs", "export", "--workspace", "ws", "--format", "parquet", "-o", "m.parquet"])
    assert res.exit_code == 0, res.output
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "m.parquet").num_rows == 2 * 4 + 8  # val rows + train rows


def test_train_flags_and_errors(app, tiny_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--corpus", str(tiny_corpus.root), "--model", "nano-100k", "--seq-len", "32",
            "--batch-size", "4", "--workspace", "ws", "--no-progress"]
    res = runner.invoke(app, base + ["--tokens", "512", "--mixture", "english=3,noise=1", "--json"])
    assert res.exit_code == 0, res.output
    from mixlab.store import RunStore

    run = RunStore(tmp_path / "ws").list_runs()[0]
    assert Schedule.from_json(run["mixture_json"]) == Schedule.constant(Mixture({"english": 0.75, "noise": 0.25}))
    assert run["mixture_json"] == [{"start_step": 0, "mixture": {"english": 0.75, "noise": 0.25}}]  # the one form
    from mixlab.cli.main import main

    for args, msg in [(["--tokens", "0"], "positive"), (["--tokens", "512", "--model", "nope"], "unknown model preset"),
                      (["--tokens", "512", "--mixture", "wiki=1"], "unknown domain"),
                      (["--tokens", "512", "--mixture", "english=x"], "mixlab train: mixture: weight of 'english' is "
                                                                        "not a number"),
                      (["--tokens", "512", "--mixture", "missing.yaml"], "mixlab train: mixture: missing.yaml")]:
        with pytest.raises(SystemExit) as exc:
            main(base + args)
        assert exc.value.code == 2
        assert msg in capsys.readouterr().err
    res = runner.invoke(app, ["runs", "show", "nothing", "--workspace", "ws"])
    assert res.exit_code != 0 and "no run" in str(res.exception)
