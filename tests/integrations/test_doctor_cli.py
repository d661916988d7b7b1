from __future__ import annotations

import json

import torch
import typer
from typer.testing import CliRunner

from mixlab.cli.doctor import collect, doctor


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("doctor")(doctor)
    return app


def test_doctor_table_names_torch_version() -> None:
    res = CliRunner().invoke(_cli(), ["doctor"])
    assert res.exit_code == 0, res.output
    assert "mixlab doctor" in res.output
    assert torch.__version__ in res.output
    assert "cuda available" in res.output


def test_doctor_json_rows(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXLAB_WORKSPACE", str(tmp_path / "ws"))
    res = CliRunner().invoke(_cli(), ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    rows = {(r["section"], r["item"]): r["value"] for r in json.loads(res.output)}
    assert rows[("versions", "torch")] == torch.__version__
    assert rows[("device", "cuda available")] == str(torch.cuda.is_available())
    assert rows[("threads", "torch intra-op threads")] == str(torch.get_num_threads())
    assert rows[("paths", "cache dir")].startswith(str(tmp_path / "cache" / "mixlab"))
    assert rows[("paths", "run store")].startswith(str((tmp_path / "ws" / "mixlab.db").resolve()))
    assert rows[("data", "built-in corpus")].startswith("not prepared yet")
    assert {s for s, _, _ in collect()} >= {"versions", "device", "threads", "paths", "data"}
