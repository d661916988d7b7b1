"""One self-contained HTML page from a run directory or a bench JSON.

Plots are PNGs embedded as ``data:`` URIs and the CSS is inline, so the page opens offline from a
single file (no scripts, fonts or network). Each ``<img>`` carries its natural width and height, so
the layout is fixed before the images decode. A section whose input is absent is replaced by a note
naming the file that would fill it.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixlab import __version__
from mixlab.mixture import Schedule
from mixlab.report import plots
from mixlab.report.data import BENCH_KEYS, ReportData, load_report_inputs
from mixlab.utils.io import atomic_write_text

log = logging.getLogger(__name__)

SECTIONS = ("compare", "mixture", "losses", "influence", "laws", "predictions", "bench")
TITLES = {
    "compare": "Runs compared",
    "mixture": "Mixture per stage",
    "losses": "Per-domain validation loss",
    "influence": "Group Influence per stage",
    "laws": "Fitted mixing laws",
    "predictions": "Predictor: predicted vs true loss",
    "bench": "Benchmark",
}
MISSING = {
    "compare": "a single input (pass several run directories to compare them)",
    "mixture": "no schedule.json in the input",
    "losses": "no loss curve in the input (a run directory's curve.json, or a metrics.csv)",
    "influence": "no stages/stage_<k>/influence.json in the input",
    "laws": "no laws/*.json in the input",
    "predictions": "no predictions.csv (true, predicted) in the input",
    "bench": "no bench results (a bench .json, or bench.json in the run directory)",
}

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1100px; color: #222; background: #fff; }
h1 { font-size: 24px; margin-bottom: 4px; }
h3 { font-size: 15px; margin-top: 18px; }
h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #666; font-size: 13px; }
.note { color: #7a5a00; background: #fff8e1; border-left: 3px solid #e0b000; padding: 6px 10px;
        font-size: 13px; }
img.plot { display: block; max-width: 100%; height: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; }
"""


