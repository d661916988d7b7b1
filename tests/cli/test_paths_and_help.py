"""Output-path policy, read-only commands that create nothing, absolute corpus paths in runs, sweep flag
precedence, and the help/report/list fixes, through the real command table."""

import os
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from mixlab.cli.main import build_app

runner = CliRunner()




def test_out_paths_are_checked_before_any_work(tmp_path, mixlab_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("index,a,b\n0,0.5,0.5\n1,0.2,0.8\n2,0.9,0.1\n")
    (tmp_path / "l.csv").write_text("index,x\n0,1.0\n1,2.0\n2,1.5\n")
    base = ["predict", "--train-mixtures", "m.csv", "--train-losses", "l.csv", "-t", "x", "--test-mixtures", "m.csv"]
    code, out = mixlab_cli([*base, "--out", "nope/deeper/p.csv"])[:2]
    assert code == 2 and "--out nope/deeper/p.csv: the folder nope/deeper does not exist" in out
    assert not (tmp_path / "nope").exists()
    (tmp_path / "adir").mkdir()
    code, out = mixlab_cli([*base, "--out", "adir"])[:2]
    assert code == 2 and "is a folder" in out
    code, out = mixlab_cli(["runs", "export", "-o", "nope/m.csv"])[:2]
    assert code == 2 and "does not exist" in out and not (tmp_path / "nope").exists()


def test_read_only_commands_create_no_workspace(tmp_path, mixlab_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIXLAB_WORKSPACE", raising=False)
    code, out = mixlab_cli(["eval", str(tmp_path / "nope" / "run")])[:2]
    assert code == 2 and "not a run directory" in out
    code, out = mixlab_cli(["eval", "some-run-id"])[:2]
    assert code == 2 and "no run store here" in out
    code, out = mixlab_cli(["runs", "list", "--workspace", str(tmp_path / "typo" / "ws")])[:2]
    assert code == 2 and "no run store here" in out
    code, out = mixlab_cli(["runs", "show", "x"])[:2]
    assert code == 2
    assert sorted(os.listdir(tmp_path)) == []


def test_train_stores_the_absolute_corpus_and_eval_works_from_elsewhere(tiny_corpus, tmp_path, monkeypatch):
    shutil.copytree(tiny_corpus.root, tmp_path / "corp")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(build_app(), ["train", "--corpus", "corp", "--model", "nano-100k", "--tokens", "512",
                                      "--seq-len", "32", "--batch-size", "4", "--workspace", "ws", "--run-name", "r1",
                                      "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load((tmp_path / "ws" / "runs" / "r1" / "config.yaml").read_text())
    assert cfg["corpus"] == str(tmp_path / "corp")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    res = runner.invoke(build_app(), ["eval", str(tmp_path / "ws" / "runs" / "r1"), "--json"])
    assert res.exit_code == 0, res.output
    # a report of a plain train run shows its mixture and loss curve, and lists the absent sections once
    res = runner.invoke(build_app(), ["report", str(tmp_path / "ws" / "runs" / "r1"), "-o", "r.html"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "elsewhere" / "r.html").read_text()
    assert '<section id="losses">' in page and '<section id="mixture">' in page
    assert '<section id="influence">' not in page and page.count("Section omitted") == 4
    # runs list keeps long ids whole on a narrow terminal
    monkeypatch.chdir(tmp_path)
    from mixlab.store import RunStore

    long_id = "train-" + "0123456789abcdef" * 3
    RunStore(tmp_path / "ws").create_run("train", None, {"english": 1.0}, None, 10, run_id=long_id)
    res = runner.invoke(build_app(), ["runs", "list", "--workspace", "ws"], terminal_width=80)
    assert res.exit_code == 0 and long_id in res.output


def test_sweep_flags_override_the_config_like_train(tmp_path, monkeypatch):
    import mixlab.sweep as sweep_mod

    seen = {}

    def fake_run(self, **kw):
        seen["cfg"] = self.config
        raise SystemExit(0)

    monkeypatch.setattr(sweep_mod.Sweep, "run", fake_run)
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump({"corpus": "c", "n": 5, "tokens": 999, "seq_len": 64}))
    res = runner.invoke(build_app(), ["sweep", "--config", str(cfg), "--n", "3", "--workspace", str(tmp_path)])
    assert res.exit_code == 0, res.output
    c = seen["cfg"]
    assert (c.n, c.tokens, c.seq_len, c.corpus) == (3, 999, 64, "c")  # flag beats file, file beats default


def test_help_lists_presets_and_documents_every_sweep_flag():
    res = runner.invoke(build_app(), ["train", "--help"], terminal_width=200)
    assert "tiny-1m" in res.output and "nano-100k" in res.output and "base-124m" in res.output
    res = runner.invoke(build_app(), ["sweep", "--help"], terminal_width=200)
    for flag in ("--seq-len", "--batch-size", "--lr", "--seed"):
        line = next(ln for ln in res.output.splitlines() if flag in ln)
        assert len(line.split(">", 1)[-1].strip(" │")) > 10, line


@pytest.mark.parametrize("pattern", ["%", "_"])
def test_runs_show_wildcards_match_nothing(tmp_path, mixlab_cli, pattern):
    from mixlab.store import RunStore

    RunStore(tmp_path).create_run("train", None, {"a": 1.0}, None, 10, run_id="train-1")
    code, out = mixlab_cli(["runs", "show", pattern, "--workspace", str(tmp_path)])[:2]
    assert code == 2 and "no run" in out
