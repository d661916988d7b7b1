"""Rank unseen mixtures on RegMix's published proxy runs (RegMix's ranking protocol).

Each predictor is fitted on n of the 512 training runs (n in 512, 256, 102, 51; the subset is
``sorted(random.Random(seed).sample(range(512), n))`` for seeds 0, 1, 2) and scored by the Spearman
correlation x100 between predicted and true ``metric/the_pile_pile_cc_val_loss`` over all 256 test
runs; the figure is the mean over seeds. The baseline is LightGBM in RegMix's setting (1000 rounds,
learning rate 0.01, no early stopping), run in the same process; ratios are against it. The last line
is ``regmix_spearman_102=<mixlab's default predictor at n=102>``.

Usage: ``python bench/regmix_data.py [--data ../shared/data/regmix] [--predictors a,b,...]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from mixlab.predictors.base import DEFAULT_PREDICTOR, get_predictor, spearman
from mixlab.predictors.data import load_sweep

TARGET = "metric/the_pile_pile_cc_val_loss"
SIZES = (512, 256, 102, 51)
SEEDS = (0, 1, 2)
ALL = ("lightgbm", "linear", "loglinear", "bimix", "dml", "tikmix-m", "logmix", "gp", "mixlab")


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(here.parent.parent / "shared" / "data" / "regmix"))
    ap.add_argument("--predictors", default=",".join(ALL))
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    d = Path(args.data)
    if not d.is_dir():
        sys.exit(f"RegMix data not found at {d}; pass --data")
    mix, loss = load_sweep(d / "train_mixture_1m.csv", d / "train_pile_loss_1m.csv")
    tmix, tloss = load_sweep(d / "test_mixture_1m.csv", d / "test_pile_loss_1m.csv")
    X, y = mix.values, loss.column(TARGET)
    Xt, yt = tmix.values, tloss.column(TARGET)
    names = [n.strip() for n in args.predictors.split(",") if n.strip()]
    if "lightgbm" not in names:
        names.insert(0, "lightgbm")
    table: dict[str, dict[int, float]] = {}
    secs: dict[str, float] = {}
    for name in names:
        table[name] = {}
        t0 = time.perf_counter()
        cache: dict[tuple[int, ...], float] = {}
        for n in SIZES:
            scores = []
            for seed in SEEDS:
                idx = tuple(sorted(random.Random(seed).sample(range(512), n)))
                if idx not in cache:
                    model = get_predictor(name).fit(X[list(idx)], y[list(idx)], domains=mix.columns, targets=[TARGET])
                    cache[idx] = 100 * spearman(yt, model.predict(Xt))
                scores.append(cache[idx])
            table[name][n] = float(np.mean(scores))
            print(f"# {name:10s} n={n:3d} seeds={[round(s, 2) for s in scores]}", flush=True)
        secs[name] = time.perf_counter() - t0
    base = table["lightgbm"]
    head = f"{'predictor':12s}" + "".join(f"{'n=' + str(n):>10s}" for n in SIZES) + f"{'seconds':>10s}"
    print(head)
    for name in names:
        print(f"{name:12s}" + "".join(f"{table[name][n]:10.2f}" for n in SIZES) + f"{secs[name]:10.1f}")
    print("ratio of (100 - Spearman x100) to LightGBM's (lower is better):")
    for name in names:
        print(f"{name:12s}" + "".join(f"{(100 - table[name][n]) / max(100 - base[n], 1e-9):10.3f}" for n in SIZES))
    best = DEFAULT_PREDICTOR if DEFAULT_PREDICTOR in table else names[-1]
    print(f"regmix_spearman_102={table[best][102]:.2f}")


if __name__ == "__main__":
    main()
