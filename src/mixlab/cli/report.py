"""``mixlab report``: one self-contained HTML page of a run or a benchmark."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def report(
    source: Annotated[
        Path,
        typer.Argument(help="A run directory (written by `mixlab run`/`mixlab demo`) or a bench .json file."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: RUN_DIR/report.html or BENCH.html)."),
    ] = None,
) -> None:
    """Write an HTML report: mixture per stage, loss curves, Group Influence heatmaps, mixing-law
    fits, predicted-vs-true scatter and the benchmark table.

    Plots are embedded in the page, so the single file opens offline. Sections whose inputs are
    missing are omitted with a note saying which file would fill them.

    Example:

        mixlab report runs/demo --out demo-report.html
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mixlab.report.html import SECTIONS, write_report

    with Progress(
        TextColumn("[bold]report[/] {task.description}"), BarColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        task = progress.add_task("loading", total=len(SECTIONS))

        def advance(name: str) -> None:
            progress.update(task, advance=1, description=name)

        path = write_report(source, out, on_section=advance)
    typer.echo(str(path))
