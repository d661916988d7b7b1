"""`mixlab prepare`, `mixlab corpus info` through the real command table."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_prepare_and_info(tmp_path, mixlab_cli):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text(
        "".join(json.dumps({"text": f"doc {i} " * 20}) + "\n" for i in range(20))
    )
    (tmp_path / "corpus.yaml").write_text("output_dir: out\ndomains:\n  a: {path: d, licence: CC0}\n")
    code, out = mixlab_cli(["prepare", "--config", str(tmp_path / "corpus.yaml")])[:2]
    assert code == 0, out
    assert "built" in out and (tmp_path / "out" / "manifest.json").is_file()
    code, out = mixlab_cli(["prepare", "--config", str(tmp_path / "corpus.yaml")])[:2]
    assert code == 0 and "up to date" in out
    code, out = mixlab_cli(["corpus", "info", str(tmp_path / "out"), "--json"])[:2]
    assert code == 0 and json.loads(out)["domains"]["a"]["licence"] == "CC0"


def test_cli_errors_are_clear(tmp_path, mixlab_cli):
    (tmp_path / "corpus.yaml").write_text("output_dir: out\ndomains:\n  a: {path: missing.txt}\n")
    code, out = mixlab_cli(["prepare", "--config", str(tmp_path / "corpus.yaml")])[:2]
    assert code == 2 and "missing.txt does not exist" in out and "Traceback" not in out
    code, out = mixlab_cli(["corpus", "info", str(tmp_path)])[:2]
    assert code == 2 and "not a prepared corpus" in out


def test_help_texts():
    from mixlab.cli.main import build_app

    runner = CliRunner()
    res = runner.invoke(build_app(), ["corpus", "builtin", "--help"])
    assert res.exit_code == 0 and "--cache-dir" in res.output
