"""Write a mixlab mixture or schedule in the formats large training stacks read.

A mixture is only useful inside the user's real training run, so ``export_mixture`` renders it as:

==================  ==========================================================================
``megatron``        Megatron-LM / NeMo command-line blend: ``--data-path w1 prefix1 w2 prefix2 ...``
``megatron-split``  the per-split form: ``--train-data-path ... --valid-data-path ... --test-data-path ...``
``nemo``            NeMo YAML: ``model.data.data_prefix`` as ``{train, validation, test}`` weight/prefix lists
``mosaic``          MosaicML streaming: Python code building ``Stream(remote|local=..., proportion=...)``
``mosaic-yaml``     MosaicML / llm-foundry YAML: ``train_loader.dataset.streams.<name>.proportion``
``olmo``            OLMo-core source-mixture YAML: ``source_mixture_config.source_configs[*].target_ratio``
``hf``              Hugging Face ``datasets.interleave_datasets(probabilities=[...])`` Python snippet
``json`` / ``yaml`` mixlab's own file format (reads back with :func:`mixlab.load_mixture_or_schedule`)
==================  ==========================================================================

Each domain is written with a *prefix* (a data path): ``prefixes={"web": "/data/web_text_document"}``;
a domain without one uses its name. In the per-split forms a prefix may contain ``{split}`` (replaced
by ``train``/``valid``/``test``); otherwise ``_<split>`` is appended.

A :class:`~mixlab.mixture.Schedule` becomes one blend per stage; every text format except JSON
introduces stage k with the comment line ``# mixlab stage k: steps A-B`` (``B`` is exclusive, or
``end`` for the last stage unless ``total_steps`` is given), and the YAML formats put each stage in
its own YAML document (``---``). None of these stacks switches blends by itself: run stage k for its
step range, then resume with stage k+1's blend (or use mixlab's own trainer / the Hugging Face
callback in :mod:`mixlab.integrations.hf`, which switch live).

Domains with weight 0 are left out of every blend except JSON/YAML (Megatron cannot build an index
for an empty share, and ``interleave_datasets(stopping_strategy="all_exhausted")`` never ends when a
dataset has probability 0).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from mixlab.errors import ConfigError
from mixlab.mixture import Mixture, Schedule, Stage
from mixlab.utils.io import atomic_write_text

FORMATS: dict[str, str] = {
    "megatron": "Megatron-LM/NeMo blend: --data-path w1 prefix1 w2 prefix2 ...",
    "megatron-split": "Megatron-LM per-split blend: --train-data-path/--valid-data-path/--test-data-path",
    "nemo": "NeMo YAML: model.data.data_prefix {train, validation, test}",
    "mosaic": "MosaicML streaming Python: Stream(remote|local=..., proportion=...)",
    "mosaic-yaml": "MosaicML/llm-foundry YAML: train_loader.dataset.streams.<name>.proportion",
    "olmo": "OLMo-core source-mixture YAML: source_configs[*].target_ratio",
    "hf": "Hugging Face datasets.interleave_datasets(probabilities=[...]) Python snippet",
    "json": "mixlab JSON ({'mixture': ...} or {'schedule': [...]})",
    "yaml": "mixlab YAML ({'mixture': ...} or {'schedule': [...]})",
}

SPLITS = ("train", "valid", "test")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_WEIGHT_DIGITS = 12


def parse_prefixes(items: list[str] | None) -> dict[str, str]:
    """Turn ``["web=/data/web", "code=s3://b/code"]`` (the CLI's ``--prefix``) into a mapping."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"--prefix {item!r}: expected DOMAIN=PATH, e.g. --prefix web=/data/web_text_document"
            )
        if name.strip() in out:
            raise ConfigError(f"--prefix: domain {name.strip()!r} is given twice")
        out[name.strip()] = path.strip()
    return out


