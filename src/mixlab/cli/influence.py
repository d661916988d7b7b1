"""``mixlab influence``: measure the Group Influence matrix at a run's newest checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from mixlab.errors import ConfigError, MixlabError

log = logging.getLogger(__name__)


def _run_dir(run: str) -> Path:
    p = Path(run)
    if p.is_dir():
        return p
    from mixlab.store import default_workspace

    q = default_workspace() / "runs" / run
    if q.is_dir():
        return q
    raise MixlabError(
        f"run {run!r}: no such run directory (looked at {p} and {q}); give a run dir or a run id"
    )


def _checkpoint_optimizer(model: Any, run_dir: Path, cfg: Any) -> Any:
    """The run's AdamW with the newest checkpoint's state (param groups as the trainer builds them)."""
    import torch

    from mixlab.train import checkpoint as ckpt_io

    latest = ckpt_io.latest_checkpoint(run_dir / "checkpoints")
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )
    try:
        opt.load_state_dict(ckpt_io.torch_load_safe(latest / "optimizer.pt"))
    except (ValueError, KeyError) as exc:
        raise MixlabError(
            f"{latest}/optimizer.pt does not match the model ({exc}); use --preconditioner identity or diag-gn"
        ) from None
    return opt


def influence(
    run: Annotated[
        str, typer.Argument(help="Run directory (or run id under the workspace) with a checkpoint.")
    ],
    corpus: Annotated[
        Path | None, typer.Option(help="Prepared corpus (default: the one the run trained on).")
    ] = None,
    tokens_per_domain: Annotated[int, typer.Option(help="Training tokens sampled per domain.")] = 65536,
    target_tokens: Annotated[
        int | None, typer.Option(help="Validation tokens per target domain (default: --tokens-per-domain).")
    ] = None,
    targets: Annotated[
        str | None, typer.Option(help="Comma-separated target (validation) domains; default all.")
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="PATH[=WEIGHT] (repeatable): an evaluation-only target (text file or "
                                      "directory, builtin:pydoc, domain:NAME) measured as a column; replaces --targets."),
    ] = None,
    preconditioner: Annotated[
        str, typer.Option(help="identity, adam, diag-gn, kfac, ekfac or exact (small models).")
    ] = "adam",
    projection_dim: Annotated[
        int | None, typer.Option(help="Sketch gradients to about this many dimensions (saves memory).")
    ] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence (default: the run's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per batch (default: the run's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampled batches and the sketch.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto.")] = "auto",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the result as JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure how much up-weighting each training domain lowers each target domain's loss.

    Loads the run's newest checkpoint (and, for the Adam preconditioner, its optimizer state) and
    prints the Group Influence matrix I(train -> target) = g_target^T P g_train (positive = helpful)
    with standard errors; entries with |z| < 2 are dimmed as noise.

    Example: mixlab influence mixlab-workspace/runs/train-1a2b3c --tokens-per-domain 32768 -o infl.json

    Example: mixlab influence RUN --target builtin:pydoc --target my_eval.txt
    """
    import torch

    from mixlab.data import Corpus
    from mixlab.influence import measure_group_influence
    from mixlab.train import load_trained_model

    root = _run_dir(run)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model, cfg, step = load_trained_model(root, device=dev)
    corpus_path = corpus or (Path(cfg.corpus) if cfg.corpus else None)
    if corpus_path is None:
        raise ConfigError(f"{root}: the run does not name its corpus; pass --corpus PATH")
    data = Corpus.open(corpus_path)
    optimizer = _checkpoint_optimizer(model, root, cfg) if preconditioner == "adam" else None
    target_list = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    sources = None
    if target:
        from mixlab.data.targets import load_targets

        tset = load_targets(data, target)
        target_list, sources = tset.keys, tset.eval_sources()
    log.info("measuring Group Influence at step %d of %s", step, root)
    gi = measure_group_influence(
        model,
        data,
        target_domains=target_list,
        tokens_per_domain=tokens_per_domain,
        target_tokens_per_domain=target_tokens,
        seq_len=seq_len or cfg.seq_len,
        batch_size=batch_size or cfg.batch_size,
        preconditioner=preconditioner,
        optimizer=optimizer,
        projection_dim=projection_dim,
        seed=seed,
        progress=not as_json,
        target_sources=sources,
    )
    record = {**gi.to_dict(), "run": str(root), "step": step}
    if out is not None:
        from mixlab.utils.io import atomic_write_json

        atomic_write_json(out, record)
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    _print_table(gi, step)


def _print_table(gi: Any, step: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Group Influence at step {step} ({gi.preconditioner}; {gi.tokens:,} tokens, {gi.seconds:.1f}s)",
        caption="rows: training domain up-weighted; columns: target loss; positive = helpful; dim = |z| < 2 "
        f"(no ± below 8 batches); split-half stability {gi.stability:.2f} (warn below 0.8)",
    )
    table.add_column("train \\ target")
    for t in gi.target_domains:
        table.add_column(t, justify="right")
    z = gi.z_scores()
    for i, d in enumerate(gi.train_domains):
        cells = []
        for j in range(len(gi.target_domains)):
            se = gi.stderr[i, j]
            text = f"{gi.matrix[i, j]:.3g}" + ("" if se != se else f" ± {se:.2g}")
            cells.append(f"[dim]{text}[/dim]" if not abs(z[i, j]) >= 2 else text)
        table.add_row(d, *cells)
    Console().print(table)
