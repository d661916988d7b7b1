"""The statistics of a benchmark table: per-method means over seeds, paired differences to uniform
with their t-interval, and the headroom (uniform minus oracle) in seed standard deviations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from mixlab.errors import MixlabError
from mixlab.report.bench_rows import BenchRow

HEADROOM_MIN_SD = 5.0
"""Below this many seed SDs of headroom a track's table cannot rank methods; the CLI says so loudly."""

def summarise(
    finals: Sequence[Mapping[str, float]],
    target_domains: Sequence[str],
    *,
    domains: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Mean and std over seeds of the average, worst and target validation losses.

    Per seed: ``avg`` = mean over ``domains`` (default: every key of the seed's losses), ``worst`` =
    max over them, ``target`` = ``sum_j c_j L_j`` over ``target_domains`` with ``weights`` c (default
    equal). Std is the population std (0 for a single seed). ``target_per_seed`` lists the per-seed
    targets (the paired differences are taken from it).
    """
    if not finals:
        raise MixlabError("bench: no finished target run to summarise")
    c = dict(weights) if weights else {d: 1.0 / len(target_domains) for d in target_domains}
    per: dict[str, list[float]] = {"avg_loss": [], "worst_loss": [], "target_loss": []}
    for final in finals:
        missing = [d for d in target_domains if d not in final]
        if missing:
            raise MixlabError(f"bench: target(s) {missing} were not evaluated (have {sorted(final)})")
        keys = list(domains) if domains is not None else list(final)
        vals = np.array([final[d] for d in keys], dtype=float)
        per["avg_loss"].append(float(vals.mean()))
        per["worst_loss"].append(float(vals.max()))
        per["target_loss"].append(float(sum(c[d] * final[d] for d in target_domains)))
    out: dict[str, Any] = {}
    for key, xs in per.items():
        arr = np.array(xs)
        out[key] = float(arr.mean())
        out[f"{key}_std"] = float(arr.std())
    out["target_per_seed"] = per["target_loss"]
    return out


def paired_delta(values: Sequence[float], baseline: Sequence[float]) -> tuple[float, list[float]]:
    """Mean per-seed difference ``values - baseline`` and its two-sided 95% t-interval.

    The seeds are paired (the same seed's runs differ only in the mixture), so the interval is
    ``mean ± t_{0.975, n-1} * sd(diff) / sqrt(n)``; with one seed it is ``[nan, nan]``.
    """
    d = np.asarray(values, float) - np.asarray(baseline, float)
    if d.ndim != 1 or d.size == 0:
        raise MixlabError("bench: paired differences need the same, non-empty list of seeds")
    mean = float(d.mean())
    if d.size < 2:
        return mean, [math.nan, math.nan]
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, [mean - half, mean + half]


def pooled_seed_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The pooled within-mixture SD of several rows' per-seed losses and its degrees of freedom.

    Each group is one mixture (or fixed schedule) trained on every seed, so its scatter around its
    own mean is seed noise only; pooling the groups' sums of squares, ``sqrt(sum_g SS_g / sum_g
    (n_g - 1))``, is the one-way ANOVA's within-group estimate of that noise. Groups of one seed add
    nothing; groups with identical per-seed losses (the same runs shown under two names, e.g. unimax
    when it equals uniform, or the oracle when it picked a method's mixture) are counted once.
    Returns ``(nan, 0)`` when no group has two seeds.
    """
    kept: list[np.ndarray] = []
    for g in groups:
        v = np.asarray(g, float)
        if v.ndim != 1 or v.size < 2 or not np.isfinite(v).all():
            continue
        if any(k.shape == v.shape and np.allclose(k, v, rtol=0, atol=1e-12) for k in kept):
            continue
        kept.append(v)
    df = int(sum(v.size - 1 for v in kept))
    if df == 0:
        return math.nan, 0
    ss = float(sum(((v - v.mean()) ** 2).sum() for v in kept))
    return math.sqrt(ss / df), df


def headroom(
    uniform: Sequence[float], oracle: Sequence[float], *, noise_rows: Sequence[Sequence[float]] = ()
) -> dict[str, float]:
    """Uniform minus oracle (mean over seeds) and the same in seed standard deviations.

    The seed SD is :func:`pooled_seed_sd` over uniform, the oracle and ``noise_rows`` (further rows
    that trained one fixed schedule on every seed): how much one seed's loss scatters around its
    mixture's mean. With five seeds, uniform and the oracle alone give 8 degrees of freedom, an
    estimate that is itself uncertain by about a quarter (its relative standard error is
    1/sqrt(2 df)); every fixed-mixture row of the table measures the same noise, so pooling them is
    the better estimate. ``seed_sd_two_rows``/``headroom_sd_two_rows`` keep the two-row estimate
    ``sqrt((sd_u^2 + sd_o^2) / 2)`` (ddof 1) beside it. A ratio is infinite when there is no scatter
    and the gap is positive.
    """
    u, o = np.asarray(uniform, float), np.asarray(oracle, float)
    gap = float(u.mean() - o.mean())
    two = float(math.sqrt((u.std(ddof=1) ** 2 + o.std(ddof=1) ** 2) / 2)) if min(u.size, o.size) > 1 else math.nan
    sd, df = pooled_seed_sd([u, o, *noise_rows])

    def ratio(noise: float) -> float:
        if noise == 0:
            return math.inf if gap > 0 else 0.0
        return gap / noise if math.isfinite(noise) else math.nan

    return {"headroom": gap, "seed_sd": sd, "headroom_sd": ratio(sd), "seed_sd_df": df,
            "seed_sd_two_rows": two, "headroom_sd_two_rows": ratio(two)}


def add_deltas(rows: list[BenchRow]) -> dict[str, Any]:
    """Fill ``delta_vs_uniform`` / ``delta_vs_uniform_ci95`` of every row and return the track's
    summary (headroom of the oracle row, in loss and in seed SDs, when there is one)."""
    by = {r.method: r for r in rows}
    if "uniform" not in by:
        return {}
    base = by["uniform"].target_per_seed or []
    for r in rows:
        r.delta_vs_uniform, r.delta_vs_uniform_ci95 = paired_delta(r.target_per_seed or [], base)
    summary: dict[str, Any] = {"track": rows[0].track}
    if "oracle" in by:
        fixed = [r.target_per_seed or [] for r in rows if r.same_schedule_every_seed]
        h = headroom(base, by["oracle"].target_per_seed or [], noise_rows=fixed)
        for key, value in h.items():
            setattr(by["oracle"], key, value)
        summary.update(h)
    return summary



def compare_rankings(first: Sequence[BenchRow], second: Sequence[BenchRow]) -> dict[str, Any]:
    """How far two bench runs (e.g. two base seeds) agree on the ranking of their common methods.

    The methods are the rows both runs hold, other than the oracle and the controls; each run ranks
    them by ``target_loss`` (1 = lowest). Returned: ``methods``, both runs' ``ranks``, Spearman's rho
    and Kendall's tau between them, and every pair of methods with its paired per-seed difference
    and 95% interval in each run. A pair is *separated* in a run when its interval excludes 0 (the
    run can tell the two apart beyond seed noise). The ranking is ``stable`` when no pair that both
    runs separate is ordered differently by them (``discordant``): two rows whose difference is
    within the noise may swap between runs without either run being wrong, so swaps among them are
    listed (``swaps_within_noise``) but do not count against stability.
    """
    def methods(rows: Sequence[BenchRow]) -> dict[str, BenchRow]:
        return {r.method: r for r in rows if r.method != "oracle" and r.control_of is None
                and r.target_per_seed and r.target_loss is not None}  # fmt: skip

    a, b = methods(first), methods(second)
    common = [m for m in a if m in b]
    if len(common) < 2:
        raise MixlabError(f"bench: the two runs share {len(common)} method(s) ({common}); a ranking needs two")
    la = np.array([a[m].target_loss for m in common], float)
    lb = np.array([b[m].target_loss for m in common], float)
    ranks_a, ranks_b = stats.rankdata(la), stats.rankdata(lb)
    pairs, discordant, swaps = [], [], []
    for i, x in enumerate(common):
        for y in common[i + 1 :]:
            da, ca = paired_delta(a[x].target_per_seed or [], a[y].target_per_seed or [])
            db, cb = paired_delta(b[x].target_per_seed or [], b[y].target_per_seed or [])
            sep_a = bool(ca[0] > 0 or ca[1] < 0)
            sep_b = bool(cb[0] > 0 or cb[1] < 0)
            agree = bool(np.sign(da) == np.sign(db))
            pair = {"methods": [x, y], "delta": [da, db], "ci95": [ca, cb], "separated": [sep_a, sep_b],
                    "same_order": agree}  # fmt: skip
            pairs.append(pair)
            if not agree:
                (discordant if sep_a and sep_b else swaps).append([x, y])
    return {
        "methods": common,
        "ranks": [ranks_a.tolist(), ranks_b.tolist()],
        "spearman": float(stats.spearmanr(la, lb).statistic),
        "kendall": float(stats.kendalltau(la, lb).statistic),
        "pairs": pairs,
        "separated_in_both": sum(p["separated"][0] and p["separated"][1] for p in pairs),
        "discordant": discordant,
        "swaps_within_noise": swaps,
        "stable": not discordant,
    }
