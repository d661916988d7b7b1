"""``--help`` through the real command table: every command shows an example, prose paragraphs
reflow to the terminal's width, and square brackets in examples are text, not rich markup."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mixlab.cli.main import COMMANDS, build_app, reflow_help


@pytest.mark.parametrize("command", ["export", "report", "doctor"])
def test_help_has_an_example(command: str) -> None:
    res = CliRunner().invoke(build_app(), [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output and f"mixlab {command}" in res.output


def test_reflow_joins_prose_keeps_indented_blocks_and_escapes_brackets():
    doc = "Summary line.\n\nFirst half of a\nparagraph, second half.\n\n    key: [a, b]\n    other: 1\n"
    assert reflow_help(doc) == (
        "Summary line.\n\nFirst half of a paragraph, second half.\n\n    key: \\[a, b]\n    other: 1"
    )
    assert reflow_help(None) is None


def test_help_paragraphs_are_not_broken_at_the_source_line_length():
    """At 200 columns a prose paragraph of ``train``'s docstring is one line; at 80 it wraps evenly."""
    wide = CliRunner().invoke(build_app(), ["train", "--help"], env={"COLUMNS": "200"})
    assert wide.exit_code == 0, wide.output
    assert "resumes it from its last checkpoint (or reports the finished run)." in wide.output
    narrow = CliRunner().invoke(build_app(), ["train", "--help"], env={"COLUMNS": "80"})
    prose = [line.strip() for line in narrow.output.splitlines() if line.startswith(" ") and "│" not in line]
    # a reflowed paragraph fills its lines: no line of it is cut short in the middle of a sentence
    idx = next(i for i, line in enumerate(prose) if line.startswith("Flags override"))
    assert len(prose[idx]) > 60 and len(prose[idx + 1]) > 60, prose[idx : idx + 3]


def test_brackets_in_a_yaml_example_survive():
    res = CliRunner().invoke(build_app(), ["run", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "targets: [builtin:pydoc" in res.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    res = CliRunner().invoke(build_app(), [command, "--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "Usage: mixlab" in res.output
