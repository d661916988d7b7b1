"""A synthetic pipeline run directory with every input the report reads (numbers are made up)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

DOMAINS = ["web", "code", "books"]
SCHEDULE = [
    {"start_step": 0, "mixture": {"web": 0.6, "code": 0.2, "books": 0.2}},
    {"start_step": 200, "mixture": {"web": 0.35, "code": 0.45, "books": 0.2}},
]
BENCH = [
    {
        "method": "uniform",
        "avg_loss": 3.91,
        "avg_loss_std": 0.02,
        "worst_loss": 4.4,
        "target_loss": 3.95,
        "choose_flops": 0.0,
        "choose_tokens": 0,
        "choose_seconds": 0.0,
        "seeds": 3,
    },
    {
        "method": "regmix",
        "avg_loss": 3.84,
        "avg_loss_std": 0.03,
        "worst_loss": 4.3,
        "target_loss": 3.86,
        "choose_flops": 3.7e15,
        "choose_tokens": 9_000_000,
        "choose_seconds": 310.0,
        "seeds": 3,
    },
    {
        "method": "tikmix-d",
        "avg_loss": 3.80,
        "avg_loss_std": 0.02,
        "worst_loss": 4.2,
        "target_loss": 3.82,
        "choose_flops": 7.2e14,
        "choose_tokens": 1_000_000,
        "choose_seconds": 41.0,
        "seeds": 3,
    },
    {
        "method": "doremi",
        "avg_loss": 3.86,
        "avg_loss_std": 0.04,
        "worst_loss": 4.35,
        "target_loss": 3.9,
        "choose_flops": 4.2e16,
        "choose_tokens": 20_000_000,
        "choose_seconds": 900.0,
        "seeds": 3,
    },
]


for _row, _mix in zip(
    BENCH,
    (
        {"web": 1 / 3, "code": 1 / 3, "books": 1 / 3},
        {"web": 0.5, "code": 0.3, "books": 0.2},
        None,
        {"web": 0.2, "code": 0.6, "books": 0.2},
    ),
    strict=True,
):
    _row["per_domain"] = {
        "web": _row["avg_loss"] - 0.2,
        "code": _row["avg_loss"],
        "books": _row["avg_loss"] + 0.2,
    }
    _row["schedule"] = SCHEDULE if _mix is None else [{"start_step": 0, "mixture": _mix}]
    _row["mixture"] = _mix


def make_run_dir(root: Path, *, with_bench: bool = True) -> Path:
    rng = np.random.default_rng(0)
    run = root / "run"
    run.mkdir(parents=True)
    (run / "schedule.json").write_text(json.dumps({"schedule": SCHEDULE}))
    with (run / "metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run_id", "step", "tokens", "domain", "loss"])
        for step in range(0, 401, 25):
            for i, d in enumerate(DOMAINS):
                loss = 2.5 + i * 0.4 + 5.0 / (1 + step / 40) ** 0.6 + rng.normal(0, 0.01)
                w.writerow(["pipeline", step, step * 4096, d, f"{loss:.4f}"])
    for k in range(2):
        stage = run / "stages" / f"stage_{k}"
        stage.mkdir(parents=True)
        mat = rng.normal(0, 1, (3, 3)) + np.eye(3) * 2.0
        (stage / "influence.json").write_text(
            json.dumps(
                {
                    "train_domains": DOMAINS,
                    "target_domains": DOMAINS,
                    "matrix": mat.tolist(),
                    "stderr": (np.abs(mat) * 0.1).tolist(),
                    "step": 200 * k,
                    "method": "identity",
                }
            )
        )
    laws = run / "laws"
    laws.mkdir()
    for d, a in zip(DOMAINS, (0.8, 1.1, 0.6), strict=True):
        x = np.linspace(0.05, 0.9, 7)
        y = 2.5 + a * x**-0.3 + rng.normal(0, 0.02, 7)
        cx = np.linspace(0.05, 0.9, 50)
        (laws / f"bimix_{d}.json").write_text(
            json.dumps(
                {
                    "name": d,
                    "law": "bimix",
                    "x_label": "proportion",
                    "y_label": "loss",
                    "observed": {"x": x.tolist(), "y": y.tolist()},
                    "curve": {"x": cx.tolist(), "y": (2.5 + a * cx**-0.3).tolist()},
                    "params": {"A": a, "alpha": 0.3},
                }
            )
        )
    with (run / "predictions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true", "predicted"])
        t = rng.uniform(3.5, 4.5, 40)
        for a, b in zip(t, t + rng.normal(0, 0.05, 40), strict=True):
            w.writerow([f"{a:.4f}", f"{b:.4f}"])
    if with_bench:
        (run / "bench.json").write_text(json.dumps(BENCH))
    return run
