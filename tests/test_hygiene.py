"""Code hygiene the whole package keeps: imports at the top, no private names across modules.

An import inside a function hides a dependency from the reader (and from the layering check's
reader, too); the exceptions are optional dependencies (installed through an extra, so importing
them at the top would break ``import mixlab`` without the extra), POSIX-only modules, and the CLI,
whose commands import their engines on use so that ``mixlab --help`` stays fast.
A ``_private`` name imported from another module is an interface nobody promised; make it public
or move it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mixlab"

OPTIONAL = frozenset({
    "accelerate", "datasets", "transformers", "lightgbm", "ray", "megatron", "olmo_core", "streaming",
    "fcntl", "ctypes",
})
"""Top-level modules a function may import on use: optional extras and platform-specific modules."""


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts)


def _function_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                elif isinstance(inner, ast.ImportFrom) and not inner.level:
                    names = [inner.module or ""]
                else:
                    continue
                found += [(inner.lineno, n) for n in names if n.split(".")[0] not in OPTIONAL]
    return sorted(set(found))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_at_the_top(path):
    hidden = _function_imports(ast.parse(path.read_text(encoding="utf-8")))
    assert not hidden, f"{path.relative_to(PACKAGE)}: move to the top of the module: " + ", ".join(
        f"line {line} imports {name}" for line, name in hidden
    )


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_names_across_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = [
        f"line {node.lineno}: {alias.name} from {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mixlab")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
        and not (node.module or "").rsplit(".", 1)[-1].startswith("_")  # a private module's own helpers
    ]
    assert not private, f"{path.relative_to(PACKAGE)} imports private names: " + "; ".join(private)


def test_the_checkers_see_what_they_forbid():
    tree = ast.parse(
        "import numpy\n"
        "def f():\n    import scipy.optimize\n    import ray\n    from mixlab.data import Corpus\n"
    )
    assert _function_imports(tree) == [(3, "scipy.optimize"), (5, "mixlab.data")]
