"""Imports flow one way: a module imports only from its own folder and from folders below it.

``LAYERS`` is the one statement of the order (docs/ARCHITECTURE.md points here). Every ``import``
counts, including those inside functions: an import hidden in a function is still a dependency.
A new top-level folder or module must be placed in ``LAYERS`` before its first import passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mixlab"

LAYERS: tuple[str, ...] = (
    "errors",  # the project error types
    "utils",  # atomic writes, config parsing
    "mixture",  # Mixture, Schedule, MixtureConstraints
    "proxy",  # the proxy-run contract: ComputeLedger, ProxyResult, ProxyRunner
    "data",  # sources, tokenizers, shards, sampler, built-in corpus
    "model",  # the proxy GPT and its presets
    "store",  # the SQLite run store
    "train",  # trainer, checkpoints, evaluation, LocalProxyRunner
    "influence",  # Group Influence
    "laws",  # mixing laws
    "predictors",  # mixture -> loss regressors and search
    "mixers",  # every method behind Mixer.propose
    "sweep",  # proxy sweeps (process pool, Ray)
    "report",  # plots and the HTML report
    "pipeline",  # the stage engine, demo and benchmark
    "integrations",  # Hugging Face, exports to training stacks
    "cli",  # commands
)
"""Lowest first. The package root (``mixlab/__init__.py``) may be imported from anywhere."""


def _unit(path: Path) -> str:
    """The layer a source file belongs to: its top folder, or its module name at the top level."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_units(path: Path, root: Path = PACKAGE) -> list[tuple[str, int]]:
    """(layer, line) of every mixlab module the file imports, relative imports resolved."""
    package = ["mixlab", *path.relative_to(root).parts[:-1]]  # the package the file's imports live in
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            modules = [module]
            if module == "mixlab":  # `from mixlab import data` names a layer too
                modules = [f"mixlab.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "mixlab" and len(parts) > 1 and (
                (root / parts[1]).is_dir() or (root / f"{parts[1]}.py").is_file()
            ):
                found.append((parts[1], node.lineno))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_folder_has_a_layer():
    units = {_unit(p) for p in _sources()}
    missing = sorted(units - set(LAYERS))
    assert not missing, f"place {missing} in LAYERS (tests/test_layering.py) and in docs/ARCHITECTURE.md"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_downward(path):
    rank = {name: i for i, name in enumerate(LAYERS)}
    here = _unit(path)
    upward = [
        f"line {line}: imports mixlab.{unit} (layer {rank[unit]}) from {here} (layer {rank[here]})"
        for unit, line in _imported_units(path)
        if unit in rank and here in rank and rank[unit] > rank[here]
    ]
    assert not upward, f"{path.relative_to(PACKAGE)} imports upward:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The walk itself works: a planted upward import (train -> mixers) inside a function is found."""
    fake = tmp_path / "mixlab"
    (fake / "train").mkdir(parents=True)
    (fake / "mixers").mkdir()
    (fake / "mixers" / "base.py").write_text("X = 1\n")
    planted = fake / "train" / "proxy.py"
    planted.write_text("def f():\n    from mixlab.mixers.base import X\n    from ..mixers import base\n")
    assert _imported_units(planted, root=fake) == [("mixers", 2), ("mixers", 3)]
