"""Plots of mixtures, losses, Group Influence, mixing laws, predictors and benchmarks.

Every function takes plain data (no files) and returns a :class:`matplotlib.figure.Figure` built
without pyplot, so nothing touches a global backend or opens a window: figures render with Agg
(:func:`figure_to_png`) and are safe in threads, notebooks and headless servers. Other modules
(pipeline, bench, notebooks) can call these directly; :mod:`mixlab.report.html` embeds them.

Domains keep one colour across all plots (:func:`domain_colors`), so "web" in the stacked mixture is
"web" in the loss curves.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from scipy.stats import spearmanr

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mixlab.report.data import InfluenceStage, LawSeries

WIDTH_IN = 10.0
DPI = 100


def _figure(width: float = WIDTH_IN, height: float = 4.0) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def domain_colors(domains: Sequence[str]) -> dict[str, Any]:
    """A stable colour per domain (tab10, then tab20 for more than ten domains)."""

    cmap = colormaps["tab10" if len(domains) <= 10 else "tab20"]
    return {d: cmap(i % cmap.N) for i, d in enumerate(domains)}


def figure_to_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Render with the Agg canvas (no display needed) and return PNG bytes."""

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def plot_mixture_schedule(
    stages: Sequence[tuple[int, Mapping[str, float]]], end_step: int | None = None
) -> Figure:
    """Stacked area of the mixture over training steps; stage k holds from its start to the next."""
    starts = [int(s) for s, _ in stages]
    domains: list[str] = list(dict.fromkeys(d for _, mix in stages for d in mix))
    if end_step is None or end_step <= starts[-1]:
        span = (starts[-1] - starts[0]) / max(1, len(starts) - 1) if len(starts) > 1 else 1
        end_step = starts[-1] + max(1, int(span))
    bounds = starts + [end_step]
    xs: list[float] = []
    ys: list[list[float]] = [[] for _ in domains]
    for k, (_, mix) in enumerate(stages):
        total = sum(max(0.0, float(v)) for v in mix.values()) or 1.0
        for x in (bounds[k], bounds[k + 1]):
            xs.append(x)
            for i, d in enumerate(domains):
                ys[i].append(max(0.0, float(mix.get(d, 0.0))) / total)
    colors = domain_colors(domains)
    fig = _figure(height=3.8)
    ax = fig.add_subplot()
    ax.stackplot(xs, ys, labels=domains, colors=[colors[d] for d in domains], alpha=0.9)
    for k, s in enumerate(starts):
        if k:
            ax.axvline(s, color="black", lw=1, ls="--")
        ax.text(s, 1.01, f"stage {k}", transform=ax.get_xaxis_transform(), fontsize=8, va="bottom")
    ax.set_xlim(bounds[0], bounds[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mixture weight")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return fig


def plot_loss_curves(rows: Sequence[Mapping[str, Any]], boundaries: Sequence[int] = ()) -> Figure:
    """Validation loss per domain over steps (one colour per domain, one line style per run)."""
    runs = list(dict.fromkeys(str(r["run_id"]) for r in rows))
    domains = list(dict.fromkeys(str(r["domain"]) for r in rows))
    colors = domain_colors(domains)
    styles = ["-", "--", ":", "-."]
    shown_runs = runs[: len(styles)]
    fig = _figure(height=4.2)
    ax = fig.add_subplot()
    for j, run in enumerate(shown_runs):
        for d in domains:
            pts = sorted(
                (int(r["step"]), float(r["loss"])) for r in rows if r["run_id"] == run and r["domain"] == d
            )
            pts = [p for p in pts if math.isfinite(p[1])]
            if not pts:
                continue
            x, y = zip(*pts, strict=True)
            label = d if len(shown_runs) == 1 else f"{d} ({run})"
            ax.plot(x, y, styles[j], color=colors[d], label=label, marker="o" if len(x) < 12 else None, ms=3)
    for b in boundaries:
        if b > 0:
            ax.axvline(b, color="gray", lw=1, ls="--")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    if len(runs) > len(shown_runs):
        ax.set_title(f"first {len(shown_runs)} of {len(runs)} runs", fontsize=9)
    return fig


def plot_mean_loss(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Mean validation loss over the domains each run reports, per step: one line per run."""
    runs = list(dict.fromkeys(str(r["run_id"]) for r in rows))
    colors = domain_colors(runs)
    fig = _figure(height=3.6)
    ax = fig.add_subplot()
    for run in runs:
        by_step: dict[int, list[float]] = {}
        for r in rows:
            if str(r["run_id"]) == run and math.isfinite(float(r["loss"])):
                by_step.setdefault(int(r["step"]), []).append(float(r["loss"]))
        if not by_step:
            continue
        x = sorted(by_step)
        y = [float(np.mean(by_step[s])) for s in x]
        ax.plot(x, y, color=colors[run], label=run, marker="o" if len(x) < 12 else None, ms=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean validation loss over domains")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return fig


def plot_influence(stages: Sequence[InfluenceStage]) -> Figure:
    """One heatmap per stage of I[train, target] on a shared symmetric colour scale (red = helps)."""

    n = len(stages)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    vmax = max(float(np.nanmax(np.abs(s.matrix))) for s in stages) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    cell_h = max(2.6, 0.35 * max(len(s.train_domains) for s in stages) + 1.6)
    fig = _figure(height=rows * cell_h + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for ax, st in zip(axes.flat, stages, strict=False):
        image = ax.imshow(st.matrix, cmap="RdBu_r", norm=norm, aspect="auto")
        ax.set_xticks(range(len(st.target_domains)), st.target_domains, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(st.train_domains)), st.train_domains, fontsize=8)
        ax.set_xlabel("target domain", fontsize=8)
        ax.set_ylabel("training domain (up-weighted)", fontsize=8)
        title = f"stage {st.stage}" + (f" (step {st.step})" if st.step is not None else "")
        ax.set_title(title, fontsize=10)
        if st.matrix.size <= 64:
            for (i, j), v in np.ndenumerate(st.matrix):
                txt = f"{v:.2g}"
                if st.stderr is not None and np.isfinite(st.stderr[i, j]):
                    txt += f"\n±{st.stderr[i, j]:.1g}"
                ax.text(
                    j,
                    i,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(v) > 0.6 * vmax else "black",
                )
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="Group Influence")
    return fig


def plot_laws(laws: Sequence[LawSeries], max_panels: int = 12) -> Figure:
    """Observed points and the fitted curve of each mixing law, one panel per law."""
    shown = list(laws)[:max_panels]
    cols = min(len(shown), 3)
    rows = math.ceil(len(shown) / cols)
    fig = _figure(height=2.9 * rows + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, law in zip(axes.flat, shown, strict=False):
        ax.scatter(law.observed_x, law.observed_y, s=18, color="tab:blue", label="observed", zorder=3)
        if law.curve_x is not None and law.curve_y is not None:
            order = np.argsort(law.curve_x)
            ax.plot(law.curve_x[order], law.curve_y[order], color="tab:red", lw=1.6, label="fitted")
        if law.x_label in ("tokens", "steps", "flops") and np.all(law.observed_x > 0):
            ax.set_xscale("log")
        ax.set_xlabel(law.x_label, fontsize=8)
        ax.set_ylabel(law.y_label, fontsize=8)
        title = law.name + (f" [{law.law}]" if law.law else "")
        ax.set_title(title, fontsize=9)
        if law.params:
            text = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in law.params.items()
            )
            ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=7, color="dimgray")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_axis_off()
    if len(laws) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(laws)} laws", fontsize=9)
    return fig


def prediction_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R^2, Spearman rank correlation and RMSE of predictions against the true values."""

    true = np.asarray(true, dtype=float)
    pred = np.asarray(pred, dtype=float)
    ss_res = float(np.sum((true - pred) ** 2))
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    rho = float(spearmanr(true, pred).statistic) if len(true) > 2 else math.nan
    return {"r2": r2, "spearman": rho, "rmse": math.sqrt(ss_res / len(true)), "n": float(len(true))}


def plot_predictions(true: np.ndarray, pred: np.ndarray, model: np.ndarray | None = None) -> Figure:
    """Predicted vs true loss with the identity line; the title gives R^2, Spearman and RMSE."""
    fig = _figure(width=6.0, height=5.0)
    ax = fig.add_subplot()
    if model is not None:
        names = list(dict.fromkeys(model.tolist()))
        cols = domain_colors(names)
        for name in names:
            sel = model == name
            ax.scatter(true[sel], pred[sel], s=16, alpha=0.8, color=cols[name], label=str(name))
        ax.legend(fontsize=8, frameon=False)
    else:
        ax.scatter(true, pred, s=16, alpha=0.8, color="tab:blue")
    lo = float(min(true.min(), pred.min()))
    hi = float(max(true.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=1, ls="--", label="y = x")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    s = prediction_scores(true, pred)
    ax.set_title(
        f"R² = {s['r2']:.3f}   Spearman ρ = {s['spearman']:.3f}   RMSE = {s['rmse']:.3g}   n = {int(s['n'])}",
        fontsize=9,
    )
    ax.set_xlabel("true loss")
    ax.set_ylabel("predicted loss")
    ax.grid(alpha=0.3)
    return fig


def plot_bench(rows: Sequence[Mapping[str, Any]], metric: str = "avg_loss") -> Figure:
    """Each method's ``metric`` (with its ``_std`` as error bar) against the FLOPs spent choosing."""
    methods = [str(r["method"]) for r in rows]
    y = np.array([float(r.get(metric, math.nan)) for r in rows])
    err = np.array([float(r.get(f"{metric}_std", 0.0) or 0.0) for r in rows])
    flops = np.array([float(r.get("choose_flops", 0.0) or 0.0) for r in rows])
    colors = domain_colors(methods)
    fig = _figure(height=3.8)
    ax = fig.add_subplot()
    if np.any(flops > 0):
        x = np.where(flops > 0, flops, np.nan)
        floor = np.nanmin(x) / 3
        x = np.where(np.isnan(x), floor, x)
        labels: dict[tuple[float, float], list[str]] = {}  # methods at one point share one label
        for i, m in enumerate(methods):
            ax.errorbar(x[i], y[i], yerr=err[i], fmt="o", color=colors[m], capsize=3, label=m)
            labels.setdefault((float(x[i]), round(float(y[i]), 6)), []).append(m)
        for (xi, yi), names in labels.items():
            ax.annotate(", ".join(names), (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs spent choosing the mixture (0 plotted at the left edge)")
    else:
        ax.bar(range(len(methods)), y, yerr=err, color=[colors[m] for m in methods], capsize=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        finite = y[np.isfinite(y)]
        if finite.size:
            span = float(finite.max() - finite.min()) or float(abs(finite.max())) * 0.05 or 1.0
            ax.set_ylim(float(finite.min()) - span, float(finite.max()) + span)
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    return fig


def plot_method_mixtures(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """The mixture each method chose, as stacked horizontal bars (one bar per stage of a schedule)."""
    bars: list[tuple[str, Mapping[str, float]]] = []
    for r in rows:
        sched = r.get("schedule")
        if isinstance(sched, list) and sched:
            for k, st in enumerate(sched):
                label = (
                    str(r["method"]) if len(sched) == 1 else f"{r['method']} · step {st.get('start_step', k)}"
                )
                bars.append((label, st.get("mixture", {})))
        elif isinstance(r.get("mixture"), Mapping):
            bars.append((str(r["method"]), r["mixture"]))
    domains = list(dict.fromkeys(d for _, m in bars for d in m))
    colors = domain_colors(domains)
    fig = _figure(height=0.32 * len(bars) + 1.3)
    ax = fig.add_subplot()
    left = np.zeros(len(bars))
    y = np.arange(len(bars))
    for d in domains:
        w = np.array([float(m.get(d, 0.0)) for _, m in bars])
        ax.barh(y, w, left=left, color=colors[d], label=d, height=0.75)
        left += w
    ax.set_yticks(y, [b for b, _ in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("mixture weight")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return fig
