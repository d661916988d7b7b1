"""``mixlab train`` and ``mixlab eval``: train a model on a mixture, evaluate a run per domain."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mixlab.errors import ConfigError

log = logging.getLogger(__name__)
console = Console()


def _preset_names() -> str:
    """The model presets' names for ``--help``, read from the presets file's top-level keys (not
    through ``mixlab.model``, which imports torch and would make ``--help`` slow)."""
    path = Path(__file__).resolve().parents[1] / "model" / "presets.yaml"
    try:
        return ", ".join(re.findall(r"^([A-Za-z0-9][\w.-]*):", path.read_text(encoding="utf-8"), re.M))
    except OSError:
        return "see mixlab doctor"


def _loss_table(title: str, losses: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("domain")
    table.add_column("val loss", justify="right")
    for domain, loss in losses.items():
        table.add_row(domain, f"{loss:.4f}")
    if losses:
        table.add_row("[bold]mean", f"[bold]{sum(losses.values()) / len(losses):.4f}")
    return table


def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run file (YAML) with TrainConfig fields.")] = None,
    corpus: Annotated[str | None, typer.Option(help="Prepared corpus directory.")] = None,
    model: Annotated[str | None, typer.Option(help=f"Model preset: {_preset_names()}.")] = None,
    mixture: Annotated[
        str | None, typer.Option(help="natural, uniform, a mixture/schedule file, or web=0.7,code=0.3.")
    ] = None,
    tokens: Annotated[int | None, typer.Option(help="Training token budget.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per micro-batch per process.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per optimizer step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    lr_schedule: Annotated[str | None, typer.Option(help="cosine, wsd or constant.")] = None,
    eval_interval: Annotated[int | None, typer.Option(help="Evaluate every N steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and data order.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="Use torch.compile.")] = None,
    workspace: Annotated[str | None, typer.Option(help="Workspace folder (store and runs).")] = None,
    out_dir: Annotated[str | None, typer.Option(help="Explicit run directory.")] = None,
    run_name: Annotated[str | None, typer.Option(help="Run id instead of the config hash.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a GPT (or HF model) on a mixture or schedule for a token budget; resumes automatically.

    Flags override the run file. Re-running the same config resumes it from its last checkpoint
    (or reports the finished run). Under ``torchrun`` it trains with DistributedDataParallel.

    Example: mixlab train --corpus corpus/ --model tiny-1m --mixture web=0.7,code=0.3 --tokens 2000000
    """
    from mixlab.train import TrainConfig, Trainer

    data: dict[str, Any] = {}
    if config is not None:
        data = TrainConfig.from_yaml(config).model_dump(exclude_unset=True)
    flags = {
        "corpus": corpus, "model": model, "mixture": mixture, "tokens": tokens,
        "seq_len": seq_len, "batch_size": batch_size, "grad_accum": grad_accum, "lr": lr,
        "lr_schedule": lr_schedule, "eval_interval": eval_interval, "seed": seed, "device": device,
        "dtype": dtype, "compile": compile, "workspace": workspace, "out_dir": out_dir, "run_name": run_name,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    data["progress"] = progress and not json_out
    cfg = TrainConfig.parse(data, where=str(config) if config else "mixlab train")
    trainer = Trainer(cfg)
    log.info("run %s in %s: %d steps of %d tokens", trainer.run_id, trainer.run_dir, trainer.total_steps,
             trainer.tokens_per_step)
    result = trainer.fit()
    if trainer.dist.rank != 0:
        return
    if json_out:
        typer.echo(json.dumps({"run_id": result.run_id, "run_dir": str(result.run_dir), "steps": result.steps,
                               "tokens": result.tokens, "flops": result.flops, "seconds": result.seconds,
                               "final": result.final}))
        return
    console.print(_loss_table(f"run {result.run_id} (step {result.steps})", result.final))
    tps = result.tokens / result.seconds if result.seconds > 0 else float("nan")
    console.print(f"{result.tokens:,} tokens, {result.flops:.3g} FLOPs, {result.seconds:.1f}s ({tps:,.0f} tok/s); "
                  f"run dir {result.run_dir}")


def evaluate(
    run: Annotated[str, typer.Argument(help="Run id (in the workspace store) or run directory.")],
    corpus: Annotated[str | None, typer.Option(help="Corpus to evaluate on (default: the run's).")] = None,
    batches: Annotated[int | None, typer.Option(help="Validation batches per domain.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per batch.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence (default: the run's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed choosing the validation windows.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    workspace: Annotated[str | None, typer.Option(help="Workspace whose store knows the run id.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the losses as JSON.")] = False,
) -> None:
    """Per-domain validation loss of a run's latest checkpoint on fixed batches.

    Example: mixlab eval train-1a2b3c4d5e6f --batches 16
    """
    from mixlab.data.corpus import Corpus
    from mixlab.store import RunStore, default_workspace
    from mixlab.train import evaluate_domains, load_trained_model

    run_dir = Path(run)
    if not (run_dir / "model.json").is_file():
        if run_dir.exists() or "/" in run:
            raise ConfigError(f"{run}: not a run directory (no model.json); give a run id or a run's directory")
        store = RunStore.existing(Path(workspace) if workspace else default_workspace())
        record = store.get_run(run)
        if not record.get("run_dir"):
            raise ConfigError(f"run {run!r} has no run directory recorded; pass the directory instead")
        run_dir = Path(record["run_dir"])
    model, cfg, step = load_trained_model(run_dir, device=device)
    corpus_path = corpus or cfg.corpus
    if not corpus_path:
        raise ConfigError("the run's config names no corpus; pass --corpus")
    data = Corpus.open(corpus_path)
    vocab = model.config.vocab_size
    if data.vocab_size > vocab:
        raise ConfigError(f"{corpus_path}: vocabulary of {data.vocab_size} ids does not fit the model's {vocab}")
    losses = evaluate_domains(
        model, data, seq_len=seq_len or cfg.seq_len, batches=batches or cfg.eval_batches,
        batch_size=batch_size or cfg.eval_batch_size or cfg.batch_size,
        seed=cfg.seed if seed is None else seed, device=device,
    )
    if json_out:
        typer.echo(json.dumps({"run_dir": str(run_dir), "step": step, "losses": losses}))
    else:
        console.print(_loss_table(f"{run_dir.name} at step {step}", losses))
