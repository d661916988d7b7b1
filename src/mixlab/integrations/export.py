"""Write a mixlab mixture or schedule in the formats large training stacks read.

A mixlab mixture is a set of **token** shares. ``export_mixture`` renders it as:

==================  ==========================================================================
``megatron``        Megatron-LM / NeMo command-line blend: ``--data-path w1 prefix1 w2 prefix2 ...``
``megatron-split``  the per-split form: ``--train-data-path ... --valid-data-path ... --test-data-path ...``
``megatron-json``   the JSON file read by Megatron's ``--per-split-data-args-path`` (``{train, valid, test}``)
``nemo``            NeMo 1.x YAML: ``model.data.data_prefix`` as ``{train, validation, test}`` weight/prefix lists
``nemo2``           NeMo 2 Python: ``PreTrainingDataModule(paths={"train": [...], ...})``
``mosaic``          MosaicML streaming Python: ``Stream(remote|local=..., split=..., proportion=...)``
``mosaic-yaml``     MosaicML / llm-foundry YAML: ``train_loader.dataset.streams.<name>.proportion``
``olmo``            OLMo-core ``SourceMixtureDatasetConfig`` YAML (``source_list.sources[*].target_ratio``),
                    loadable with ``SourceMixtureDatasetConfig.from_yaml``
``hf``              Hugging Face ``datasets.interleave_datasets(probabilities=[...])`` Python snippet
``json`` / ``yaml`` mixlab's own file format (reads back with :func:`mixlab.load_mixture_or_schedule`)
==================  ==========================================================================

**Token shares versus sample shares.** Megatron/NeMo blends draw fixed-length packed sequences and
OLMo-core's ``target_ratio`` counts tokens, so there the weights are the token shares as they are.
``interleave_datasets`` and Mosaic ``Stream(proportion=...)`` draw *documents* (samples), so a
domain whose documents are long gets more tokens than its probability. Those two formats need the
mean tokens per sample of each domain (``tokens_per_sample``, measured from a prepared corpus with
``mixlab export --corpus DIR``, or given); the sample probability is then
``p_i = (w_i / L_i) / sum_j (w_j / L_j)``, which makes the expected token share ``p_i L_i / sum_j p_j L_j``
equal to ``w_i``. Without the lengths these formats are refused (pass one number when every sample has
the same length, e.g. pre-tokenized fixed-length MDS shards).

**Epoch caps.** ``max_epochs`` (one number or per domain) becomes OLMo-core's ``max_repetition_ratio``
(and ``max_source_fraction`` below one epoch); for ``hf`` each domain's stream is repeated up to its
cap and ``stopping_strategy="first_exhausted"`` ends the mixture when a domain reaches it; for Mosaic,
when the number of samples per domain is known, ``epoch_size`` is set so that no stream is drawn
beyond its cap. Megatron/NeMo blends repeat a dataset as often as the blend needs: the export says so.

Each domain is written with a *prefix* (a data path): ``prefixes={"web": "/data/web_text_document"}``;
a domain without one uses its name. In the per-split forms a prefix may contain ``{split}`` (replaced
by ``train``/``valid``/``test``); otherwise ``_<split>`` is appended.

**Schedules.** A :class:`~mixlab.mixture.Schedule` becomes one blend per stage; every text format except
JSON introduces stage k with the comment line ``# mixlab stage k: steps A-B`` (``B`` is exclusive, or
``end`` for the last stage unless ``total_steps`` is given) followed by what to run at that boundary.
None of these stacks switches blends by itself: train stage k up to step B, stop, and resume from that
checkpoint with stage k+1's blend (or use mixlab's own trainer / the Hugging Face callback in
:mod:`mixlab.integrations.hf`, which switch live). The file formats that a library loads as one
object (``olmo``, ``megatron-json``) are written one file per stage by :func:`write_export`.

Domains with weight 0 are left out of every blend except JSON/YAML (Megatron cannot build an index
for an empty share, OLMo-core requires ``target_ratio > 0``).

**Adding a format.** Each format is one :class:`ExportFormat` subclass below, decorated with
:func:`register_format`: its flags say what the library needs (documents or tokens, one file per
stage, YAML documents, comments) and ``render`` writes one stage's blend. The stage loop, comments,
probabilities, file writing and ``mixlab export --format`` (choices and help) read only
:data:`EXPORT_FORMATS`.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from mixlab.errors import ConfigError
from mixlab.mixture import Mixture, Schedule, Stage
from mixlab.utils.io import atomic_write_text

SPLITS = ("train", "valid", "test")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_WEIGHT_DIGITS = 12


@dataclass(frozen=True)
class ExportOptions:
    """What a format needs beyond the weights (all optional; a format that needs one says so).

    ``tokens_per_sample``: mean tokens per sample (document) of each domain, for the sample formats.
    ``samples``: number of samples (documents) per domain, to size Mosaic's ``epoch_size`` and HF's
    fractional epoch caps. ``max_epochs``: most passes over a domain (one number or per domain).
    ``global_batch_tokens`` / ``total_tokens``: OLMo-core's ``global_batch_size`` (in tokens) and the
    run's token budget (``requested_tokens``; per stage from its step range when ``total_steps`` is set).
    ``split``: Mosaic's ``split`` (the sub-directory of each stream; the same in both Mosaic forms).
    """

    tokens_per_sample: Mapping[str, float] | None = None
    samples: Mapping[str, int] | None = None
    max_epochs: float | Mapping[str, float] | None = None
    global_batch_tokens: int | None = None
    total_tokens: int | None = None
    split: str | None = None
    seed: int = 0
    token_dtype: str | None = None
    """The id type of the token files the paths name (a mixlab corpus: uint16 or uint32), stated in the
    OLMo-core export because its dataset config must read them with the same dtype."""

    def epochs(self, domain: str) -> float | None:
        if self.max_epochs is None:
            return None
        if isinstance(self.max_epochs, Mapping):
            v = self.max_epochs.get(domain)
            return None if v is None else float(v)
        return float(self.max_epochs)


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


def sample_probabilities(mixture: Mixture, tokens_per_sample: Mapping[str, float]) -> dict[str, float]:
    """Per-sample draw probabilities that give ``mixture`` as *token* shares: ``p_i ∝ w_i / L_i``.

    ``L_i`` is the mean tokens per sample of domain i; drawing samples with ``p`` gives the expected
    token share ``p_i L_i / sum_j p_j L_j = w_i``. Domains with weight 0 are left out.
    """
    pairs = _positive(mixture)
    missing = [d for d, _ in pairs if d not in tokens_per_sample]
    if missing:
        raise ConfigError(f"no mean tokens per sample for domain(s) {missing}; measure them with --corpus")
    bad = [d for d, _ in pairs if not float(tokens_per_sample[d]) > 0]
    if bad:
        raise ConfigError(f"mean tokens per sample must be > 0, got 0 or less for {bad}")
    raw = {d: w / float(tokens_per_sample[d]) for d, w in pairs}
    total = sum(raw.values())
    return {d: v / total for d, v in raw.items()}


def _split_prefix(prefix: str, split: str) -> str:
    return prefix.replace("{split}", split) if "{split}" in prefix else f"{prefix}_{split}"


@dataclass(frozen=True)
class StageContext:
    """Where the stage being rendered sits: its index, the number of stages and its step range
    (``end`` is exclusive; ``None`` for an open last stage)."""

    index: int
    n_stages: int
    steps: tuple[int, int | None]

    @property
    def suffix(self) -> str:
        """``_stage_<k>`` when there are several stages (so Python snippets name one variable each)."""
        return f"_stage_{self.index}" if self.n_stages > 1 else ""


class ExportFormat:
    """One export format, whole: its name, what it needs, and how it renders one stage's blend.

    The generic code (:func:`export_stages`, :func:`export_mixture`, :func:`write_export_files`, the
    ``mixlab export`` command) reads only these attributes, so a new format is one subclass decorated
    with :func:`register_format`:

    ``per_stage``: rendered stage by stage with :meth:`render` (mixlab's own files are written whole
    by :meth:`document` instead). ``draws_documents``: the library draws samples (documents), so weights become per-sample
    probabilities and ``tokens_per_sample`` is required. ``one_file_per_stage``: the library loads
    the file as one object, so :func:`write_export_files` writes a schedule one file per stage.
    ``yaml_document``: stages are joined as YAML documents (``---``). ``comments``: the text takes
    ``#`` comments (the stage header). ``header``: printed once before the stages (imports).
    ``boundary_action``: what to run up to a stage's end step. ``repeats_past_caps``: the library
    repeats a dataset as the blend needs (max_epochs is not enforced; the first stage says so).
    ``restarts_sources``: each stage's loader starts its sources afresh. ``reads_token_files``: the
    paths name token files, so ``mixlab export --corpus`` fills them in for domains without a prefix.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    per_stage: ClassVar[bool] = True
    draws_documents: ClassVar[bool] = False
    one_file_per_stage: ClassVar[bool] = False
    yaml_document: ClassVar[bool] = False
    comments: ClassVar[bool] = True
    header: ClassVar[str] = ""
    boundary_action: ClassVar[str] = "train with this mixture until step"
    repeats_past_caps: ClassVar[bool] = False
    restarts_sources: ClassVar[bool] = False
    reads_token_files: ClassVar[bool] = False

    def render(
        self, mixture: Mixture, prefixes: Mapping[str, str], opts: ExportOptions, stage: StageContext
    ) -> str:
        """One stage's blend (without the stage comment)."""
        raise NotImplementedError

    def document(
        self,
        obj: Mixture | Schedule,
        *,
        prefixes: Mapping[str, str] | None,
        total_steps: int | None,
        options: ExportOptions | None,
    ) -> str:
        """The whole export of ``obj``: every stage rendered, then joined by :meth:`join`."""
        blocks = export_stages(obj, self.name, prefixes=prefixes, total_steps=total_steps, options=options)
        return self.join(blocks)

    def join(self, blocks: list[str]) -> str:
        """The stages' blocks as one text: the header, the blocks, then :meth:`footer`."""
        sep = "\n---\n" if self.yaml_document else "\n\n"
        text = self.header + ("\n" if self.header else "") + sep.join(blocks) + "\n"
        return text + self.footer(text, len(blocks))

    def footer(self, text: str, n_stages: int) -> str:
        """Text appended after the stages (e.g. how to build the dataset from the first stage)."""
        return ""

    def probabilities(self, mixture: Mixture, opts: ExportOptions) -> dict[str, float]:
        """Per-sample probabilities for a format that ``draws_documents`` (see :func:`sample_probabilities`)."""
        if opts.tokens_per_sample is None:
            raise ConfigError(
                f"the {self.name} format draws samples (documents), not tokens: give each domain's mean tokens "
                "per sample so that the probabilities reproduce the token shares (mixlab export --corpus DIR "
                "measures them from a prepared corpus; --tokens-per-sample N when every sample has N tokens)"
            )
        return sample_probabilities(mixture, opts.tokens_per_sample)


