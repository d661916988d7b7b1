"""The ``mixlab`` command.

``COMMANDS`` is the whole CLI: a subcommand name -> ``"module:attribute"``, where the attribute is a
typed function (its docstring is the ``--help`` text) or a ``typer.Typer`` group. Command modules
import heavy libraries (torch, lightgbm) inside the function, so ``mixlab --help`` is instant.

:func:`main` is the CLI's one error boundary. A :class:`~mixlab.errors.MixlabError`, or a failure of
the operating system or a file format on the user's input (a missing, unreadable or read-only path, a
full disk, a file that is not UTF-8, a corrupt database), ends the command with a one-paragraph
``error:`` naming the file and what to do, and exit code 2. Anything else is a bug in mixlab: a
one-line ``internal error`` and exit code 1. ``--debug`` (or ``MIXLAB_DEBUG=1``) prints the traceback
as well. A SIGTERM is turned into ``KeyboardInterrupt``, so a run stopped by ``kill`` is recorded as
``interrupted`` like one stopped with Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import inspect
import logging
import os
import signal
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperOption

from mixlab.errors import MixlabError
from mixlab.utils.io import check_output_path

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
    "bench-compare": "mixlab.cli.bench:bench_compare",
    "export": "mixlab.cli.export:export",
    "report": "mixlab.cli.report:report",
}

console = Console(stderr=True)
DEBUG_ENV = "MIXLAB_DEBUG"
_state = {"debug": False}  # --debug of the command being run


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """A flag (``--json``, ``--help``, ``--compile/--no-compile``) takes no value, so ``--help`` shows no
    ``<bool>`` type beside it; options that take a value keep theirs."""
    return None if self.is_flag else _typer_display_type(self, ctx)


_typer_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help=f"On an error, also print the traceback (or set {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Find the best data mixture for LM pre-training, and keep adjusting it while the model trains."""
    _state["debug"] = debug


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="mixlab",
        help="Find the best data mixture for LM pre-training, and keep adjusting it while the model trains.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for name, target in COMMANDS.items():
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
        if isinstance(obj, typer.Typer):
            for cmd in obj.registered_commands:
                if cmd.callback is not None and not hasattr(cmd.callback, "__wrapped__"):
                    cmd.help = cmd.help or reflow_help(inspect.getdoc(cmd.callback))
                    cmd.callback = _checks_outputs(cmd.callback)
            app.add_typer(obj, name=name)
        else:
            app.command(name=name, help=reflow_help(inspect.getdoc(obj)))(_checks_outputs(obj))
    return app


def reflow_help(doc: str | None) -> str | None:
    """A command's docstring as ``--help`` text that reflows to the terminal's width.

    Docstrings are wrapped at the source's line length; rich keeps those hard breaks, so in an
    80-column terminal every paragraph came out ragged. Prose paragraphs (no indented line) become
    one line each, which rich then wraps; paragraphs with indented lines (YAML, commands) keep their
    layout. Square brackets are escaped: ``[builtin:pydoc, ...]`` in an example is text, not rich markup.
    """
    if not doc:
        return doc
    paragraphs = doc.strip().split("\n\n")
    out = []
    for para in paragraphs:
        lines = para.split("\n")
        if any(line.startswith((" ", "\t")) for line in lines):
            out.append(para)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return escape("\n\n".join(out))


OUTPUT_OPTIONS = {"out": "--out", "output": "--output", "plot": "--plot", "save": "--save", "export": "--export"}
"""Parameters that name a file a command writes; :func:`mixlab.utils.io.check_output_path` checks each
before the command starts (the output-path policy: the folder must exist, the path must be writable and
not a folder), so a typo costs nothing instead of the whole computation."""


def _checks_outputs(fn: Any) -> Any:
    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        for key, flag in OUTPUT_OPTIONS.items():
            if isinstance(kwargs.get(key), Path):
                check_output_path(kwargs[key], what=flag)
        return fn(*args, **kwargs)

    return command


def _debug() -> bool:
    return _state["debug"] or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _os_error(exc: OSError) -> str:
    """One paragraph for an operating-system failure on a path the user gave (or one derived from it)."""
    path = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "check its permissions, or choose a writable path (--out, --workspace, output_dir)"
    elif exc.errno == errno.ENOENT:
        todo = "check the path; a folder on the way to it does not exist"
    elif exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        todo = "free some disk space, or choose a path on another disk"
    elif exc.errno in (errno.EISDIR, errno.ENOTDIR):
        todo = "a folder was given where a file is expected, or the other way round"
    else:
        todo = "check the path and retry"
    return f"{path}: {reason}; {todo}"


def user_error(exc: BaseException) -> str | None:
    """The message for an error the user can fix (exit 2), or None when ``exc`` is a bug in mixlab."""
    from safetensors import SafetensorError

    if isinstance(exc, MixlabError):
        return str(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, UnicodeError):
        return f"an input file is not UTF-8 text ({exc}); save it as UTF-8"
    if isinstance(exc, sqlite3.Error):
        return (f"the run store cannot be used ({exc}); check that the workspace folder and its mixlab.db are "
                "writable and not corrupt")
    if isinstance(exc, SafetensorError):
        return f"a checkpoint's weights file is corrupt ({exc}); delete that checkpoint folder"
    if isinstance(exc, MemoryError):
        return "out of memory; use a smaller model, batch or --tokens-per-domain"
    return None


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            signal.signal(signal.SIGTERM, _terminate)
    app = build_app()
    _state["debug"] = False
    try:
        app(args=argv, standalone_mode=True)
    except Exception as exc:  # noqa: BLE001 - the CLI's one error boundary (see the module docstring)
        message = user_error(exc)
        if _debug():
            traceback.print_exc()
        if message is not None:
            console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
            sys.exit(2)
        console.print(
            f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))[:500]}. This is a bug "
            f"in mixlab; rerun with --debug (or {DEBUG_ENV}=1) for the traceback and report it.",
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
