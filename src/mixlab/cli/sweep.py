"""``mixlab sweep``: proxy runs on RegMix-sampled mixtures, on a local process pool or Ray."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def sweep(
    corpus: Annotated[Path | None, typer.Option("--corpus", "-c", help="Prepared corpus directory (mixlab prepare).")] = None,
    n: Annotated[int | None, typer.Option("--n", "-n", help="Number of mixtures (one proxy run each). [default: 8]")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", help="Training tokens per proxy run. [default: 1000000]")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Proxy model preset. [default: tiny-1m]")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Sweep name (folder and run-name prefix). [default: sweep]")] = None,
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace (default: $MIXLAB_WORKSPACE or ./mixlab-workspace).")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="local (process pool) or ray. [default: local]")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster HOST:PORT (default: a local Ray instance).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local engine: proxy runs at once. [default: 1]")] = None,
    num_cpus: Annotated[float | None, typer.Option("--num-cpus", help="Ray: CPUs per proxy task. [default: 1.0]")] = None,
    num_gpus: Annotated[float | None, typer.Option("--num-gpus", help="Ray: GPUs per proxy task. [default: 0.0]")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per training sequence of each proxy. [default: 128]")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Sequences per batch of each proxy. [default: 8]")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate of the proxies. [default: 0.001]")] = None,
    max_epochs: Annotated[float | None, typer.Option("--max-epochs", help="Availability cap on the drawn mixtures (RegMix: 15). [default: 15.0]")] = None,
    retries: Annotated[int | None, typer.Option("--retries", help="Extra attempts for a failed or killed run. [default: 1]")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the mixture draws; every proxy also trains with it. [default: 0]")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML/JSON sweep config (SweepConfig fields); flags given on the command line override it, as in `mixlab train`.")] = None,
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

    data = load_config(config) if config is not None else {}
    flags = dict(
        corpus=None if corpus is None else str(corpus), workspace=None if workspace is None else str(workspace),
        name=name, n=n, tokens=tokens, model=model, seq_len=seq_len, batch_size=batch_size, lr=lr, seed=seed,
        max_epochs=max_epochs, engine=engine, workers=workers, address=address, num_cpus=num_cpus,
        num_gpus=num_gpus, retries=retries,
    )
    data.update({k: v for k, v in flags.items() if v is not None})  # flags override the config file
    data.setdefault("workspace", str(default_workspace()))
    if target:
        from mixlab.data.targets import resolve_target_paths

        data["targets"] = resolve_target_paths(target, Path.cwd())
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
