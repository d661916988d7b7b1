import pytest
from typer.testing import CliRunner

from mixlab.cli.main import build_app

pytestmark = pytest.mark.slow


def test_demo_runs_the_target_track_end_to_end_and_writes_its_report(builtin_dir, tmp_path):
    ws = tmp_path / "demo"
    args = ["demo", "--workspace", str(ws), "--cache-dir", str(builtin_dir), "--model", "nano-100k",
            "--tokens", "40960", "--influence-tokens", "2048", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(build_app(), args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tikmix-d: mixture per stage" in out and "target loss" in out and "target:pydoc" in out
    for name in ("tikmix-d", "uniform", "natural", "dialogue", "influence stability", "demo took"):
        assert name in out
    run_dir = ws / "runs" / "demo-tikmix-d-s0"
    assert (run_dir / "stages" / "stage_1" / "influence.json").is_file()
    assert not (run_dir / "stages" / "stage_2").exists()  # the paper's plan: one decision, at half
    assert (ws / "demo-tikmix-d-s0-mixture.png").read_bytes().startswith(b"\x89PNG")
    page = (run_dir / "report.html").read_text()
    assert "Group Influence" in page and "data:image/png;base64," in page
    assert "Runs compared" in page and "demo-uniform-s0" in page and "demo-natural-s0" in page
    # a second run reuses every finished run: same tables, nothing retrained
    again = CliRunner().invoke(build_app(), args, env={"COLUMNS": "250"})
    assert again.exit_code == 0

    def tables(text):
        return text[text.index("tikmix-d: mixture per stage") : text.index("runs and run store")]

    assert tables(again.output) == tables(out)
