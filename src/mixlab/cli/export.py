"""``mixlab export``: a mixture or schedule as a Megatron/NeMo, MosaicML, OLMo or Hugging Face blend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def export(
    source: Annotated[
        Path, typer.Argument(help="Mixture or schedule file (YAML or JSON), as written by mixlab.")
    ],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="megatron, megatron-split, nemo, mosaic, mosaic-yaml, olmo, hf, json or yaml.",
        ),
    ] = "megatron",
    prefix: Annotated[
        list[str] | None,
        typer.Option(
            "--prefix",
            "-p",
            help="DOMAIN=PATH: the data path of a domain in the target stack (repeatable; default: the "
            "domain name). In the per-split forms, '{split}' in PATH becomes train/valid/test.",
        ),
    ] = None,
    total_steps: Annotated[
        int | None, typer.Option(help="Total optimizer steps, to close the last stage's step range.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of printing.")] = None,
) -> None:
    """Export a mixture or schedule to the format your training stack reads.

    A schedule becomes one blend per stage, each introduced by "# mixlab stage K: steps A-B".

    Example:

        mixlab export best.yaml --format megatron --prefix web=/data/web_text_document --prefix code=/data/code_text_document
    """
    from mixlab.integrations.export import export_mixture, parse_prefixes, write_export
    from mixlab.mixture import load_mixture_or_schedule

    obj = load_mixture_or_schedule(source)
    text = export_mixture(obj, format, prefixes=parse_prefixes(prefix), total_steps=total_steps)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_export(text, out)
        log.info("wrote %s export of %s to %s", format, source, out)