EXPORT_FORMATS: dict[str, ExportFormat] = {}
"""Every export format by name, in the order ``mixlab export --help`` lists them."""


def register_format(cls: type[ExportFormat]) -> type[ExportFormat]:
    """Class decorator: add a format to :data:`EXPORT_FORMATS` (its ``name`` must be new)."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in EXPORT_FORMATS:
        raise ValueError(f"export format {cls.name!r} is registered twice")
    EXPORT_FORMATS[cls.name] = cls()
    return cls


def get_format(name: str) -> ExportFormat:
    """The registered format called ``name``; an unknown name is a ConfigError listing the choices."""
    if name not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {name!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[name]


class _Descriptions(Mapping[str, str]):
    """A live, read-only view of the registry: format name -> one-line description."""

    def __getitem__(self, name: str) -> str:
        return EXPORT_FORMATS[name].description

    def __iter__(self) -> Iterator[str]:
        return iter(EXPORT_FORMATS)

    def __len__(self) -> int:
        return len(EXPORT_FORMATS)


FORMATS: Mapping[str, str] = _Descriptions()
"""Format name -> description, read from :data:`EXPORT_FORMATS` (so it lists formats added later too)."""


def _stage_comment(k: int, rng: tuple[int, int | None], n_stages: int, fmt: ExportFormat) -> str:
    end = "end" if rng[1] is None else str(rng[1])
    line = f"# mixlab stage {k}: steps {rng[0]}-{end}"
    if n_stages == 1:
        return line
    if k + 1 < n_stages:
        line += (
            f"\n# at the boundary: {fmt.boundary_action} {rng[1]}, save a checkpoint, then resume from it "
            f"with stage {k + 1}"
        )
    else:
        line += (
            "\n# last stage: resume from the previous stage's checkpoint with this blend and train to the end"
        )
    if fmt.restarts_sources:
        line += "\n# each stage's loader starts its sources afresh: a max_epochs cap holds within the stage"
    return line


def _blend_list(pairs: list[tuple[str, float]], prefixes: Mapping[str, str], split: str | None) -> list[str]:
    out: list[str] = []
    for d, w in pairs:
        prefix = prefixes.get(d, d)
        out += [_weight(w), prefix if split is None else _split_prefix(prefix, split)]
    return out


def _blend_args(pairs: list[tuple[str, float]], prefixes: Mapping[str, str], split: str | None) -> str:
    return " ".join(shlex.quote(x) for x in _blend_list(pairs, prefixes, split))


_REPEAT_NOTE = (
    "# Megatron/NeMo repeat a dataset as often as the blend needs; a max_epochs cap is not enforced here."
)


@register_format
class Megatron(ExportFormat):
    name = "megatron"
    description = "Megatron-LM/NeMo blend: --data-path w1 prefix1 w2 prefix2 ..."
    boundary_action = "train with this blend until --train-iters"
    repeats_past_caps = True

    def render(self, mixture, prefixes, opts, stage):
        return f"--data-path {_blend_args(_positive(mixture), prefixes, None)}"


@register_format
class MegatronSplit(ExportFormat):
    name = "megatron-split"
    description = "Megatron-LM per-split blend: --train-data-path/--valid-data-path/--test-data-path"
    boundary_action = "train with this blend until --train-iters"
    repeats_past_caps = True

    def render(self, mixture, prefixes, opts, stage):
        pairs = _positive(mixture)
        return " \\\n".join(f"--{split}-data-path {_blend_args(pairs, prefixes, split)}" for split in SPLITS)


@register_format
class MegatronJson(ExportFormat):
    name = "megatron-json"
    description = "Megatron-LM --per-split-data-args-path JSON: {train, valid, test}"
    one_file_per_stage = True
    comments = False  # JSON has no comments: the stage file's name carries the stage
    boundary_action = "train with this file until --train-iters"

    def render(self, mixture, prefixes, opts, stage):
        pairs = _positive(mixture)
        return json.dumps({split: _blend_list(pairs, prefixes, split) for split in SPLITS}, indent=2)

    def join(self, blocks):
        if len(blocks) > 1:
            raise ConfigError(
                "megatron-json holds one blend; a schedule is written one file per stage: give --out FILE"
            )
        return blocks[0] + "\n"


@register_format
class Nemo(ExportFormat):
    name = "nemo"
    description = "NeMo 1.x YAML: model.data.data_prefix {train, validation, test}"
    yaml_document = True
    boundary_action = "train with this data_prefix until trainer.max_steps="
    repeats_past_caps = True

    def render(self, mixture, prefixes, opts, stage):
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


@register_format
class Nemo2(ExportFormat):
    name = "nemo2"
    description = "NeMo 2 Python: PreTrainingDataModule(paths={train, validation, test})"
    header = "from nemo.collections.llm.gpt.data import PreTrainingDataModule\n"
    boundary_action = "train with these paths until max_steps="
    repeats_past_caps = True

    def render(self, mixture, prefixes, opts, stage):
        pairs = _positive(mixture)
        var = f"paths{stage.suffix}"

        def flat(split: str) -> str:
            items = []
            for d, w in pairs:
                items += [_weight(w), repr(_split_prefix(prefixes.get(d, d), split))]
            return "[" + ", ".join(items) + "]"

        return "\n".join(
            [
                f"{var} = {{",
                f"    'train': {flat('train')},",
                f"    'validation': {flat('valid')},",
                f"    'test': {flat('test')},",
                "}",
            ]
        )

    def footer(self, text, n_stages):
        first = "paths_stage_0" if n_stages > 1 else "paths"
        return (
            f"\n# data = PreTrainingDataModule(paths={first}, seq_length=..., micro_batch_size=..., "
            "global_batch_size=...)\n"
        )


def _stream_location(prefix: str) -> dict[str, str]:
    return {"remote": prefix} if _URL.match(prefix) else {"local": prefix}


def _mosaic_epoch_size(probs: Mapping[str, float], opts: ExportOptions) -> int | None:
    """Largest epoch (in samples) that draws no stream beyond its ``max_epochs`` cap, when known."""
    if opts.max_epochs is None or opts.samples is None:
        return None
    sizes = []
    for d, p in probs.items():
        k = opts.epochs(d)
        if k is not None and d in opts.samples:
            sizes.append(k * int(opts.samples[d]) / p)
    return int(math.floor(min(sizes))) if sizes else None


def _mosaic_streams(
    probs: Mapping[str, float], prefixes: Mapping[str, str], opts: ExportOptions
) -> dict[str, dict]:
    out = {}
    for d, p in probs.items():
        s: dict[str, object] = dict(_stream_location(prefixes.get(d, d)))
        if opts.split is not None:
            s["split"] = opts.split
        s["proportion"] = float(_weight(p))
        out[d] = s
    return out


@register_format
class Mosaic(ExportFormat):
    name = "mosaic"
    description = "MosaicML streaming Python: Stream(remote|local=..., split=..., proportion=...)"
    draws_documents = True
    header = "from streaming import Stream, StreamingDataset\n"
    restarts_sources = True

    def render(self, mixture, prefixes, opts, stage):
        var = f"streams{stage.suffix}"
        probs = self.probabilities(mixture, opts)
        lines = [f"{var} = ["]
        for d, s in _mosaic_streams(probs, prefixes, opts).items():
            args = ", ".join(f"{k}={v!r}" for k, v in s.items())
            lines.append(f"    Stream({args}),  # {d}: token share {_weight(mixture[d])}")
        lines.append("]")
        size = _mosaic_epoch_size(probs, opts)
        if size is not None:
            lines.append(f"{var}_epoch_size = {size}  # samples: no stream is drawn beyond its max_epochs")
        return "\n".join(lines)

    def footer(self, text, n_stages):
        first = "streams_stage_0" if n_stages > 1 else "streams"
        size = f"{first}_epoch_size" if f"{first}_epoch_size =" in text else "None"
        return (
            f"\n# dataset = StreamingDataset(streams={first}, epoch_size={size}, "
            "batch_size=<per-device batch size>)\n"
        )


@register_format
class MosaicYaml(ExportFormat):
    name = "mosaic-yaml"
    description = "MosaicML/llm-foundry YAML: train_loader.dataset.streams.<name>.proportion"
    draws_documents = True
    yaml_document = True
    restarts_sources = True

    def render(self, mixture, prefixes, opts, stage):
        probs = self.probabilities(mixture, opts)
        dataset: dict[str, object] = {"streams": _mosaic_streams(probs, prefixes, opts)}
        size = _mosaic_epoch_size(probs, opts)
        if size is not None:
            dataset["epoch_size"] = size
        doc = {"train_loader": {"name": "text", "dataset": dataset}}
        return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")


def _requested_tokens(rng: tuple[int, int | None], opts: ExportOptions) -> int | None:
    if opts.global_batch_tokens is None:
        return None
    if rng[1] is not None:
        return (rng[1] - rng[0]) * opts.global_batch_tokens
    if opts.total_tokens is not None:
        left = opts.total_tokens - rng[0] * opts.global_batch_tokens
        if left <= 0:
            raise ConfigError(
                f"--tokens {opts.total_tokens} is used up before the last stage starts at step {rng[0]}"
            )
        return left
    return None


@register_format
class Olmo(ExportFormat):
    name = "olmo"
    description = "OLMo-core SourceMixtureDatasetConfig YAML: source_list.sources[*].target_ratio"
    one_file_per_stage = True
    yaml_document = True
    restarts_sources = True
    reads_token_files = True

    def render(self, mixture, prefixes, opts, stage):
        requested_tokens = _requested_tokens(stage.steps, opts)
        if opts.global_batch_tokens is None or requested_tokens is None:
            raise ConfigError(
                "the olmo format is a full SourceMixtureDatasetConfig: give --global-batch-tokens (OLMo-core's "
                "global_batch_size, in tokens) and --tokens (the run's token budget) or --total-steps"
            )
        sources = []
        for d, w in _positive(mixture):
            k = opts.epochs(d)
            src: dict[str, object] = {
                "source_name": d,
                "target_ratio": float(_weight(w)),
                "paths": [prefixes.get(d, d)],
                "max_repetition_ratio": 1.0 if k is None else float(max(1.0, k)),
                "max_source_fraction": 1.0 if k is None else float(min(1.0, k)),
            }
            sources.append(src)
        doc = {
            "source_list": {"sources": sources},
            "requested_tokens": int(requested_tokens),
            "global_batch_size": int(opts.global_batch_tokens),
            "seed": int(opts.seed),
        }
        text = yaml.safe_dump(doc, sort_keys=False).rstrip("\n")
        if opts.token_dtype is not None:
            text = (
                f"# the token files hold {opts.token_dtype} ids: build the OLMo-core dataset with that dtype "
                f"(NumpyDatasetDType.{opts.token_dtype})\n" + text
            )
        return text


@register_format
class HuggingFace(ExportFormat):
    name = "hf"
    description = "Hugging Face datasets.interleave_datasets(probabilities=[...]) Python snippet"
    draws_documents = True
    header = "from datasets import interleave_datasets, load_dataset\n"
    restarts_sources = True

    def render(self, mixture, prefixes, opts, stage):
        var = f"mixed{stage.suffix}"
        probs = self.probabilities(mixture, opts)
        capped = opts.max_epochs is not None
        lines = [f"{var} = interleave_datasets(", "    ["]
        for d in probs:
            expr = f"load_dataset({prefixes.get(d, d)!r}, split='train', streaming=True)"
            k = opts.epochs(d)
            if k is not None:
                n = (opts.samples or {}).get(d)
                if n is not None:
                    expr += f".repeat({math.ceil(k)}).take({int(math.floor(k * int(n)))})"
                else:
                    expr += f".repeat({math.ceil(k)})"
            lines.append(f"        {expr},  # {d}: token share {_weight(mixture[d])}")
        lines += [
            "    ],",
            f"    probabilities=[{', '.join(_weight(p) for p in probs.values())}],",
            f"    seed={int(opts.seed)},",
            f"    stopping_strategy={'first_exhausted' if capped else 'all_exhausted'!r},",
            ")",
        ]
        return "\n".join(lines)


class _MixlabFile(ExportFormat):
    """mixlab's own file: the whole mixture or schedule at once (it is not rendered stage by stage)."""

    per_stage = False

    def dump(self, payload: dict) -> str:
        raise NotImplementedError

    def document(self, obj, *, prefixes, total_steps, options):
        stages = _stages(obj)
        ranges = _step_ranges(stages, total_steps)
        payload = (
            {"schedule": Schedule(stages).to_json()}
            if isinstance(obj, Schedule)
            else {"mixture": obj.to_dict()}
        )
        text = self.dump(payload)
        if self.comments and isinstance(obj, Schedule):
            heads = [_stage_comment(k, r, 1, self)[2:] for k, r in enumerate(ranges)]
            text = "# " + "; ".join(heads) + "\n" + text
        return text


