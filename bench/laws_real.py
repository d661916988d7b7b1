"""Real-data check of the mixing laws on the published Data Mixing Laws curves (issue 6).

Protocol (exactly the issue's): for each model size, hold out the 6 mixtures
``random.Random(0).sample(sorted(run_ids), 6)`` (run ids as integers), fit on the other 20 mixtures
using only the rows with ``step <= last_step(run) / 2``, and report the mean relative error (%) of the
predicted last-step group loss of the held-out mixtures (groups with proportion 0 skipped).

Laws compared (the baseline is the plain fit, run in the same process; ratios are against it):

- ``plain BiMix``: scipy least squares on L, Huber loss, three initialisations (the reference fit).
- ``mixlab BiMix``: the same law fitted on log L with the variable-projection starts; the late-point
  weight ``(s / s_max)^p`` and the warm-up cut ``min_step`` are chosen *without looking at held-out
  runs or late steps*: every candidate is fitted on the training runs' steps ``<= 0.3 x last`` and
  scored on predicting those same runs at their last allowed step (``<= 0.5 x last``), the inner
  analogue of the outer task. Candidates whose inner fit has too few points are skipped. The same
  inner score also chooses ``share_beta``: one step exponent for all five groups, fitted jointly with
  each group's own ``A, alpha, B`` (the BiMix form unchanged, the extrapolating parameter pooled).
- ``mixlab BiMix, within-run fit``: the same law and the same selection, fitted with
  ``run_effects=True``: the step term from each run's own curve shape (a free offset per run), then
  ``A, alpha`` from the runs' offsets (:mod:`mixlab.laws._run_effects`). The law's form is unchanged.
- ``BiMix + transfer`` (an additional law; the ``bimix_mre_pct`` line still reports mixlab BiMix):
  ``r_i`` replaced by ``r_i + sum_{j != i} tau_ij r_j`` with ``tau >= 0``, selected exactly as mixlab
  BiMix (same grid, same inner score on training runs and early steps only).
- ``DML (nested)``: the Data Mixing Law per group, nested with a step law as in the paper: each
  training run's group curve is extrapolated to the target step with ``L(s) = E + B s^-b`` (one
  exponent per group shared by the runs, per-run E and B), then ``c + k exp(t . r)`` is fitted on
  the extrapolated values at that target step.

Findings (see the per-group line): the remaining error is not mainly the step extrapolation. Fitted
on every step of the 20 training runs, the same law still misses the held-out last-step losses by
about 0.6-0.7% (70M), with prose over-predicted for every held-out mixture that is 75% internet: prose
loss falls with the *internet* share, a cross-domain transfer that BiMix's own-proportion-only form
``A / r_i^alpha`` cannot express. A Data Mixing Law mixture term (all proportions) times the BiMix step
term, fitted jointly, reached 0.69-0.75% on 70M in exploration but not on 160M (about 1.1%), whose
symbolic-group curves extrapolate worst; it is not part of this benchmark.

A shared step exponent (``share_beta``, chosen by the inner score) fixes most of the 160M symbolic
miss (per-group beta extrapolated symbolic too flat: 2.6% -> 0.9%) but the inner score keeps per-group
exponents on 70M, whose prose miss is the transfer above: every pooled exact-BiMix candidate of the grid stays
at or above 0.78% there. The effective-proportion extension ``r_eff,i = r_i + sum_j tau_ij r_j``
(``tau >= 0``) in BiMix's own-proportion term is the additional row ``BiMix + transfer``
(:class:`mixlab.laws.bimix_transfer.BiMixTransferModel`), its ``step_weight``, ``min_step`` and
``share_beta`` chosen by the same inner score on the same grid: it removes the 70M prose miss
(2.6% -> 0.4%; 70M 0.90% -> 0.39%) and matches mixlab BiMix on 160M (0.555% vs 0.556%), where its
academic and internet errors are slightly worse and dialogue and symbolic slightly better.

The within-run fit removes most of the 70M prose miss inside BiMix's own form (prose 2.6% -> 0.9%;
70M 0.90% -> 0.64%, under the 0.75% target) because the late part of the pooled curve comes from
the five long runs, whose prose sits high for reasons the law does not model, and that bent the
pooled step term. On 160M it is worse (1.46%; dialogue and symbolic over-predicted). The inner score
cannot arbitrate between the two estimators: no point of the fit window (steps <= half of each run)
shows the end of the learning-rate schedule, where the outer task predicts. Put into one selected
grid it would pick pooled on 70M (inner 0.645% vs 0.661%) and within-run on 160M (0.905% vs
1.084%): 0.90% / 1.46%, the worse of both. So both rows are reported, and the last line stays the
pooled fit. The split holds over the whole grid, even when a setting is picked by its held-out error:
within-run gets 0.61-0.66% on 70M (1.6% with neither the late-point weight nor the warm-up cut)
and stays at or above 1.02% on 160M, and pooled stays at or above 0.78% on 70M.

Run: ``python bench/laws_real.py [--data ../shared/data/mixinglaws]``. Last line ``bimix_mre_pct=...``
(the worse of the two sizes for mixlab's BiMix).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from mixlab.errors import MixlabError
from mixlab.laws.bimix import BiMixModel
from mixlab.laws.bimix_transfer import BiMixTransferModel
from mixlab.laws.dml import DataMixingLaw
from mixlab.laws.pile5 import GROUPS, RunCurve, load_pile5

G = list(GROUPS)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mixinglaws"
GRID_STEP_WEIGHT = (0.0, 1.0, 2.0, 4.0)
GRID_MIN_STEP = (0.0, 5000.0, 9000.0)
GRID_SHARE_BETA = (False, True)


def split(runs: dict[int, RunCurve]) -> tuple[list[int], list[int]]:
    held = random.Random(0).sample(sorted(runs), 6)
    return [r for r in sorted(runs) if r not in held], held


def long_table(runs, ids, frac):
    R, S, Y = [], [], []
    for rid in ids:
        c = runs[rid]
        keep = c.steps <= c.steps[-1] * frac
        for s, loss in zip(c.steps[keep], c.losses[keep], strict=True):
            R.append(c.mixture)
            S.append(s)
            Y.append(loss)
    return np.array(R), np.array(S), np.array(Y)


def mre_at(predict, runs, ids, frac) -> float:
    """Mean relative error (%) at each run's last step ``<= frac x last`` (zero-proportion groups skipped)."""
    errs = []
    for rid in ids:
        c = runs[rid]
        k = np.nonzero(c.steps <= c.steps[-1] * frac)[0][-1]
        pred = predict(rid, c.mixture, c.steps[k])
        for j in range(len(G)):
            if c.mixture[j] > 0:
                errs.append(abs(pred[j] - c.losses[k, j]) / c.losses[k, j])
    return 100.0 * float(np.mean(errs))


