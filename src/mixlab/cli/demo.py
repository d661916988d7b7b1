"""``mixlab demo``."""

from __future__ import annotations

import math
from pathlib import Path

import typer


def demo(
    workspace: Path = typer.Option(Path("mixlab-demo"), help="Directory for the runs and the run store."),
    model: str = typer.Option("tiny-1m", help="Model preset (see `mixlab train --help`)."),
    tokens: int = typer.Option(393_216, help="Training tokens per run."),
    stages: int = typer.Option(2, help="Number of mixture stages of the dynamic run (2: the TiKMiX paper's plan)."),
    mixer: str = typer.Option(
        "tikmix-d", help="Method that re-chooses the mixture at each stage, or a variant (tikmix-d\\[objective=firstorder])."
    ),
    target: list[str] = typer.Option(
        None, help="Target (PATH[=WEIGHT], builtin:pydoc, domain:NAME); repeatable. Default: builtin:pydoc."
    ),
    influence_tokens: int = typer.Option(
        16_384, help="Tokens per domain (and per target) that each Group Influence measurement reads."
    ),
    threads: int = typer.Option(
        None, help="CPU threads (default: MIXLAB_THREADS, else the free cores: usable cores minus the load)."
    ),
    seed: int = typer.Option(0, help="Seed of every run."),
    cache_dir: Path = typer.Option(None, help="Where the built-in corpus is prepared (default: user cache)."),
) -> None:
    """Choose a mixture for a downstream target with TiKMiX-D and compare it with uniform and natural.

    Prepares the built-in corpus and the built-in target (the Python documentation topics, never
    trained on; no network), trains a tiny GPT on the natural mixture for the first half, measures
    Group Influence of each training domain on the target on the live model and trains the second
    half on the mixture TiKMiX-D chooses; trains the same model on the uniform and natural mixtures
    for the same budget; prints the mixture per stage and every run's target loss, and writes the
    mixture plot and one HTML report of the dynamic run against its baselines. About 3-4 minutes on
    2 free CPU cores. Re-running reuses finished runs.

    Example: mixlab demo --tokens 196608 --target notes.txt
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mixlab.data.targets import DEFAULT_TARGET
    from mixlab.pipeline.demo import run_demo
    from mixlab.utils.threads import available_threads

    console = Console()
    n, why = (threads, "--threads") if threads else available_threads()
    if n is not None:
        import torch

        torch.set_num_threads(n)
    console.print(f"threads: {n if n is not None else 'library default'} ({why})")
    res = run_demo(
        workspace, model=model, tokens=tokens, stages=stages, mixer=mixer, influence_tokens=influence_tokens,
        targets=tuple(target or (DEFAULT_TARGET,)), seed=seed, cache_dir=cache_dir,
    )  # fmt: skip
    domains = list(res.pipeline.stages[0].mixture.to_dict())
    mix = Table(title=f"{escape(mixer)}: mixture per stage")
    mix.add_column("stage")
    mix.add_column("from step", justify="right")
    for d in domains:
        mix.add_column(d, justify="right")
    mix.add_column("influence stability", justify="right")
    for rec in res.pipeline.stages:
        stab = rec.influence.stability if rec.influence is not None else math.nan
        weights = rec.mixture.to_dict()
        mix.add_row(str(rec.stage), str(rec.start_step), *(f"{weights.get(d, 0.0):.3f}" for d in domains),
                    f"{stab:.2f}" if math.isfinite(stab) else "")
    console.print(mix)

    runs = {mixer: res.pipeline.final} | res.baselines
    keys = list(res.target_weights)
    table = Table(title="final loss (lower is better): the target set first, then the training domains")
    table.add_column("run")
    table.add_column("target loss", justify="right")
    for k in keys:
        table.add_column(f"{k} ({res.target_weights[k]:.2f})", justify="right")
    table.add_column("avg over domains", justify="right")
    best = min(res.target_loss.values())
    for name, final in runs.items():
        tl = res.target_loss[name]
        table.add_row(
            escape(name), ("[bold green]" if tl == best else "") + f"{tl:.4f}",
            *(f"{final[k]:.4f}" for k in keys), f"{sum(final[d] for d in domains) / len(domains):.4f}",
        )  # fmt: skip
    console.print(table)
    from mixlab.report.html import write_report

    # one page: the dynamic run (its mixture per stage, Group Influence) against its baselines
    page = write_report([res.pipeline.run_dir, *res.baseline_dirs.values()], out=res.pipeline.run_dir / "report.html")
    console.print(f"runs and run store: {res.workspace}  (dynamic run: {res.pipeline.run_dir})")
    console.print(f"mixture plot: {res.mixture_png}")
    console.print(f"report (the runs compared, mixture per stage, loss curves, Group Influence): {page}")
    console.print(f"demo took {res.seconds:.0f} s")
