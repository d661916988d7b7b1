import pytest
from typer.testing import CliRunner

from mixlab.cli.main import build_app


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_its_report(builtin_dir, tmp_path):
    ws = tmp_path / "demo"
    args = ["demo", "--workspace", str(ws), "--cache-dir", str(builtin_dir), "--model", "nano-100k",
            "--tokens", "40960", "--stages", "2", "--influence-tokens", "2048"]  # fmt: skip
    result = CliRunner().invoke(build_app(), args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tikmix-d: mixture per stage" in out and "final validation loss per domain" in out
    for name in ("tikmix-d", "uniform", "natural", "average", "dialogue"):
        assert name in out
    run_dir = ws / "runs" / "demo-tikmix-d-s0"
    assert (run_dir / "stages" / "stage_1" / "influence.json").is_file()
    page = (run_dir / "report.html").read_text()
    assert "Group Influence" in page and "data:image/png;base64," in page
    # a second run reuses every finished run: same tables, nothing retrained
    again = CliRunner().invoke(build_app(), args, env={"COLUMNS": "200"})
    assert again.exit_code == 0

    def tables(text):
        return text[text.index("tikmix-d: mixture per stage") : text.index("runs and run store")]

    assert tables(again.output) == tables(out)
