"""``mixlab run``: the dynamic stage-by-stage pipeline."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    config: Path = typer.Option(..., "--config", "-c", help="Pipeline YAML: a `train:` section plus mixer settings."),
    mixer: str = typer.Option(None, help="Override the config's mixer (e.g. tikmix-d, tikmix-m, bimix)."),
    stages: int = typer.Option(None, help="Override the number of stages."),
    export: Path = typer.Option(None, help="Also write the resulting schedule here (.yaml or .json)."),
    target: list[str] = typer.Option(
        None, "--target", help="PATH[=WEIGHT] (repeatable): an evaluation-only target the mixer optimises "
        "(a text file or directory, builtin:pydoc, or domain:NAME); replaces the config's targets.",
    ),
) -> None:
    """Train with a mixture that is re-chosen at every stage boundary (TiKMiX's dynamic schedule).

    The budget is split into stages; stage 0 uses the initial mixture (natural by default); at each
    boundary the run is checkpointed, the mixer measures what it needs on the live model (TiKMiX:
    Group Influence) and the same model continues on the new mixture. A killed run resumes where it
    stopped with the same schedule. The schedule can be exported and replayed on a bigger model with
    `mixlab train` or `mixlab export`.

    Example config (run.yaml):

        train: {corpus: corpus/, model: tiny-1m, tokens: 2000000, seq_len: 128, batch_size: 16}
        mixer: tikmix-d
        stages: 3
        mixer_params: {tokens_per_domain: 65536}
        targets: [builtin:pydoc, "notes.txt=2"]   # optional: what the mixture is for (never trained on)

    Example: mixlab run --config run.yaml --export schedule.yaml --target my_eval.txt
    """
    from rich.console import Console
    from rich.table import Table

    from mixlab.mixture import save_mixture
    from mixlab.pipeline.dynamic import PipelineConfig, run_pipeline

    cfg = PipelineConfig.from_yaml(config)
    updates = {k: v for k, v in {"mixer": mixer, "stages": stages}.items() if v is not None}
    if target:
        updates.update(targets=list(target), target_domains=None, target_weights=None)
    if updates:
        cfg = PipelineConfig.parse(cfg.model_dump() | updates, where=str(config))
    result = run_pipeline(cfg)
    console = Console()
    table = Table(title=f"{cfg.mixer}: schedule of run {result.run_id}")
    table.add_column("from step", justify="right")
    domains = result.schedule.domains
    for d in domains:
        table.add_column(d, justify="right")
    for st in result.schedule.stages:
        table.add_row(str(st.start_step), *(f"{st.mixture[d]:.3f}" for d in domains))
    console.print(table)
    console.print("final loss: " + ", ".join(f"{d}={v:.4f}" for d, v in result.final.items()))
    console.print(f"choosing compute: {result.compute.flops:.3g} FLOPs, {result.compute.tokens:,} tokens, "
                  f"{result.compute.seconds:.1f}s; run dir {result.run_dir}")
    if export:
        save_mixture(result.schedule, export)
        console.print(f"schedule written to {export}")
