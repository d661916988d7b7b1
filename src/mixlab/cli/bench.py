"""``mixlab bench``: compare mixing methods by the model they give for the compute spent choosing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    from mixlab.pipeline.bench import split_methods

    return split_methods(value) or None


def bench(
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated methods (default: uniform,natural,unimax,doremi,regmix,bimix,"
                          "bimix-entropy-ce,tikmix-d,tikmix-m); NAME\\[key=value,...] benchmarks a variant "
                          "as its own row, e.g. 'tikmix-d\\[pareto=false]'."),
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="Prepared corpus directory (default: the built-in corpus).")
    ] = None,
    scale: Annotated[str, typer.Option(help="Size: tiny (tests, ~minutes), default (~45 min on a 2-core CPU), gpu.")] = "default",
    seeds: Annotated[int | None, typer.Option(min=1, help="Target runs per method (default from the scale: 3).")] = None,
    seed: Annotated[int, typer.Option(help="Base seed.")] = 0,
    target_model: Annotated[str | None, typer.Option(help="Target model preset (overrides the scale).")] = None,
    target_tokens: Annotated[int | None, typer.Option(min=1, help="Target tokens per run (overrides the scale).")] = None,
    proxy_model: Annotated[str | None, typer.Option(help="Proxy model preset (overrides the scale).")] = None,
    proxy_tokens: Annotated[int | None, typer.Option(min=1, help="Tokens per proxy run (overrides the scale).")] = None,
    track: Annotated[
        str, typer.Option(help="target: the weighted loss of the target set (default); balanced: the mean "
                               "validation loss over the training domains.")
    ] = "target",
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="PATH[=WEIGHT] (repeatable): the target set, evaluated and never trained "
                                      "on: a text file or directory, builtin:pydoc (the default) or domain:NAME."),
    ] = None,
    target_domains: Annotated[
        str | None, typer.Option(help="Comma-separated training domains (validation splits) as the target set.")
    ] = None,
    oracle_candidates: Annotated[
        int | None, typer.Option(min=0, help="Static mixtures the oracle row picks from (default from the scale; 0: none).")
    ] = None,
    controls: Annotated[
        bool | None, typer.Option("--controls/--no-controls", help="Control rows for dynamic methods (default from the scale).")
    ] = None,
    max_epochs: Annotated[
        float | None, typer.Option(help="Most passes over any domain, for methods and target runs.")
    ] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Workspace for the run store and runs (default: mixlab's workspace).")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Results JSON (a list, one object per method); .csv and .png go next to it.")
    ] = Path("bench.json"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show each training run's progress bar.")] = False,
) -> None:
    """Run every selected method's whole choosing procedure, train a target model on its mixture with
    paired seeds, and compare the track's target loss (with the per-seed difference to uniform and its
    95% interval), average and worst-domain loss against the compute spent choosing (FLOPs, proxy
    tokens, seconds). An oracle row (the best of N static mixtures at target scale) shows the headroom,
    printed in seed standard deviations. Re-running reuses finished choices and runs.

    Example: mixlab bench --scale tiny --methods uniform,natural,doremi --out bench.json

    Example: mixlab bench --track balanced --out balanced.json

    Example: mixlab bench --target my_eval.txt --target builtin:pydoc=0.5

    Example: mixlab bench --methods 'regmix,tikmix-d,tikmix-d[pareto=false]'
    """
    import logging

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mixlab.errors import ConfigError
    from mixlab.mixers import mixer_class
    from mixlab.pipeline.bench import (
        TRACKS,
        BenchConfig,
        bench_table,
        headroom_message,
        parse_method_spec,
        run_bench,
        write_outputs,
    )

    if track not in TRACKS:
        raise ConfigError(f"bench --track {track!r}: choose one of {list(TRACKS)}")

    # output sent to a file or a pipe has no terminal width: give the table room instead of rich's 80
    console = Console() if sys.stdout.isatty() else Console(width=180)
    cfg = BenchConfig(
        corpus=str(corpus) if corpus else None,
        methods=_split(methods),
        scale=scale,
        seeds=seeds,
        seed=seed,
        target_model=target_model,
        target_tokens=target_tokens,
        proxy_model=proxy_model,
        proxy_tokens=proxy_tokens,
        track=track,
        targets=list(target) if target else None,
        target_domains=_split(target_domains),
        oracle_candidates=oracle_candidates,
        controls=controls,
        max_epochs=max_epochs,
        workspace=str(workspace) if workspace else None,
        device=device,
        progress=progress,
    )
    spec, method_list = cfg.resolved()
    dynamic = sum(mixer_class(parse_method_spec(m)[0]).dynamic for m in method_list)
    total = len(method_list) + (spec.oracle_candidates > 0) + (2 * dynamic if spec.controls else 0)
    log = logging.getLogger("mixlab.bench")
    with Progress(
        TextColumn("[bold]bench"), BarColumn(), TextColumn("{task.completed}/{task.total} rows"),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True,
        disable=progress,
    ) as bar:
        task = bar.add_task("", total=total)

        def on_event(msg: str) -> None:
            bar.update(task, description=escape(msg))
            log.info(msg)

        def on_method(name: str, row: dict | None, error: str | None) -> None:
            bar.advance(task)
            if error:
                console.print(f"[yellow]skipped {escape(name)}:[/] {escape(error)}")

        summary: dict = {}
        rows = run_bench(cfg, on_event=on_event, on_method=on_method, summary=summary)
    what = ", ".join(f"{t['key']} ({t['weight']:.2f})" for t in summary.get("targets") or []) or "mean over domains"
    console.print(bench_table(rows, title=f"mixlab bench ({scale}, {track} track: {escape(what)})"))
    text, small = headroom_message(summary)
    console.print(f"[bold red]WARNING: {escape(text)}[/]" if small else escape(text))
    paths = write_outputs(rows, out)
    console.print(f"wrote {paths['json']}, {paths['csv']}, {paths['png']}")


def bench_compare(
    first: Annotated[Path, typer.Argument(help="A bench.json (e.g. `mixlab bench --seed 0`).")],
    second: Annotated[Path, typer.Argument(help="Another bench.json of the same methods (e.g. `--seed 100`).")],
    out: Annotated[Path | None, typer.Option(help="Also write the comparison as JSON here.")] = None,
) -> None:
    """Check whether two bench runs rank the methods the same way.

    Each run ranks the methods both hold (not the oracle or the controls) by target loss. Printed:
    both rankings, Spearman's rho and Kendall's tau between them, and the verdict. A pair of methods
    that both runs separate (the paired 95% interval of their difference excludes 0) must keep its
    order; a pair within the seed noise of either run may swap without making the ranking unstable,
    and is listed as such. Exit code 0 when stable, 1 when a separated pair swaps.

    Example: mixlab bench-compare bench-seed0.json bench-seed100.json
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from mixlab.pipeline.bench import compare_rankings
    from mixlab.report.data import parse_bench
    from mixlab.utils.io import atomic_write_json, check_output_path, read_json

    if out is not None:
        out = check_output_path(out)
    runs = [parse_bench(read_json(p), str(p)) for p in (first, second)]
    cmp = compare_rankings(*runs)
    losses = [{r.method: r.target_loss for r in rows} for rows in runs]
    console = Console() if sys.stdout.isatty() else Console(width=180)
    table = Table(title=f"ranking by target loss: {first.name} vs {second.name}")
    table.add_column("method", overflow="fold")
    for name in (first.name, second.name):
        table.add_column(f"rank ({name})", justify="right")
        table.add_column(f"loss ({name})", justify="right")
    for i, m in enumerate(cmp["methods"]):
        table.add_row(Text(m), f"{cmp['ranks'][0][i]:g}", f"{losses[0][m]:.4f}", f"{cmp['ranks'][1][i]:g}",
                      f"{losses[1][m]:.4f}")  # fmt: skip
    console.print(table)
    console.print(f"Spearman {cmp['spearman']:.3f}, Kendall {cmp['kendall']:.3f}; "
                  f"{cmp['separated_in_both']} of {len(cmp['pairs'])} pairs separated in both runs")  # fmt: skip
    for x, y in cmp["swaps_within_noise"]:
        console.print(Text(f"swapped within the seed noise of a run: {x} / {y}"))
    for x, y in cmp["discordant"]:
        console.print(Text(f"SWAPPED although both runs separate them: {x} / {y}", style="bold red"))
    console.print("ranking stable" if cmp["stable"] else "[bold red]ranking NOT stable[/]")
    if out is not None:
        atomic_write_json(out, cmp)
        console.print(f"wrote {out}")
    if not cmp["stable"]:
        raise typer.Exit(1)
