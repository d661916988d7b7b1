"""`mixlab influence` on a trained run's checkpoint (Adam state read back from optimizer.pt)."""

from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from mixlab.cli.main import build_app
from mixlab.errors import MixlabError
from mixlab.influence import GroupInfluence

torch.set_num_threads(1)


def test_cli_measures_matrix_at_checkpoint(tiny_corpus, tmp_path):
    from mixlab.train import TrainConfig, Trainer

    cfg = TrainConfig(
        corpus=str(tiny_corpus.root), model="nano-100k", tokens=32 * 4 * 6, seq_len=32, batch_size=4, lr=3e-3,
        warmup=1, eval_interval=6, eval_batches=1, progress=False, out_dir=str(tmp_path / "run"),
    )  # fmt: skip
    Trainer(cfg, store=False, corpus=tiny_corpus).fit()
    out = tmp_path / "infl.json"
    res = CliRunner().invoke(
        build_app(),
        [
            "influence",
            str(tmp_path / "run"),
            "--tokens-per-domain",
            "256",
            "--batch-size",
            "4",
            "--json",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    gi = GroupInfluence.load(out)
    assert gi.train_domains == tiny_corpus.domains == gi.target_domains
    assert gi.preconditioner == "adam" and printed["step"] == 6
    assert np.isfinite(gi.matrix).all() and gi.tokens == 2 * len(tiny_corpus.domains) * 2 * 4 * 32
    table = CliRunner().invoke(
        build_app(),
        ["influence", str(tmp_path / "run"), "--tokens-per-domain", "128", "--preconditioner", "identity"],
    )
    assert table.exit_code == 0 and "Group Influence at step 6" in table.stdout
    docs = tmp_path / "docs.txt"
    docs.write_text("def f(x):\n    return x + 1\n" * 200, encoding="utf-8")
    col = CliRunner().invoke(
        build_app(),
        ["influence", str(tmp_path / "run"), "--tokens-per-domain", "128", "--preconditioner", "identity",
         "--target", str(docs), "--target", "domain:code=2", "--json"],
    )
    assert col.exit_code == 0, col.output
    rec = json.loads(col.stdout)
    assert rec["target_domains"] == ["target:docs", "code"] and np.isfinite(np.array(rec["matrix"])).all()
    bad = CliRunner().invoke(build_app(), ["influence", str(tmp_path / "nope")])
    assert isinstance(bad.exception, MixlabError) and "no such run directory" in str(bad.exception)