def group_mre(predict, runs, ids) -> list[float]:
    """Per-group mean relative error (%) at each held-out run's last step (diagnostic)."""
    out = []
    for j in range(len(G)):
        errs = []
        for rid in ids:
            c = runs[rid]
            if c.mixture[j] > 0:
                errs.append(abs(predict(rid, c.mixture, c.steps[-1])[j] - c.losses[-1, j]) / c.losses[-1, j])
        out.append(100.0 * float(np.mean(errs)) if errs else float("nan"))
    return out


def bimix_predictor(model: BiMixModel):
    return lambda rid, mix, step: model.predict(mix[None], step)[0]


def fit_plain(runs, train):
    R, S, Y = long_table(runs, train, 0.5)
    return BiMixModel(space="linear", loss="huber", n_init=3).fit(R, S, Y, domains=G)


def fit_selected(model_cls, runs, train):
    """A ``model_cls`` law (mixlab BiMix or BiMix + transfer) whose step weight, warm-up cut and shared
    beta are chosen on the training runs only: every grid point is fitted on steps <= 0.3 x last and
    scored at the last step <= 0.5 x last; the best is refitted on steps <= 0.5 x last."""
    R_in, S_in, Y_in = long_table(runs, train, 0.3)
    best = None
    for share, p, ms in itertools.product(GRID_SHARE_BETA, GRID_STEP_WEIGHT, GRID_MIN_STEP):
        try:
            inner = model_cls(step_weight=p, min_step=ms, share_beta=share).fit(R_in, S_in, Y_in, domains=G)
        except MixlabError:
            continue
        score = mre_at(bimix_predictor(inner), runs, train, 0.5)
        if best is None or score < best[0]:
            best = (score, p, ms, share)
    score, p, ms, share = best
    R, S, Y = long_table(runs, train, 0.5)
    model = model_cls(step_weight=p, min_step=ms, share_beta=share).fit(R, S, Y, domains=G)
    return model, {"step_weight": p, "min_step": ms, "share_beta": share, "inner_mre": score}


def extrapolate_runs(runs, ids, j, target_step, frac=0.5):
    """Each run's group-j loss at ``target_step`` from ``E + B s^-b`` fitted on its steps <= frac x last,
    with b shared by the runs (profiled over a grid; E, B per run by linear least squares)."""
    curves = []
    for rid in ids:
        c = runs[rid]
        keep = c.steps <= c.steps[-1] * frac
        curves.append((c.steps[keep], c.losses[keep, j]))
    best = None
    for b in np.geomspace(0.05, 3.0, 120):
        sse, preds = 0.0, []
        for s, y in curves:
            A = np.stack([np.ones_like(s), s**-b], axis=1)
            coef, *_ = np.linalg.lstsq(A, y, rcond=None)
            sse += float(np.sum((A @ coef - y) ** 2))
            preds.append(coef[0] + coef[1] * target_step**-b)
        if best is None or sse < best[0]:
            best = (sse, preds)
    return np.array(best[1])


