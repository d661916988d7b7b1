"""The CLI's one error boundary: user-input failures end in one ``error:`` paragraph naming the file and
exit code 2; bugs in one ``internal error`` line and exit code 1; ``--debug``/``MIXLAB_DEBUG`` add the
traceback."""

import os
import stat

import pytest

from mixlab.cli.main import build_app


def test_binary_config_is_a_clean_error_naming_the_file(tmp_path, mixlab_cli, monkeypatch):
    monkeypatch.delenv("MIXLAB_DEBUG", raising=False)
    bad = tmp_path / "run.yaml"
    bad.write_bytes(b"model: \xff\xfe\x00garbage")
    code, err = mixlab_cli(["train", "--config", str(bad)])[::2]
    assert code == 2
    assert "error:" in err and str(bad) in err and "UTF-8" in err and "line 1" in err
    assert "Traceback" not in err
    code, err = mixlab_cli(["--debug", "train", "--config", str(bad)])[::2]
    assert code == 2 and "Traceback" in err and str(bad) in err
    monkeypatch.setenv("MIXLAB_DEBUG", "1")
    code, err = mixlab_cli(["train", "--config", str(bad)])[::2]
    assert code == 2 and "Traceback" in err


def test_garbage_yaml_and_csv_name_the_line(tmp_path, mixlab_cli, monkeypatch):
    monkeypatch.delenv("MIXLAB_DEBUG", raising=False)
    bad = tmp_path / "run.yaml"
    bad.write_text("train:\n  model: [tiny\n  lr: 1\n")
    code, err = mixlab_cli(["train", "--config", str(bad)])[::2]
    assert code == 2 and "not valid YAML" in err and "line" in err and "Traceback" not in err
    mix = tmp_path / "m.csv"
    mix.write_text("index,a,b\n0,0.5,0.5\n1,0.9,0.9\n")
    loss = tmp_path / "l.csv"
    loss.write_text("index,x\n0,1.0\n1,2.0\n")
    code, err = mixlab_cli(["predict", "--train-mixtures", str(mix), "--train-losses", str(loss), "-t", "x",
                            "--test-mixtures", str(mix), "--out", str(tmp_path / "p.csv")])[::2]
    assert code == 2 and f"{mix}: line 3 do not sum to 1" in err.replace("\n", "")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file_is_a_clean_error(tmp_path, mixlab_cli):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("train: {}\n")
    cfg.chmod(0)
    try:
        code, err = mixlab_cli(["train", "--config", str(cfg)])[::2]
    finally:
        cfg.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert code == 2 and str(cfg) in err and "permission" in err.lower()


def test_os_errors_are_user_errors_and_bugs_are_internal(tmp_path, mixlab_cli, monkeypatch):
    monkeypatch.delenv("MIXLAB_DEBUG", raising=False)
    import mixlab.cli.runs as runs_cli

    def boom(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ws" / "mixlab.db"))

    monkeypatch.setattr(runs_cli, "_store", boom)
    code, err = mixlab_cli(["runs", "list"])[::2]
    assert code == 2 and "mixlab.db: Permission denied" in err and "Traceback" not in err

    def bug(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(runs_cli, "_store", bug)
    code, err = mixlab_cli(["runs", "list"])[::2]
    assert code == 1 and "internal error" in err and "--debug" in err and "Traceback" not in err


def test_help_shows_no_bool_metavar_on_flags():
    from typer.testing import CliRunner

    res = CliRunner().invoke(build_app(), ["train", "--help"], terminal_width=200)
    assert res.exit_code == 0
    lines = [ln for ln in res.output.splitlines() if "--help" in ln or "--json" in ln]
    assert lines and not any("<bool>" in ln for ln in lines)
    assert "<int>" in res.output  # options that take a value keep their type