def _stages(obj: Mixture | Schedule) -> tuple[Stage, ...]:
    if isinstance(obj, Mixture):
        return (Stage(0, obj),)
    if isinstance(obj, Schedule):
        return obj.stages
    raise ConfigError(f"expected a Mixture or a Schedule, got {type(obj).__name__}")


def _step_ranges(stages: tuple[Stage, ...], total_steps: int | None) -> list[tuple[int, int | None]]:
    if total_steps is not None and total_steps <= stages[-1].start_step:
        raise ConfigError(
            f"total_steps={total_steps} must be larger than the last stage's start step {stages[-1].start_step}"
        )
    ends: list[int | None] = [s.start_step for s in stages[1:]] + [total_steps]
    return [(s.start_step, e) for s, e in zip(stages, ends, strict=True)]


def _weight(w: float) -> str:
    return format(w, f".{_WEIGHT_DIGITS}g")


def _positive(mixture: Mixture) -> list[tuple[str, float]]:
    return [(d, w) for d, w in mixture.weights.items() if w > 0]


def _split_prefix(prefix: str, split: str) -> str:
    return prefix.replace("{split}", split) if "{split}" in prefix else f"{prefix}_{split}"


def _stage_comment(k: int, rng: tuple[int, int | None]) -> str:
    end = "end" if rng[1] is None else str(rng[1])
    return f"# mixlab stage {k}: steps {rng[0]}-{end}"


def _blend_args(pairs: list[tuple[str, float]], prefixes: Mapping[str, str], split: str | None) -> str:
    parts: list[str] = []
    for d, w in pairs:
        prefix = prefixes.get(d, d)
        parts += [_weight(w), shlex.quote(prefix if split is None else _split_prefix(prefix, split))]
    return " ".join(parts)


def _megatron(mixture: Mixture, prefixes: Mapping[str, str]) -> str:
    return f"--data-path {_blend_args(_positive(mixture), prefixes, None)}"


def _megatron_split(mixture: Mixture, prefixes: Mapping[str, str]) -> str:
    pairs = _positive(mixture)
    return " \\\n".join(f"--{split}-data-path {_blend_args(pairs, prefixes, split)}" for split in SPLITS)


def _nemo(mixture: Mixture, prefixes: Mapping[str, str]) -> str:
    pairs = _positive(mixture)

    def flat(split: str) -> list[float | str]:
        out: list[float | str] = []
        for d, w in pairs:
            out += [float(_weight(w)), _split_prefix(prefixes.get(d, d), split)]
        return out

    doc = {
        "model": {
            "data": {
                "data_prefix": {"train": flat("train"), "validation": flat("valid"), "test": flat("test")}
            }
        }
    }
    return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")


def _stream_location(prefix: str) -> dict[str, str]:
    return {"remote": prefix} if _URL.match(prefix) else {"local": prefix}


def _mosaic(mixture: Mixture, prefixes: Mapping[str, str], var: str = "streams") -> str:
    lines = [f"{var} = ["]
    for d, w in _positive(mixture):
        loc = ", ".join(f"{k}={v!r}" for k, v in _stream_location(prefixes.get(d, d)).items())
        lines.append(f"    Stream({loc}, proportion={_weight(w)}),  # {d}")
    lines.append("]")
    return "\n".join(lines)


def _mosaic_yaml(mixture: Mixture, prefixes: Mapping[str, str]) -> str:
    streams = {
        d: {**_stream_location(prefixes.get(d, d)), "split": "train", "proportion": float(_weight(w))}
        for d, w in _positive(mixture)
    }
    doc = {"train_loader": {"name": "text", "dataset": {"streams": streams}}}
    return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")


def _olmo(mixture: Mixture, prefixes: Mapping[str, str]) -> str:
    sources = [
        {
            "source_name": d,
            "target_ratio": float(_weight(w)),
            "paths": [prefixes.get(d, d)],
            "max_repetitions": 1.0,
        }
        for d, w in _positive(mixture)
    ]
    doc = {"source_mixture_config": {"source_configs": sources}}
    return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")