def dml_predictions(runs, train, held):
    """Nested DML: predictions for each held-out run at its last step, ``{run: [5]}``."""
    out = {h: np.full(len(G), np.nan) for h in held}
    X = np.array([runs[r].mixture for r in train])
    for target in sorted({runs[h].steps[-1] for h in held}):
        for j in range(len(G)):
            y = extrapolate_runs(runs, train, j, target)
            law = DataMixingLaw().fit(X, y)
            for h in held:
                if runs[h].steps[-1] == target:
                    out[h][j] = law.predict(runs[h].mixture[None])[0]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    data = Path(args.data)
    rows = {}
    for size in ("70M", "160M"):
        path = data / f"pile5_{size}.csv"
        if not path.is_file():
            print(f"{path} not found; pass --data", file=sys.stderr)
            return 2
        runs = load_pile5(path)
        train, held = split(runs)
        t0 = time.perf_counter()
        plain = fit_plain(runs, train)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        mixlab, chosen = fit_selected(BiMixModel, runs, train)
        t_mixlab = time.perf_counter() - t0
        transfer, chosen_tr = fit_selected(BiMixTransferModel, runs, train)
        within, chosen_wi = fit_selected(functools.partial(BiMixModel, run_effects=True), runs, train)
        dml = dml_predictions(runs, train, held)
        rows[size] = {
            "held": held,
            "plain": mre_at(bimix_predictor(plain), runs, held, 1.0),
            "mixlab": mre_at(bimix_predictor(mixlab), runs, held, 1.0),
            "dml": mre_at(lambda rid, mix, step, d=dml: d[rid], runs, held, 1.0),
            "transfer": mre_at(bimix_predictor(transfer), runs, held, 1.0),
            "within": mre_at(bimix_predictor(within), runs, held, 1.0),
            "chosen_within": chosen_wi,
            "groups_within": group_mre(bimix_predictor(within), runs, held),
            "chosen_transfer": chosen_tr,
            "groups_transfer": group_mre(bimix_predictor(transfer), runs, held),
            "tau": transfer.tau_,
            "chosen": chosen,
            "groups": group_mre(bimix_predictor(mixlab), runs, held),
            "time_ratio": t_mixlab / t_plain,
        }
    print(f"held-out runs: {rows['70M']['held']} (both sizes)")
    print(f"{'law':<36}{'70M MRE %':>12}{'160M MRE %':>12}{'ratio vs plain':>18}")
    for key, label in (
        ("plain", "plain BiMix (reference)"), ("mixlab", "mixlab BiMix"),
        ("within", "mixlab BiMix, within-run fit"), ("dml", "DML (nested step law)"),
        ("transfer", "BiMix + transfer (additional law)"),
    ):
        a, b = rows["70M"][key], rows["160M"][key]
        ratio = f"{a / rows['70M']['plain']:.2f} / {b / rows['160M']['plain']:.2f}"
        print(f"{label:<36}{a:>12.3f}{b:>12.3f}{ratio:>18}")
    for size in ("70M", "160M"):
        c = rows[size]["chosen"]
        print(
            f"{size}: mixlab BiMix chose step_weight={c['step_weight']:g} min_step={c['min_step']:g} "
            f"share_beta={c['share_beta']} "
            f"(inner MRE {c['inner_mre']:.3f}%); fit time ratio vs plain {rows[size]['time_ratio']:.1f}x"
        )
    for size in ("70M", "160M"):
        c = rows[size]["chosen_within"]
        print(
            f"{size}: within-run fit chose step_weight={c['step_weight']:g} min_step={c['min_step']:g} "
            f"share_beta={c['share_beta']} (inner MRE {c['inner_mre']:.3f}%)"
        )
    for size in ("70M", "160M"):
        c = rows[size]["chosen_transfer"]
        print(
            f"{size}: BiMix + transfer chose step_weight={c['step_weight']:g} min_step={c['min_step']:g} "
            f"share_beta={c['share_beta']} (inner MRE {c['inner_mre']:.3f}%)"
        )
    print("mixlab BiMix per-group MRE % (" + ", ".join(G) + "):")
    for size in ("70M", "160M"):
        print(f"  {size}: " + "  ".join(f"{v:.2f}" for v in rows[size]["groups"]))
    print("mixlab BiMix, within-run fit, per-group MRE %:")
    for size in ("70M", "160M"):
        print(f"  {size}: " + "  ".join(f"{v:.2f}" for v in rows[size]["groups_within"]))
    print("BiMix + transfer per-group MRE %:")
    for size in ("70M", "160M"):
        print(f"  {size}: " + "  ".join(f"{v:.2f}" for v in rows[size]["groups_transfer"]))
    print("BiMix + transfer tau (row = loss group, column = training group; > 0.05 shown):")
    for size in ("70M", "160M"):
        tau = rows[size]["tau"]
        big = [f"{G[i]}<-{G[j]} {tau[i, j]:.2f}" for i in range(len(G)) for j in range(len(G)) if tau[i, j] > 0.05]
        print(f"  {size}: " + (", ".join(big) or "none"))
    worst = max(rows["70M"]["mixlab"], rows["160M"]["mixlab"])
    print(f"bimix_mre_pct={worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
