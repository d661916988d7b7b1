"""``mixlab sweep``: proxy runs on RegMix-sampled mixtures, on a local process pool or Ray."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def sweep(
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Prepared corpus directory (mixlab prepare).")],
    n: Annotated[int, typer.Option("--n", "-n", help="Number of mixtures (one proxy run each).")] = 8,
    tokens: Annotated[int, typer.Option("--tokens", help="Training tokens per proxy run.")] = 1_000_000,
    model: Annotated[str, typer.Option("--model", help="Proxy model preset.")] = "tiny-1m",
    name: Annotated[str, typer.Option("--name", help="Sweep name (folder and run-name prefix).")] = "sweep",
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace (default: mixlab's).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="local (process pool) or ray.")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster HOST:PORT (default: a local Ray instance).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Local engine: proxy runs at once.")] = 1,
    num_cpus: Annotated[float, typer.Option("--num-cpus", help="Ray: CPUs per proxy task.")] = 1.0,
    num_gpus: Annotated[float, typer.Option("--num-gpus", help="Ray: GPUs per proxy task.")] = 0.0,
    seq_len: Annotated[int, typer.Option("--seq-len")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    max_epochs: Annotated[float, typer.Option("--max-epochs", help="Availability cap on the drawn mixtures (RegMix: 15).")] = 15.0,
    retries: Annotated[int, typer.Option("--retries", help="Extra attempts for a failed or killed run.")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    config: Annotated[Path | None, typer.Option("--config", help="YAML/JSON sweep config; flags given on the command line are overridden by it.")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="PATH[=WEIGHT] (repeatable): an evaluation-only target every proxy also evaluates (text file or directory, builtin:pydoc); its loss is a target:NAME column of losses.csv.")] = None,
) -> None:
    """Train one small proxy model per sampled mixture and record the results.

    Mixtures follow RegMix's scheme (Dirichlet draws around the natural token distribution at
    temperature 0.5, a spread of sparsity, availability caps). Results go to the run store and to
    <workspace>/sweeps/<name>/ (state.json, plus mixtures.csv and losses.csv for ``mixlab predict``).
    Re-running the same command skips finished runs; failed or killed runs are retried.

    Example:

        mixlab sweep --corpus data/corpus --n 64 --tokens 2000000 --workers 2 --name pile64
        mixlab sweep --corpus data/corpus --n 512 --engine ray --address 10.0.0.1:6379 --num-gpus 1
    """
    from rich.console import Console

    from mixlab.store import default_workspace
    from mixlab.sweep import Sweep, SweepConfig, load_config

    data = dict(
        corpus=str(corpus), workspace=str(workspace or default_workspace()), name=name, n=n, tokens=tokens,
        model=model, seq_len=seq_len, batch_size=batch_size, lr=lr, seed=seed, max_epochs=max_epochs,
        engine=engine, workers=workers, address=address, num_cpus=num_cpus, num_gpus=num_gpus, retries=retries,
    )
    if target:
        from mixlab.data.targets import resolve_target_paths

        data["targets"] = resolve_target_paths(target, Path.cwd())
    if config is not None:
        data.update(load_config(config))
    cfg = SweepConfig.parse(data, where=str(config) if config else "mixlab sweep")
    result = Sweep(cfg).run(progress=True)
    console = Console(stderr=True)
    console.print(
        f"sweep {cfg.name}: {len(result.finished)} finished ({len(result.skipped)} already done), "
        f"{len(result.failed)} failed -> {result.directory}"
    )
    if result.failed:
        for i in result.failed:
            console.print(f"  run {i}: {result.state['runs'][str(i)].get('error', '')}")
        raise typer.Exit(1)
