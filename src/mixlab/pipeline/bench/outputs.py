"""What a benchmark writes and prints: the JSON rows (the result keys first), the CSV, the plot of
loss against choosing compute, the terminal table and the headroom line."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from mixlab.errors import ConfigError
from mixlab.pipeline.bench.stats import HEADROOM_MIN_SD
from mixlab.report.bench_rows import RESULT_KEYS, BenchRow
from mixlab.report.plots import figure_to_png, plot_bench
from mixlab.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def _ci(row: BenchRow) -> str:
    d, ci = row.delta_vs_uniform, row.delta_vs_uniform_ci95
    if d is None:
        return ""
    if not ci or not all(math.isfinite(x) for x in ci):
        return f"{d:+.4f}"
    return f"{d:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"


def bench_table(rows: Sequence[BenchRow], title: str = "mixlab bench") -> Table:
    """A rich table of the result rows (losses as mean ± std over seeds, the paired difference to
    uniform with its 95% interval)."""
    table = Table(
        title=title,
        caption="losses: mean±std over seeds; Δ: paired per-seed difference of the target loss to uniform "
        "[95% t-interval]; FLOPs, tokens, s: compute spent choosing the mixture",
    )
    # in a narrow terminal the loss cells wrap (mean over ±std) and a long variant name folds over
    # lines inside its cell (it never takes the whole width, which would leave the numbers no room)
    longest = max([len(r.method) for r in rows] + [6])
    table.add_column("method", overflow="fold", min_width=min(longest, 28))
    for col in ("target", "Δ vs uniform [95% CI]", "avg loss", "worst"):
        table.add_column(col, justify="right")
    for col in ("FLOPs", "tokens", "s", "seeds"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            Text(r.method),  # plain text: a variant's "[key=value]" is not rich markup
            f"{r.target_loss:.4f} ±{r.target_loss_std or 0.0:.4f}",
            _ci(r),
            f"{r.avg_loss:.3f} ±{r.avg_loss_std or 0.0:.3f}",
            f"{r.worst_loss:.3f} ±{r.worst_loss_std or 0.0:.3f}",
            f"{r.choose_flops:.1e}",
            f"{r.choose_tokens:,}",
            f"{r.choose_seconds:.1f}",
            str(r.seeds),
        )
    return table


def headroom_message(summary: Mapping[str, Any]) -> tuple[str, bool]:
    """The headroom line of a track and whether it is too small to rank methods (< 5 seed SDs)."""
    if "headroom" not in summary:
        return "no oracle row: headroom unknown (the scale has oracle_candidates: 0)", False
    h, sd, ratio = summary["headroom"], summary["seed_sd"], summary["headroom_sd"]
    text = f"headroom (uniform - oracle) = {h:.4f} = {ratio:.1f} seed SDs (seed SD {sd:.4f}"
    if summary.get("seed_sd_df"):
        text += f", pooled over the fixed-mixture rows, {summary['seed_sd_df']} df"
    if summary.get("headroom_sd_two_rows") is not None:
        text += f"; from uniform and oracle alone {summary['headroom_sd_two_rows']:.1f} SDs"
    text += ")"
    small = not (ratio >= HEADROOM_MIN_SD)
    if small:
        text += (f"; UNDER {HEADROOM_MIN_SD:.0f} SD: this track cannot rank methods, differences between rows "
                 "are mostly seed noise")
    return text, small


def rows_to_csv(rows: Sequence[BenchRow]) -> str:
    """CSV of the :data:`RESULT_KEYS` columns plus one ``loss_<domain>`` column per domain."""
    domains: list[str] = []
    for r in rows:
        for d in r.per_domain or {}:
            if d not in domains:
                domains.append(d)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*RESULT_KEYS, *(f"loss_{d}" for d in domains)])
    for r in rows:
        writer.writerow([getattr(r, k) for k in RESULT_KEYS] + [(r.per_domain or {}).get(d) for d in domains])
    return buf.getvalue()


def write_outputs(rows: Sequence[BenchRow], out: str | Path) -> dict[str, Path]:
    """Write ``out`` (JSON list, one object per method), ``<out>.csv`` and ``<out>.png`` (loss
    against choosing FLOPs). Returns the paths written."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise ConfigError(f"bench --out {out}: give a .json path (the CSV and plot are written next to it)")
    ordered = [{**{k: getattr(r, k) for k in RESULT_KEYS}, **r.to_dict()} for r in rows]
    atomic_write_json(out, ordered)
    csv_path = out.with_suffix(".csv")
    atomic_write_text(csv_path, rows_to_csv(rows))
    png_path = out.with_suffix(".png")
    fig = plot_bench(ordered, metric="target_loss")
    fig.axes[0].set_title(f"{ordered[0].get('track', 'target')} track: target loss vs compute spent choosing")
    atomic_write_bytes(png_path, figure_to_png(fig))
    return {"json": out, "csv": csv_path, "png": png_path}
