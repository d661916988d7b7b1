"""Plots and the self-contained HTML report (``mixlab report``).

``write_report(run_dir_or_bench_json, out)`` writes the page; :mod:`mixlab.report.plots` holds the
figure functions other modules can reuse; :mod:`mixlab.report.data` documents the input formats.
"""

from __future__ import annotations

from mixlab.report.data import load_report_input, load_report_inputs
from mixlab.report.html import render_html, write_report

__all__ = ["load_report_input", "load_report_inputs", "render_html", "write_report"]
