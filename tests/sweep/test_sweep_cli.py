"""`mixlab sweep` end to end on the tiny corpus: runs, then a re-run skips what finished."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from mixlab.cli.main import build_app
from mixlab.predictors.data import load_sweep


@pytest.mark.slow
def test_sweep_cli_runs_then_skips(tiny_corpus, tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"eval_batches": 1, "warmup": 1, "device": "cpu"}, "max_epochs": None}))
    args = ["sweep", "--corpus", str(tiny_corpus.root), "--n", "2", "--tokens", "256", "--model", "nano-100k",
            "--seq-len", "16", "--batch-size", "2", "--workspace", str(tmp_path / "ws"), "--name", "cli",
            "--config", str(cfg)]
    first = CliRunner().invoke(build_app(), args)
    assert first.exit_code == 0, first.output
    d = tmp_path / "ws" / "sweeps" / "cli"
    mix, loss = load_sweep(d / "mixtures.csv", d / "losses.csv")
    assert mix.index == ["0", "1"] and sorted(mix.columns) == sorted(tiny_corpus.domains)
    second = CliRunner().invoke(build_app(), args)
    assert second.exit_code == 0 and "2 already done" in second.output.replace("\n", " ")
    bad = CliRunner().invoke(build_app(), [*args[:-2], "--engine", "spark"])
    assert "engine" in str(bad.exception)
