"""The reliability suite's report: after the run, one table of what was tried and how it ended.

The figures come from the ``ledger`` fixture (tests/conftest.py), filled by the tests in this folder and
by the kill-and-resume tests elsewhere that carry the ``reliability`` marker (tests/train, tests/pipeline,
tests/sweep, tests/store), so ``pytest -m reliability`` runs and reports all of them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def load_test_module(relpath: str):
    """A test module of another folder by path (tests are not a package), to reuse its helpers."""
    path = TESTS / relpath
    spec = importlib.util.spec_from_file_location(f"_reliability_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    ledger = getattr(config, "reliability_ledger", None)
    if ledger is None or not (ledger.kills or ledger.bad or ledger.writer_runs or ledger.orphan_counts):
        return
    tr = terminalreporter
    tr.section("reliability")
    tr.write_line(f"{'command':<12} {'kills resumed identically / tried':>34} {'bad inputs clean / tried':>26}")
    commands = sorted(set(ledger.kills) | set(ledger.bad))
    for cmd in commands:
        k = ledger.kills.get(cmd)
        b = ledger.bad.get(cmd)
        tr.write_line(f"{cmd:<12} {(f'{k[1]} / {k[0]}' if k else '-'):>34} {(f'{b[1]} / {b[0]}' if b else '-'):>26}")
    kt = [sum(v[i] for v in ledger.kills.values()) for i in (0, 1)]
    bt = [sum(v[i] for v in ledger.bad.values()) for i in (0, 1)]
    tr.write_line(f"{'total':<12} {f'{kt[1]} / {kt[0]}':>34} {f'{bt[1]} / {bt[0]}':>26}")
    if ledger.bad:
        tr.write_line(f"tracebacks printed on bad inputs: {ledger.tracebacks}")
    for n, rows, lost in ledger.writer_runs:
        tr.write_line(f"concurrent writers: {n} processes, {rows} rows written, {lost} lost")
    if ledger.orphan_counts:
        tr.write_line(f"orphan processes after a killed sweep: {sum(ledger.orphan_counts)} "
                      f"(over {len(ledger.orphan_counts)} killed sweep(s))")
