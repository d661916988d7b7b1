"""Mixing laws on the published Data Mixing Laws curves: predicting mixtures that were never trained.

Data: the 5-group Pile curves (``shared/data/mixinglaws``, :func:`mixlab.laws.pile5.load_pile5`) at
70M and 160M, 26 runs each, every run evaluated at step 30000 (some runs go on to 90k-100k).

Table 1, mixture extrapolation (the headline: what a user needs to choose a mixture):

- split: fit on the full curves of 20 runs, predict the 6 held-out runs
  (``random.Random(0).sample(sorted run ids, 6)``) at step 30000; mean relative error (%) over
  (run, group) with the group's proportion > 0.
- 5-fold CV over all 26 runs: the sorted run ids shuffled by ``random.Random(1).shuffle`` and dealt
  round-robin into 5 folds (fold f = positions f, f + 5, ...); each fold predicted at step 30000 by
  a fit on the other 21 runs. MRE as above over all 26 runs, and per group the Spearman correlation
  of the out-of-fold predictions with the true losses over the runs with that group > 0 (min / mean
  over the 5 groups; Table 1b: per group).

Every mixlab row is :func:`mixlab.laws.select.fit_law` exactly as ``mixlab fit-law`` calls it with
no option: ``auto`` chooses the law and its settings by leave-runs-out cross-validation *inside the
training runs only* (nested: the outer held-out runs are never passed in). The rows ``bimix``,
``bimix-transfer``, ``dml`` are ``fit_law(table, law=NAME)``: the law fixed, its settings chosen the
same way (read from the same selection, ``LawSelector.best_``, which searches each law on the same
folds independently of the others). The reference is a plain ``scipy.optimize.curve_fit`` of the
BiMix form per group on L (no weights, no warm-up cut), fitted in the same process.

Table 2, step extrapolation (reported separately): fit on the 20 split-training runs' steps
<= 15000 and predict each of those runs' step-30000 loss (MRE over (run, group), proportion > 0).

Run: ``python bench/laws_real.py [--data ../shared/data/mixinglaws] [--jobs N]`` (``--jobs`` runs the
independent fits in N processes). Last line ``laws_mixture_mre_pct=...``: the worst, over the two
sizes and the two protocols (split and CV), of the ``auto`` row (the target is <= 0.4).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import spearmanr

from mixlab.laws.pile5 import GROUPS, RunCurve, load_pile5
from mixlab.laws.registry import REGISTRY, LongTable, fit_spec
from mixlab.laws.select import fit_law

G = list(GROUPS)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mixinglaws"
TARGET_STEP = 30000.0
STEP_CUT = 15000.0
LAWS = ("auto", *REGISTRY)
ROWS = (*LAWS, "plain")


def split(runs: dict[int, RunCurve]) -> tuple[list[int], list[int]]:
    held = random.Random(0).sample(sorted(runs), 6)
    return [r for r in sorted(runs) if r not in held], held


def cv_folds(runs: dict[int, RunCurve], k: int = 5) -> list[list[int]]:
    ids = sorted(runs)
    random.Random(1).shuffle(ids)
    return [ids[f::k] for f in range(k)]


def long_table(runs: dict[int, RunCurve], ids: list[int], max_step: float = np.inf) -> LongTable:
    R, S, Y, U = [], [], [], []
    for rid in ids:
        c = runs[rid]
        for s, loss in zip(c.steps, c.losses, strict=True):
            if s <= max_step:
                R.append(c.mixture)
                S.append(s)
                Y.append(loss)
                U.append(rid)
    return LongTable.from_arrays(R, S, Y, domains=G, runs=U)


def truth_at(runs, ids, step):
    """``(mixtures [n, 5], losses [n, 5])`` of ``ids`` at ``step``."""
    R = np.array([runs[r].mixture for r in ids])
    Y = np.array([runs[r].losses[np.nonzero(runs[r].steps == step)[0][0]] for r in ids])
    return R, Y


def mre(R, Y, P) -> float:
    ok = R > 0
    return 100.0 * float(np.mean(np.abs(P[ok] - Y[ok]) / Y[ok]))


def _bimix_form(x, a, alpha, b, beta):
    r, s = x
    return a * r**-alpha * (b * s**-beta + 1.0)


PLAIN_STARTS = ((3.0, 0.05, 10.0, 0.5), (3.0, 0.1, 100.0, 0.7), (2.0, 0.02, 3.0, 0.3))


def plain_fit(table: LongTable):
    """The reference: ``curve_fit`` of ``A r^-alpha (B s^-beta + 1)`` per group on L (least squares, no
    weights, no warm-up cut), from three fixed starts, the lowest residual kept."""
    params = []
    for j in range(len(G)):
        ok = table.R[:, j] > 0
        x, y = (table.R[ok, j], table.steps[ok]), table.Y[ok, j]
        best = None
        for p0 in PLAIN_STARTS:
            try:
                p, _ = curve_fit(_bimix_form, x, y, p0=p0, bounds=(1e-9, [100.0, 5.0, 1e6, 5.0]), maxfev=20000)
            except RuntimeError:
                continue
            sse = float(np.sum((_bimix_form(x, *p) - y) ** 2))
            if best is None or sse < best[0]:
                best = (sse, p)
        params.append(best[1])

    def predict(R, s):
        s = np.broadcast_to(np.asarray(s, dtype=float), (R.shape[0],))
        with np.errstate(divide="ignore"):
            return np.stack([_bimix_form((R[:, j], s), *params[j]) for j in range(len(G))], axis=1)

    return predict


def fit_all(table: LongTable) -> tuple[dict, dict]:
    """Predictors for every row of the tables, and the settings each mixlab row chose."""
    sel = fit_law(table)  # exactly what `mixlab fit-law` does with no option
    preds = {"auto": sel.predict, "plain": plain_fit(table)}
    chosen = {"auto": (sel.law_, sel.settings_)}
    for name in REGISTRY:
        if name in sel.best_:
            settings = sel.best_[name]["settings"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = fit_spec(REGISTRY[name], table, settings)
            preds[name] = est.predict
            chosen[name] = (name, settings)
    return preds, chosen


def task(args):
    """One independent fit: ``(size, kind, index)`` -> predictions at the task's query points."""
    path, size, kind, idx = args
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    runs = load_pile5(path)
    train, held = split(runs)
    if kind == "split":
        fit_ids, query, max_step = train, held, np.inf
    elif kind == "cv":
        query = cv_folds(runs)[idx]
        fit_ids, max_step = [r for r in sorted(runs) if r not in query], np.inf
    else:  # step extrapolation
        fit_ids, query, max_step = train, train, STEP_CUT
    t0 = time.perf_counter()
    preds, chosen = fit_all(long_table(runs, fit_ids, max_step))
    R, Y = truth_at(runs, query, TARGET_STEP)
    out = {name: np.asarray(p(R, TARGET_STEP), dtype=float) for name, p in preds.items()}
    return size, kind, idx, query, out, chosen, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    data = Path(args.data)
    sizes = ("70M", "160M")
    paths = {s: data / f"pile5_{s}.csv" for s in sizes}
    for p in paths.values():
        if not p.is_file():
            print(f"{p} not found; pass --data", file=sys.stderr)
            return 2
    tasks = [(str(paths[s]), s, kind, i) for s in sizes for kind, n in (("split", 1), ("cv", 5), ("step", 1)) for i in range(n)]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(task, tasks))
    else:
        results = [task(t) for t in tasks]
    wall = time.perf_counter() - t0
    res: dict = {s: {"cv": {}} for s in sizes}
    for size, kind, idx, query, out, chosen, secs in results:
        if kind == "cv":
            res[size]["cv"][idx] = (query, out)
        else:
            res[size][kind] = (query, out, chosen, secs)
    rows: dict = {s: {} for s in sizes}
    for size in sizes:
        runs = load_pile5(paths[size])
        query, out, _, _ = res[size]["split"]
        R, Y = truth_at(runs, query, TARGET_STEP)
        ids = sorted(runs)
        Rall, Yall = truth_at(runs, ids, TARGET_STEP)
        for name in ROWS:
            r = {"split": mre(R, Y, out[name]) if name in out else np.nan}
            oof = np.full((len(ids), len(G)), np.nan)
            for q, o in res[size]["cv"].values():
                if name in o:
                    oof[[ids.index(u) for u in q]] = o[name]
            r["cv"] = mre(Rall, Yall, oof) if np.all(np.isfinite(oof[Rall > 0])) else np.nan
            rho = [spearmanr(oof[Rall[:, j] > 0, j], Yall[Rall[:, j] > 0, j])[0] for j in range(len(G))]
            r["rho"] = rho
            r["rho_min"], r["rho_mean"] = float(np.min(rho)), float(np.mean(rho))
            q2, o2, _, _ = res[size]["step"]
            R2, Y2 = truth_at(runs, q2, TARGET_STEP)
            r["step"] = mre(R2, Y2, o2[name]) if name in o2 else np.nan
            rows[size][name] = r
    labels = {"auto": "mixlab fit-law (auto, no option)", "bimix": "bimix (law fixed)",
              "bimix-transfer": "bimix-transfer (law fixed)", "bimix-cross": "bimix-cross (law fixed)",
              "dml": "dml (law fixed, nested)",
              "plain": "plain scipy curve_fit (BiMix)"}
    print("Table 1: mixture extrapolation, MRE % at step 30000 (split: 6 held-out runs; CV: 5 folds over 26 runs)")
    print(f"{'law':<36}" + "".join(f"{f'{s} split':>11}{f'{s} CV':>9}{'rho min/mean':>15}" for s in sizes))
    for name in ROWS:
        line = f"{labels.get(name, name):<36}"
        for s in sizes:
            r = rows[s][name]
            line += f"{r['split']:>11.3f}{r['cv']:>9.3f}{r['rho_min']:>9.2f}/{r['rho_mean']:.2f}"
        print(line)
    print("Table 1b: per-group Spearman correlation of the CV predictions with the true losses (runs with the group > 0)")
    print(f"{'law':<36}" + "".join(f"{s:>6} " + " ".join(f"{g[:5]:>5}" for g in G) for s in sizes))
    for name in ROWS:
        print(f"{labels.get(name, name):<36}" + "".join(
            f"{'':>6} " + " ".join(f"{v:>5.2f}" for v in rows[s][name]["rho"]) for s in sizes))
    print("Table 2: step extrapolation, MRE % at step 30000 from steps <= 15000 (the 20 split-training runs)")
    print(f"{'law':<36}" + "".join(f"{s:>11}" for s in sizes))
    for name in ROWS:
        print(f"{labels.get(name, name):<36}" + "".join(f"{rows[s][name]['step']:>11.3f}" for s in sizes))
    for size in sizes:
        for kind in ("split", "step"):
            _, _, chosen, secs = res[size][kind]
            law, settings = chosen["auto"]
            text = ", ".join(f"{k}={v}" for k, v in settings.items())
            print(f"{size} {kind}: auto chose {law} ({text}) in {secs:.0f} s")
    print(f"wall time {wall:.0f} s with {args.jobs} process(es)")
    worst = max(rows[s]["auto"][k] for s in sizes for k in ("split", "cv"))
    print(f"laws_mixture_mre_pct={worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
