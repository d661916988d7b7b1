"""``mixlab export``: a mixture or schedule as a Megatron/NeMo, MosaicML, OLMo or Hugging Face blend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from typer.models import OptionInfo

from mixlab.errors import ConfigError

log = logging.getLogger(__name__)


def _format_names() -> list[str]:
    from mixlab.integrations.export import EXPORT_FORMATS

    return list(EXPORT_FORMATS)


class _FormatOption(OptionInfo):
    """``--format``: its help lists the formats registered when the help is shown, so a format added
    to the export registry appears here without an edit to this command."""

    @property
    def help(self) -> str:
        *rest, last = _format_names()
        return f"{', '.join(rest)} or {last}."

    @help.setter
    def help(self, value: str | None) -> None:  # OptionInfo.__init__ sets it; the registry decides
        pass


def export(
    source: Annotated[
        Path, typer.Argument(help="Mixture or schedule file (YAML or JSON), as written by mixlab.")
    ],
    format: Annotated[
        str,
        _FormatOption(default=..., param_decls=("--format", "-f"), autocompletion=_format_names),
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
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="A prepared mixlab corpus: measures each domain's mean tokens per document and document "
            "count (hf, mosaic), and gives OLMo-core the domains' token files (olmo) unless --prefix is given.",
        ),
    ] = None,
    tokens_per_sample: Annotated[
        str | None,
        typer.Option(
            help="Mean tokens per sample, for hf/mosaic without --corpus: one number (fixed-length samples) "
            "or DOMAIN=N,DOMAIN=N.",
        ),
    ] = None,
    max_epochs: Annotated[
        str | None,
        typer.Option(help="Most passes over a domain: one number or DOMAIN=K,DOMAIN=K (olmo, hf, mosaic)."),
    ] = None,
    global_batch_tokens: Annotated[
        int | None, typer.Option(help="Tokens per optimizer step (OLMo-core's global_batch_size).")
    ] = None,
    tokens: Annotated[
        int | None, typer.Option(help="The run's token budget (OLMo-core's requested_tokens).")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Mosaic: the split sub-directory of every stream (e.g. train).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed written into the hf/olmo export.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write here instead of printing. A schedule in olmo/megatron-json becomes one file per "
            "stage (OUT.stageK.ext) and OUT holds the plan.",
        ),
    ] = None,
) -> None:
    """Export a mixture or schedule to the format your training stack reads.

    Mixture weights are token shares. hf and mosaic draw documents, so they need each domain's mean
    tokens per document (--corpus or --tokens-per-sample) to turn token shares into probabilities.
    A schedule becomes one blend per stage, each introduced by "# mixlab stage K: steps A-B" and
    what to run at that boundary.

    Examples:

        mixlab export best.yaml --format megatron --prefix web=/data/web_text_document --prefix code=/data/code_text_document

        mixlab export best.yaml --format olmo --corpus corpus/ --global-batch-tokens 1048576 --tokens 2000000000 --max-epochs 2 -o mix.yaml

        mixlab export best.yaml --format hf --corpus corpus/ --prefix web=/data/web --prefix code=/data/code
    """
    from mixlab.integrations.export import (
        EXPORT_FORMATS,
        ExportOptions,
        export_mixture,
        parse_prefixes,
        write_export_files,
    )
    from mixlab.mixture import load_mixture_or_schedule

    obj = load_mixture_or_schedule(source)
    prefixes = parse_prefixes(prefix)
    domains = set(obj.domains)
    token_files = format in EXPORT_FORMATS and EXPORT_FORMATS[format].reads_token_files
    per_sample: dict[str, float] | None = None
    samples: dict[str, int] | None = None
    if corpus is not None:
        from mixlab.data.corpus import Corpus, shard_paths

        c = Corpus.open(corpus)
        missing = sorted(domains - set(c.domains))
        if missing:
            raise ConfigError(f"--corpus {corpus}: has no domain(s) {missing}; it has {c.domains}")
        per_sample, samples = {}, {}
        for d in sorted(domains):
            info = c.domain_info(d)["train"]
            per_sample[d] = int(info["tokens"]) / max(1, int(info["docs"]))
            samples[d] = int(info["docs"])
            if token_files and d not in prefixes:
                prefixes[d] = str(shard_paths(Path(corpus).resolve(), d, "train")[0])
    if tokens_per_sample is not None:
        per_sample = _per_domain(tokens_per_sample, domains, "--tokens-per-sample")
    opts = ExportOptions(
        tokens_per_sample=per_sample,
        samples=samples,
        max_epochs=None if max_epochs is None else _per_domain(max_epochs, domains, "--max-epochs"),
        global_batch_tokens=global_batch_tokens,
        total_tokens=tokens,
        split=split,
        seed=seed,
        token_dtype=c.dtype.name if corpus is not None else None,
    )
    if out is None:
        text = export_mixture(obj, format, prefixes=prefixes, total_steps=total_steps, options=opts)
        typer.echo(text, nl=False)
    else:
        paths = write_export_files(obj, format, out, prefixes=prefixes, total_steps=total_steps, options=opts)
        log.info("wrote %s export of %s to %s", format, source, ", ".join(map(str, paths)))


def _per_domain(text: str, domains: set[str], flag: str) -> dict[str, float]:
    """``"512"`` -> every domain 512; ``"web=812,code=300"`` -> per domain (every domain needed)."""
    try:
        if "=" not in text:
            value = float(text)
            return {d: value for d in domains}
        out = {}
        for item in text.split(","):
            name, _, v = item.partition("=")
            out[name.strip()] = float(v)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a number or DOMAIN=N,DOMAIN=N") from None
    unknown = sorted(set(out) - domains)
    if unknown:
        raise ConfigError(f"{flag}: unknown domain(s) {unknown}; the mixture has {sorted(domains)}")
    return out
