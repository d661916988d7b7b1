"""The ``mixlab`` command.

``COMMANDS`` is the whole CLI: a subcommand name -> ``"module:attribute"``, where the attribute is a
typed function (its docstring is the ``--help`` text) or a ``typer.Typer`` group. Command modules
import heavy libraries (torch, lightgbm) inside the function, so ``mixlab --help`` is instant.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from rich.console import Console

from mixlab.errors import MixlabError

COMMANDS: dict[str, str] = {
    "demo": "mixlab.cli.demo:demo",
    "doctor": "mixlab.cli.doctor:doctor",
    "corpus": "mixlab.cli.corpus:app",
    "prepare": "mixlab.cli.corpus:prepare",
    "train": "mixlab.cli.train:train",
    "eval": "mixlab.cli.train:evaluate",
    "runs": "mixlab.cli.runs:app",
    "run": "mixlab.cli.pipeline:run",
    "influence": "mixlab.cli.influence:influence",
    "sweep": "mixlab.cli.sweep:sweep",
    "predict": "mixlab.cli.predict:predict",
    "propose": "mixlab.cli.predict:propose",
    "fit-law": "mixlab.cli.laws:fit_law",
    "entropy": "mixlab.cli.laws:entropy",
    "bench": "mixlab.cli.bench:bench",
    "export": "mixlab.cli.export:export",
    "report": "mixlab.cli.report:report",
}

console = Console(stderr=True)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="mixlab",
        help="Find the best data mixture for LM pre-training, and keep adjusting it while the model trains.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, target in COMMANDS.items():
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name=name)(obj)
    return app


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = build_app()
    try:
        app(args=argv, standalone_mode=True)
    except MixlabError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
