"""``mixlab doctor``: what mixlab sees on this machine (versions, device, threads, cache and store).

:func:`collect` gathers the facts as ``(section, item, value)`` rows so they can be printed as a rich
table, emitted as JSON, or attached to a bug report. Every probe is guarded: a missing optional
library or an unfinished subsystem shows up as a row ("not installed", "unavailable: ...") instead of
stopping the command, because doctor is what users run when something is already wrong.
"""

from __future__ import annotations

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


def cache_dir() -> Path:
    """mixlab's user cache folder (platformdirs' ``user_cache_dir("mixlab")``; the built-in corpus lives there)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("mixlab"))


def _store_location() -> str:
    from mixlab.store import default_store_path, default_workspace

    path = default_store_path()
    state = "exists" if path.is_file() else "not created yet"
    return f"{path.resolve()} ({state}; workspace {default_workspace()}, set MIXLAB_WORKSPACE to move it)"


def _corpus_status() -> str:
    from mixlab.data.builtin import available_domains, builtin_spec, default_builtin_dir
    from mixlab.data.corpus import MANIFEST
    from mixlab.utils.io import read_json

    spec = builtin_spec()
    out = default_builtin_dir()
    sources = available_domains(spec)
    if not (out / MANIFEST).is_file():
        return f"not prepared yet ({len(sources)} domains available; run `mixlab corpus builtin`) at {out}"
    manifest = read_json(out / MANIFEST)
    domains = manifest.get("domains", {})
    tokens = sum(int(d.get("train", {}).get("tokens", 0)) for d in domains.values())
    stale = manifest.get("extra", {}).get("builtin_version") != spec["version"] or set(domains) != set(
        sources
    )
    state = "stale, will be rebuilt on next use" if stale else "ready"
    return f"{state}: {len(domains)} domains, {tokens:,} train tokens at {out}"


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
