"""``mixlab demo``."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    workspace: Path = typer.Option(Path("mixlab-demo"), help="Directory for the runs and the run store."),
    model: str = typer.Option("tiny-1m", help="Model preset (see `mixlab train --help`)."),
    tokens: int = typer.Option(1_500_000, help="Training tokens per run."),
    stages: int = typer.Option(3, help="Number of mixture stages of the dynamic run."),
    mixer: str = typer.Option("tikmix-d", help="Method that re-chooses the mixture at each stage."),
    influence_tokens: int = typer.Option(
        32_768, help="Tokens per domain (and per target) that each Group Influence measurement reads."
    ),
    seed: int = typer.Option(0, help="Seed of every run."),
    cache_dir: Path = typer.Option(None, help="Where the built-in corpus is prepared (default: user cache)."),
) -> None:
    """Run TiKMiX's dynamic mixture on the built-in corpus and compare it with uniform and natural.

    Prepares the built-in corpus (no network), trains a tiny GPT whose mixture is re-chosen from Group
    Influence at each stage boundary, trains the same model on the uniform and natural mixtures for
    the same budget, prints the mixture per stage and the per-domain validation losses, and writes
    the HTML report of the dynamic run.
    Re-running resumes and reuses finished runs.

    Example: mixlab demo --tokens 500000 --stages 2
    """
    from rich.console import Console
    from rich.table import Table

    from mixlab.pipeline.demo import run_demo

    console = Console()
    res = run_demo(
        workspace, model=model, tokens=tokens, stages=stages, mixer=mixer, influence_tokens=influence_tokens,
        seed=seed, cache_dir=cache_dir,
    )
    domains = list(res.pipeline.stages[0].mixture)
    mix = Table(title=f"{mixer}: mixture per stage")
    mix.add_column("stage")
    mix.add_column("from step", justify="right")
    for d in domains:
        mix.add_column(d, justify="right")
    for rec in res.pipeline.stages:
        mix.add_row(str(rec.stage), str(rec.start_step), *(f"{rec.mixture.get(d, 0.0):.3f}" for d in domains))
    console.print(mix)

    runs = {mixer: res.pipeline.final} | res.baselines
    loss = Table(title="final validation loss per domain (lower is better)")
    loss.add_column("domain")
    for name in runs:
        loss.add_column(name, justify="right")
    for d in domains:
        best = min(runs[n][d] for n in runs)
        loss.add_row(d, *(("[bold green]" if runs[n][d] == best else "") + f"{runs[n][d]:.4f}" for n in runs))
    loss.add_row("[bold]average", *(f"[bold]{sum(r.values()) / len(r):.4f}" for r in runs.values()))
    console.print(loss)
    from mixlab.report.html import write_report

    page = write_report(res.pipeline.run_dir)
    console.print(f"runs and run store: {res.workspace}  (dynamic run: {res.pipeline.run_dir})")
    console.print(f"report (mixture per stage, loss curves, Group Influence): {page}")
