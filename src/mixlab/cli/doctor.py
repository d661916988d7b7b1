"""``mixlab doctor``: what mixlab sees on this machine (versions, device, threads, cache and store).

:func:`collect` gathers the facts as ``(section, item, value)`` rows so they can be printed as a rich
table, emitted as JSON, or attached to a bug report. Every probe is guarded: a missing optional
library or an unfinished subsystem shows up as a row ("not installed", "unavailable: ...") instead of
stopping the command, because doctor is what users run when something is already wrong.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer

Row = tuple[str, str, str]

PACKAGES = ("mixlab", "torch", "numpy", "scipy", "lightgbm", "transformers", "datasets", "ray", "tokenizers")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _probe(fn: Any) -> str:
    try:
        value = fn()
    except Exception as exc:  # doctor reports every failure as a row, never as a traceback
        return f"unavailable: {type(exc).__name__}: {exc}"
    return str(value)


def _first_attr(module_name: str, names: tuple[str, ...]) -> Any:
    module = importlib.import_module(module_name)
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"{module_name} has none of {', '.join(names)}")


def cache_dir() -> Path:
    """The user cache folder (``MIXLAB_CACHE`` overrides platformdirs' ``user_cache_dir("mixlab")``)."""
    import platformdirs

    env = os.environ.get("MIXLAB_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("mixlab"))


def _store_location() -> str:
    fn = _first_attr("mixlab.store", ("default_store_path", "default_path", "store_path", "DEFAULT_STORE"))
    return str(fn() if callable(fn) else fn)


def _corpus_status() -> str:
    fn = _first_attr("mixlab.data", ("builtin_corpus_status", "builtin_status", "corpus_status"))
    status = fn()
    if isinstance(status, dict):
        return ", ".join(f"{k}={v}" for k, v in status.items())
    return str(status)


def _torch_rows() -> list[Row]:
    try:
        import torch
    except ImportError:
        return [("device", "torch", "not installed")]
    rows: list[Row] = [("device", "cuda available", str(torch.cuda.is_available()))]
    if torch.cuda.is_available():
        rows.append(("device", "cuda devices", str(torch.cuda.device_count())))
        for i in range(torch.cuda.device_count()):
            rows.append(("device", f"cuda:{i}", torch.cuda.get_device_name(i)))
        rows.append(("device", "cuda version", str(torch.version.cuda)))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        rows.append(("device", "mps available", "True"))
    rows.append(("device", "default device", "cuda" if torch.cuda.is_available() else "cpu"))
    rows.append(("threads", "torch intra-op threads", str(torch.get_num_threads())))
    rows.append(("threads", "torch inter-op threads", str(torch.get_num_interop_threads())))
    return rows


def collect() -> list[Row]:
    """All diagnostics as ``(section, item, value)`` rows, in display order."""
    rows: list[Row] = [
        ("versions", "python", f"{platform.python_version()} ({sys.executable})"),
        ("versions", "platform", platform.platform()),
    ]
    rows += [("versions", pkg, _version(pkg)) for pkg in PACKAGES]
    rows += _torch_rows()
    rows.append(("threads", "cpu count", str(os.cpu_count())))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        rows.append(("threads", var, os.environ.get(var, "unset")))
    cache = cache_dir()
    rows.append(("paths", "cache dir", f"{cache} ({'exists' if cache.is_dir() else 'not created yet'})"))
    rows.append(("paths", "run store", _probe(_store_location)))
    rows.append(("data", "built-in corpus", _probe(_corpus_status)))
    chromium = next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    rows.append(("tools", "chromium (report tests)", chromium or "not found"))
    return rows


def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the diagnostics as JSON instead of a table.")
    ] = False,
) -> None:
    """Show versions, the torch device, threads, cache and store locations and the built-in corpus.

    Run it first when something fails, and paste its output into bug reports.

    Example:

        mixlab doctor
    """
    rows = collect()
    if as_json:
        typer.echo(json.dumps([{"section": s, "item": i, "value": v} for s, i, v in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mixlab doctor", show_lines=False)
    table.add_column("section", style="cyan")
    table.add_column("item", style="bold")
    table.add_column("value", overflow="fold")
    last = None
    for section, item, value in rows:
        style = "yellow" if value.startswith(("unavailable", "not installed", "not found")) else None
        table.add_row(section if section != last else "", item, value, style=style)
        last = section
    Console(width=max(100, shutil.get_terminal_size().columns)).print(table)
