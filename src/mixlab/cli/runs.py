"""``mixlab runs``: list, show and export the runs recorded in a workspace's store."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help=(
        "Inspect and export the runs recorded in the workspace store.\n\n"
        "Example: mixlab runs list && mixlab runs export --format parquet -o metrics.parquet"
    ),
    no_args_is_help=True,
)
console = Console()

WorkspaceOpt = Annotated[str | None, typer.Option(help="Workspace folder (default $MIXLAB_WORKSPACE or ./mixlab-workspace).")]


def _store(workspace: str | None) -> Any:
    from mixlab.store import RunStore, default_workspace

    # read-only: listing, showing or exporting never creates a workspace or a store
    return RunStore.existing(Path(workspace) if workspace else default_workspace())


def _when(ts: float | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _short_mixture(run: dict[str, Any]) -> str:
    from mixlab.store import run_schedule

    sched = run_schedule(run)
    if sched is None:
        return str(run.get("mixture_json") or "")
    if sched.is_constant:
        return ", ".join(f"{k}={v:.2f}" for k, v in sched.stages[0].mixture.weights.items())
    return f"schedule of {len(sched.stages)} stages"


@app.command("list")
def list_runs(
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind (train, proxy, ...).")] = None,
    method: Annotated[str | None, typer.Option(help="Only runs of this mixing method.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List runs, oldest first.

    Example: mixlab runs list --kind proxy --status finished
    """
    runs = _store(workspace).list_runs(kind=kind, method=method, status=status)
    if json_out:
        for run in runs:
            typer.echo(json.dumps(run, default=str))
        return
    table = Table(title=f"{len(runs)} runs")
    table.add_column("id", no_wrap=True, min_width=max((len(r["id"]) for r in runs), default=2))
    for col in ("kind", "method", "status", "tokens", "final mean loss", "created", "mixture"):
        table.add_column(col)
    for run in runs:
        final = run.get("final_json") or {}
        mean = f"{sum(final.values()) / len(final):.4f}" if isinstance(final, dict) and final else ""
        table.add_row(run["id"], run["kind"], run.get("method") or "", run["status"],
                      f"{run['tokens']:,}" if run.get("tokens") else "", mean, _when(run["created_at"]),
                      _short_mixture(run))
    console.print(table)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    workspace: WorkspaceOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one run: its record, its validation curve and its artifacts.

    Example: mixlab runs show proxy-1a2b3c
    """
    store = _store(workspace)
    run = store.get_run(run_id)
    curve = store.curve(run["id"])
    if json_out:
        typer.echo(json.dumps({"run": run, "curve": curve, "artifacts": sorted(store.artifacts(run["id"]))},
                              default=str))
        return
    info = Table(show_header=False, title=f"run {run['id']}")
    for key in ("kind", "method", "name", "status", "token_budget", "tokens", "flops", "seconds", "seed",
                "code_version", "run_dir", "error"):
        if run.get(key) is not None:
            info.add_row(key, str(run[key]))
    for key in ("created_at", "started_at", "finished_at"):
        if run.get(key):
            info.add_row(key, _when(run[key]))
    info.add_row("mixture", json.dumps(run.get("mixture_json")))
    info.add_row("model", json.dumps(run.get("model_config"))[:200])
    console.print(info)
    if curve:
        domains = list(next(iter(curve.values())))
        table = Table(title="validation loss")
        table.add_column("step", justify="right")
        for d in domains:
            table.add_column(d, justify="right")
        for step, losses in curve.items():
            table.add_row(str(step), *(f"{losses.get(d, float('nan')):.4f}" for d in domains))
        console.print(table)
    artifacts = store.artifacts(run["id"])
    if artifacts:
        console.print(f"artifacts: {', '.join(artifacts)}")


@app.command("export")
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path("metrics.csv"),
    format: Annotated[str | None, typer.Option("--format", "-f", help="csv or parquet (default: from --output).")] = None,
    table: Annotated[str, typer.Option(help="metrics (one row per step and domain) or runs.")] = "metrics",
    workspace: WorkspaceOpt = None,
) -> None:
    """Export the metrics (joined with run fields) or the runs table as CSV or Parquet.

    Example: mixlab runs export --format parquet -o metrics.parquet
    """
    if format and output.suffix.lstrip(".") != format:
        output = output.with_suffix(f".{format}")
    path = _store(workspace).export(output, format, table=table)
    console.print(f"wrote {path}")