@register_format
class MixlabJson(_MixlabFile):
    name = "json"
    description = "mixlab JSON ({'mixture': ...} or {'schedule': [...]})"
    comments = False

    def dump(self, payload):
        return json.dumps(payload, indent=2) + "\n"


@register_format
class MixlabYaml(_MixlabFile):
    name = "yaml"
    description = "mixlab YAML ({'mixture': ...} or {'schedule': [...]})"

    def dump(self, payload):
        return yaml.safe_dump(payload, sort_keys=False)


def export_stages(
    obj: Mixture | Schedule,
    fmt: str,
    *,
    prefixes: Mapping[str, str] | None = None,
    total_steps: int | None = None,
    options: ExportOptions | None = None,
) -> list[str]:
    """Render each stage of ``obj`` on its own (a header comment, then the format's body)."""
    f = EXPORT_FORMATS.get(fmt)
    if f is None or not f.per_stage:
        raise ConfigError(
            f"unknown per-stage export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    opts = options or ExportOptions()
    stages = _stages(obj)
    prefixes = dict(prefixes or {})
    known = {d for s in stages for d in s.mixture.domains}
    unknown = sorted(set(prefixes) - known)
    if unknown:
        raise ConfigError(
            f"--prefix names domain(s) {unknown} that the mixture does not have; it has {sorted(known)}"
        )
    ranges = _step_ranges(stages, total_steps)
    if f.draws_documents:
        f.probabilities(stages[0].mixture, opts)  # fails early, naming what is missing
    blocks: list[str] = []
    for k, (stage, rng) in enumerate(zip(stages, ranges, strict=True)):
        body = f.render(stage.mixture, prefixes, opts, StageContext(k, len(stages), rng))
        if not f.comments:
            blocks.append(body)
            continue
        comment = _stage_comment(k, rng, len(stages), f)
        if f.repeats_past_caps and k == 0:
            comment += "\n" + _REPEAT_NOTE
        blocks.append(f"{comment}\n{body}")
    return blocks


def export_mixture(
    obj: Mixture | Schedule,
    fmt: str,
    *,
    prefixes: Mapping[str, str] | None = None,
    total_steps: int | None = None,
    options: ExportOptions | None = None,
) -> str:
    """Render ``obj`` in format ``fmt`` (a key of :data:`EXPORT_FORMATS`) and return the text.

    ``prefixes`` maps a domain to its data path in the target stack (default: the domain name);
    naming a domain that is in neither the mixture nor the schedule is an error (a typo would
    otherwise silently export the wrong path). ``options`` carries what the sample formats and
    OLMo-core need (see :class:`ExportOptions`); a format missing one raises a ConfigError saying which.
    """
    return get_format(fmt).document(obj, prefixes=prefixes, total_steps=total_steps, options=options)


def stage_paths(out: str | Path, n_stages: int) -> list[Path]:
    """``blend.yaml`` -> ``blend.stage0.yaml``, ``blend.stage1.yaml``, ... (one file per stage)."""
    p = Path(out)
    if n_stages == 1:
        return [p]
    suffix = "".join(p.suffixes[-1:])
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    return [p.with_name(f"{stem}.stage{k}{suffix}") for k in range(n_stages)]


def write_export(text: str, out: str | Path) -> Path:
    """Write an export atomically (a crash never leaves half a blend in ``out``)."""
    path = Path(out)
    atomic_write_text(path, text)
    return path


def write_export_files(
    obj: Mixture | Schedule,
    fmt: str,
    out: str | Path,
    *,
    prefixes: Mapping[str, str] | None = None,
    total_steps: int | None = None,
    options: ExportOptions | None = None,
) -> list[Path]:
    """Write ``obj`` in ``fmt`` to ``out``; a schedule in a ``one_file_per_stage`` format becomes one
    file per stage.

    For ``olmo`` and ``megatron-json`` each stage file is what the library loads as it is
    (``SourceMixtureDatasetConfig.from_yaml``, ``--per-split-data-args-path``); ``out`` itself then
    holds the plan: which file to train with for which steps.
    """
    f = get_format(fmt)
    if not f.one_file_per_stage or isinstance(obj, Mixture) or len(_stages(obj)) == 1:
        text = export_mixture(obj, fmt, prefixes=prefixes, total_steps=total_steps, options=options)
        return [write_export(text, out)]
    blocks = export_stages(obj, fmt, prefixes=prefixes, total_steps=total_steps, options=options)
    paths = stage_paths(out, len(blocks))
    ranges = _step_ranges(_stages(obj), total_steps)
    plan = []
    for k, (path, block, rng) in enumerate(zip(paths, blocks, ranges, strict=True)):
        write_export(block + "\n", path)
        plan.append(_stage_comment(k, rng, len(blocks), f) + f"\n# file: {path.name}")
    write_export("\n".join(plan) + "\n", out)
    return [Path(out), *paths]


__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "ExportFormat",
    "ExportOptions",
    "StageContext",
    "export_mixture",
    "export_stages",
    "get_format",
    "parse_prefixes",
    "register_format",
    "sample_probabilities",
    "stage_paths",
    "write_export",
    "write_export_files",
]
