"""Run an exported Python snippet: its import lines name the real library; the test passes the objects."""

from __future__ import annotations

import ast


def exec_snippet(text: str, names: dict[str, object]) -> dict[str, object]:
    """Execute ``text`` without its import lines, with ``names`` (library objects or fakes) in scope."""
    tree = ast.parse(text)
    body = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    ns: dict[str, object] = dict(names)
    exec(compile(ast.Module(body=body, type_ignores=[]), "<export>", "exec"), ns)  # noqa: S102
    return ns
