"""The report reads any run directory through RunArtifacts, a plain `mixlab train` run included."""

import torch

from mixlab.mixture import Mixture, Schedule
from mixlab.report.data import load_report_input
from mixlab.train import TrainConfig, Trainer

torch.set_num_threads(1)


def test_report_reads_a_plain_train_run(tiny_corpus, tmp_path):
    cfg = TrainConfig(model="nano-100k", tokens=32 * 4 * 8, seq_len=32, batch_size=4, eval_interval=4,
                      eval_batches=1, mixture={"english": 0.5, "code": 0.5}, workspace=str(tmp_path / "ws"),
                      progress=False)
    result = Trainer(cfg, corpus=tiny_corpus).fit()
    data = load_report_input(result.run_dir)
    assert not data.notes
    assert data.schedule == Schedule.constant(Mixture({"english": 0.5, "code": 0.5}))
    assert {(r["step"], r["domain"]): r["loss"] for r in data.metrics} == {
        (s, d): v for s, losses in result.curve.items() for d, v in losses.items()}
    assert {r["run_id"] for r in data.metrics} == {result.run_id}
    assert all(r["tokens"] == r["step"] * 128 for r in data.metrics)