def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _img(fig: Any, alt: str) -> str:
    png = plots.figure_to_png(fig)
    w, h = _png_size(png)
    return f'<img class="plot" alt="{html.escape(alt)}" width="{w}" height="{h}" src="{plots.png_data_uri(png)}">'


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.3e}" if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3) else f"{v:.4g}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]], name_cols: int = 1) -> str:
    th = "".join(
        f'<th class="{"name" if i < name_cols else ""}">{html.escape(h)}</th>' for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="{"name" if i < name_cols else ""}">{_fmt(c)}</td>' for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _stages(schedule: Schedule | None) -> list[tuple[int, dict[str, float]]]:
    """``(start_step, weights)`` per stage, as the plots take them."""
    return [(s.start_step, s.mixture.to_dict()) for s in schedule.stages] if schedule is not None else []


def _section_mixture(data: ReportData) -> str:
    stages = _stages(data.schedule)
    end = data.last_step
    domains = list(dict.fromkeys(d for _, m in stages for d in m))
    bounds = [s for s, _ in stages[1:]] + [end]
    rows = [
        [f"stage {k}", s, "end" if e is None else e] + [m.get(d, 0.0) for d in domains]
        for k, ((s, m), e) in enumerate(zip(stages, bounds, strict=True))
    ]
    fig = plots.plot_mixture_schedule(stages, end_step=end)
    return _img(fig, "stacked mixture per stage") + _table(
        ["stage", "start step", "end step", *domains], rows
    )


def _section_losses(data: ReportData) -> str:
    rows = data.metrics or []
    boundaries = [s for s, _ in _stages(data.schedule)]
    fig = plots.plot_loss_curves(rows, boundaries)
    last: dict[tuple[str, str], tuple[int, float]] = {}
    for r in rows:
        key = (str(r["run_id"]), str(r["domain"]))
        if key not in last or r["step"] >= last[key][0]:
            last[key] = (int(r["step"]), float(r["loss"]))
    table = _table(
        ["run", "domain", "last step", "final loss"], [[k[0], k[1], *v] for k, v in last.items()], 2
    )
    return _img(fig, "per-domain loss curves") + table


def _section_compare(data: ReportData) -> str:
    """Each run's mixture side by side, the mean loss over domains per run, and final losses."""
    parts = []
    rows = [
        {"method": label, "schedule": sched.to_json()}
        for label, sched in data.runs.items()
        if sched
    ]
    if rows:
        parts.append("<h3>Mixture of each run</h3>")
        parts.append(_img(plots.plot_method_mixtures(rows), "mixture of each run"))
    metrics = data.metrics or []
    if metrics:
        parts.append("<h3>Mean validation loss over domains, per run</h3>")
        parts.append(_img(plots.plot_mean_loss(metrics), "mean validation loss over domains, per run"))
        last: dict[tuple[str, str], tuple[int, float]] = {}
        for r in metrics:
            key = (str(r["run_id"]), str(r["domain"]))
            if key not in last or r["step"] >= last[key][0]:
                last[key] = (int(r["step"]), float(r["loss"]))
        runs = list(dict.fromkeys(k[0] for k in last))
        domains = list(dict.fromkeys(k[1] for k in last))
        table_rows = []
        for run in runs:
            vals = [last.get((run, d), (0, math.nan))[1] for d in domains]
            finite = [v for v in vals if math.isfinite(v)]
            table_rows.append([run, *vals, sum(finite) / len(finite) if finite else math.nan])
        table_rows.sort(key=lambda r: r[-1])
        parts.append("<h3>Final validation loss per run (best mean first)</h3>")
        parts.append(_table(["run", *domains, "mean"], table_rows))
    return "".join(parts)


def _section_influence(data: ReportData) -> str:
    fig = plots.plot_influence(data.influence)
    return (
        '<p class="meta">I[i, j]: first-order decrease of target domain j\'s loss when training domain i is '
        "up-weighted (TiKMiX Eq. 8, sign flipped so that larger = more helpful).</p>"
        + _img(fig, "Group Influence heatmaps")
    )


def _section_laws(data: ReportData) -> str:
    return _img(plots.plot_laws(data.laws), "mixing-law fits")


def _section_predictions(data: ReportData) -> str:
    p = data.predictions or {}
    fig = plots.plot_predictions(p["true"], p["predicted"], p.get("model"))
    s = plots.prediction_scores(p["true"], p["predicted"])
    table = _table(["n", "R²", "Spearman ρ", "RMSE"], [[int(s["n"]), s["r2"], s["spearman"], s["rmse"]]], 0)
    return _img(fig, "predicted vs true scatter") + table


def _section_bench(data: ReportData) -> str:
    rows = [r.to_dict() for r in data.bench or []]
    keys = [k for k in BENCH_KEYS if any(k in r for r in rows)]
    extra = sorted(
        {
            k
            for r in rows
            for k in r
            if k not in keys
            and k != "method"
            and not k.endswith("_std")
            and isinstance(r[k], (int, float))
            and not isinstance(r[k], bool)
        }
    )
    header = ["method", *keys, *extra]
    table_rows = []
    for r in sorted(rows, key=lambda r: float(r.get("avg_loss", math.inf))):
        cells: list[Any] = [r["method"]]
        for k in keys + extra:
            v = r.get(k)
            std = r.get(f"{k}_std")
            if isinstance(v, (int, float)) and isinstance(std, (int, float)) and std:
                cells.append(f"{_fmt(float(v))} ± {_fmt(float(std))}")
            else:
                cells.append(v)
        table_rows.append(cells)
    parts = [_table(header, table_rows)]
    if any(isinstance(r.get("avg_loss"), (int, float)) for r in rows):
        parts.append(_img(plots.plot_bench(rows), "benchmark: loss vs compute spent choosing"))
    per = [r for r in rows if isinstance(r.get("per_domain"), dict) and r["per_domain"]]
    if per:
        domains = list(dict.fromkeys(d for r in per for d in r["per_domain"]))
        parts.append("<h3>Final validation loss per domain</h3>")
        parts.append(
            _table(
                ["method", *domains], [[r["method"], *(r["per_domain"].get(d) for d in domains)] for r in per]
            )
        )
    if any(isinstance(r.get("schedule"), list) or isinstance(r.get("mixture"), dict) for r in rows):
        parts.append("<h3>Chosen mixtures</h3>")
        parts.append(_img(plots.plot_method_mixtures(rows), "mixture chosen by each method"))
    return "".join(parts)


_BUILDERS: dict[str, tuple[Callable[[ReportData], bool], Callable[[ReportData], str]]] = {
    "compare": (lambda d: len(d.runs) > 1, _section_compare),
    "mixture": (lambda d: bool(d.schedule), _section_mixture),
    "losses": (lambda d: bool(d.metrics), _section_losses),
    "influence": (lambda d: bool(d.influence), _section_influence),
    "laws": (lambda d: bool(d.laws), _section_laws),
    "predictions": (lambda d: d.predictions is not None, _section_predictions),
    "bench": (lambda d: bool(d.bench), _section_bench),
}


def _notes_for(data: ReportData, section: str) -> list[str]:
    keys = {
        "mixture": ("schedule",),
        "losses": ("losses",),
        "predictions": ("predictions",),
        "bench": ("bench",),
    }
    prefix = {"influence": "influence", "laws": "law"}.get(section)
    return [
        v for k, v in data.notes.items() if k in keys.get(section, ()) or (prefix and k.startswith(prefix))
    ]


def render_html(data: ReportData, on_section: Callable[[str], None] | None = None) -> str:
    """The whole page as a string; ``on_section(name)`` is called after each section (progress)."""

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>mixlab report: {html.escape(data.source.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>mixlab report</h1>",
        f'<p class="meta">{html.escape(str(data.source))} ({data.kind}) · generated '
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · mixlab {__version__}</p>",
    ]
    omitted = []
    for name in SECTIONS:
        present, build = _BUILDERS[name]
        notes = _notes_for(data, name)
        if present(data) or notes:
            parts.append(f'<section id="{name}"><h2>{TITLES[name]}</h2>')
            for note in notes:
                parts.append(f'<p class="note">Skipped unreadable input: {html.escape(note)}</p>')
            parts.append(
                build(data) if present(data) else f'<p class="note">Section omitted: {MISSING[name]}.</p>'
            )
            parts.append("</section>")
        elif name != "compare":  # absent inputs are listed once at the end, not as empty sections
            omitted.append(name)
        log.info("report section %s done", name)
        if on_section is not None:
            on_section(name)
    if omitted:
        items = "".join(f"<li>{TITLES[n]}. Section omitted: {MISSING[n]}.</li>" for n in omitted)
        parts.append(
            f'<section id="omitted"><p class="note">Not shown, as this input has no data for them:</p>'
            f"<ul>{items}</ul></section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def default_output(source: str | Path | list[str | Path]) -> Path:
    """``RUN_DIR/report.html`` or ``BENCH.html``; with several inputs ``compare.html`` beside the first."""
    if isinstance(source, list):
        if len(source) > 1:
            first = Path(source[0])
            return (first if first.is_dir() else first.parent) / "compare.html"
        source = source[0]
    src = Path(source)
    return src / "report.html" if src.is_dir() else src.with_suffix(".html")


def write_report(
    source: str | Path | list[str | Path],
    out: str | Path | None = None,
    on_section: Callable[[str], None] | None = None,
) -> Path:
    """Load ``source`` (a run directory or bench JSON, or a list of them to compare), render the page
    and write it atomically."""
    data = load_report_inputs(source if isinstance(source, list) else [source])
    target = Path(out) if out is not None else default_output(source)
    atomic_write_text(target, render_html(data, on_section))
    log.info("wrote report %s", target)
    return target
