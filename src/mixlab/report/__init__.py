"""Plots and the self-contained HTML report (``mixlab report``).

``write_report(run_dir_or_bench_json, out)`` writes the page; :mod:`mixlab.report.plots` holds the
figure functions other modules can reuse; :mod:`mixlab.report.data` documents the input formats.
Submodules import matplotlib only when a plot is drawn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_report_input", "load_report_inputs", "render_html", "write_report"]


def __getattr__(name: str) -> Any:
    if name in ("load_report_input", "load_report_inputs"):
        from mixlab.report import data

        return getattr(data, name)
    if name in ("render_html", "write_report"):
        from mixlab.report import html

        return getattr(html, name)
    raise AttributeError(f"module 'mixlab.report' has no attribute {name!r}")
