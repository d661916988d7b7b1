"""`mixlab export|report|doctor --help` show an example, through the real command table."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mixlab.cli.main import build_app


@pytest.mark.parametrize("command", ["export", "report", "doctor"])
def test_help_has_an_example(command: str) -> None:
    res = CliRunner().invoke(build_app(), [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output and f"mixlab {command}" in res.output
