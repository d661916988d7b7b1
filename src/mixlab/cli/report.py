"""``mixlab report``: one self-contained HTML page of a run or a benchmark."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def report(
    source: Annotated[
        list[Path],
        typer.Argument(
            help="A run directory (written by `mixlab run`/`mixlab demo`/`mixlab train`) or a bench .json "
            "file; several are compared on one page."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="HTML file to write (default: RUN_DIR/report.html or BENCH.html; with several inputs "
            "compare.html beside the first).",
        ),
    ] = None,
) -> None:
    """Write an HTML report: mixture per stage, loss curves, Group Influence heatmaps, mixing-law
    fits, predicted-vs-true scatter and the benchmark table.

    Plots are embedded in the page, so the single file opens offline. Sections whose inputs are
    missing are omitted with a note saying which file would fill them. Several inputs are overlaid:
    each run's mixture, its per-domain and mean loss curves, and a table of final losses.

    Examples:

        mixlab report runs/demo --out demo-report.html

        mixlab report runs/tikmix runs/uniform runs/natural bench.json -o compare.html
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mixlab.report.html import SECTIONS, write_report

    with Progress(
        TextColumn("[bold]report[/] {task.description}"), BarColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        task = progress.add_task("loading", total=len(SECTIONS))

        def advance(name: str) -> None:
            progress.update(task, advance=1, description=name)

        path = write_report(list(source), out, on_section=advance)
    typer.echo(str(path))