def _hf(mixture: Mixture, prefixes: Mapping[str, str], var: str = "mixed") -> str:
    pairs = _positive(mixture)
    names = ", ".join(repr(prefixes.get(d, d)) for d, _ in pairs)
    probs = ", ".join(_weight(w) for _, w in pairs)
    domains = ", ".join(repr(d) for d, _ in pairs)
    return "\n".join(
        [
            f"{var} = interleave_datasets(",
            f"    [load_dataset(name, split='train', streaming=True) for name in [{names}]],",
            f"    probabilities=[{probs}],  # domains: {domains}",
            "    seed=0,",
            "    stopping_strategy='all_exhausted',",
            ")",
        ]
    )


_RENDER: dict[str, Callable[[Mixture, Mapping[str, str]], str]] = {
    "megatron": _megatron,
    "megatron-split": _megatron_split,
    "nemo": _nemo,
    "mosaic-yaml": _mosaic_yaml,
    "olmo": _olmo,
}
_YAML_FORMATS = {"nemo", "mosaic-yaml", "olmo"}


def export_mixture(
    obj: Mixture | Schedule,
    fmt: str,
    *,
    prefixes: Mapping[str, str] | None = None,
    total_steps: int | None = None,
) -> str:
    """Render ``obj`` in format ``fmt`` (a key of :data:`FORMATS`) and return the text.

    ``prefixes`` maps a domain to its data path in the target stack (default: the domain name);
    naming a domain that is in neither the mixture nor the schedule is an error (a typo would
    otherwise silently export the wrong path).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    stages = _stages(obj)
    prefixes = dict(prefixes or {})
    known = {d for s in stages for d in s.mixture.domains}
    unknown = sorted(set(prefixes) - known)
    if unknown:
        raise ConfigError(
            f"--prefix names domain(s) {unknown} that the mixture does not have; it has {sorted(known)}"
        )
    ranges = _step_ranges(stages, total_steps)

    if fmt in ("json", "yaml"):
        payload = (
            {"schedule": Schedule(stages).to_list()}
            if isinstance(obj, Schedule)
            else {"mixture": obj.to_dict()}
        )
        if fmt == "json":
            return json.dumps(payload, indent=2) + "\n"
        text = yaml.safe_dump(payload, sort_keys=False)
        if isinstance(obj, Schedule):
            text = "# " + "; ".join(_stage_comment(k, r)[2:] for k, r in enumerate(ranges)) + "\n" + text
        return text

    blocks: list[str] = []
    many = len(stages) > 1
    for k, (stage, rng) in enumerate(zip(stages, ranges, strict=True)):
        if fmt == "mosaic":
            body = _mosaic(stage.mixture, prefixes, var=f"streams_stage_{k}" if many else "streams")
        elif fmt == "hf":
            body = _hf(stage.mixture, prefixes, var=f"mixed_stage_{k}" if many else "mixed")
        else:
            body = _RENDER[fmt](stage.mixture, prefixes)
        blocks.append(f"{_stage_comment(k, rng)}\n{body}")

    header = {
        "mosaic": "from streaming import Stream, StreamingDataset\n",
        "hf": "from datasets import interleave_datasets, load_dataset\n",
    }.get(fmt, "")
    sep = "\n---\n" if fmt in _YAML_FORMATS else "\n\n"
    text = header + ("\n" if header else "") + sep.join(blocks) + "\n"
    if fmt == "mosaic":
        first = "streams_stage_0" if many else "streams"
        text += f"\n# dataset = StreamingDataset(streams={first}, batch_size=<per-device batch size>)\n"
    return text


def write_export(text: str, out: str | Path) -> Path:
    """Write an export atomically (a crash never leaves half a blend in ``out``)."""
    path = Path(out)
    atomic_write_text(path, text)
    return path


__all__ = ["FORMATS", "export_mixture", "parse_prefixes", "write_export"]
