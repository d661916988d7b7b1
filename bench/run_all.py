"""Run every benchmark under bench/ and collect their headline figures in one table.

Each ``bench/*.py`` script (except this one) runs in its own subprocess with the current Python,
from the repository root, one at a time (benchmarks time things; running two at once would skew both).
A script's headline is its last output line, ``name=value``; every other ``name=value`` line it prints
(the ratios against its in-process baseline) is listed under it. A script that fails, times out or
ends without a headline is shown with its status and the tail of its error output.

Usage: ``python bench/run_all.py [--only regmix,laws] [--timeout 1800] [--json out.json]``.
The last line is ``benchmarks=N``: the number of scripts that produced a headline.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIGURE = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*=\s*(\S+)\s*$")


def figures(text: str) -> list[tuple[str, str]]:
    """Every ``name=value`` line of ``text`` (value kept as printed)."""
    return [(m.group(1), m.group(2)) for line in text.splitlines() if (m := FIGURE.match(line))]


def headline(text: str) -> tuple[str, str] | None:
    """The ``name=value`` on the last non-empty line, if it is one."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    m = FIGURE.match(lines[-1])
    return (m.group(1), m.group(2)) if m else None


def scripts(only: list[str] | None, folder: Path = HERE) -> list[Path]:
    found = sorted(p for p in folder.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if only:
        found = [p for p in found if any(key in p.stem for key in only)]
    return found


def run_one(path: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
        status = "ok" if rc == 0 else f"exit {rc}"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        status = f"timeout {timeout:.0f}s"
    seconds = time.perf_counter() - t0
    head = headline(out) if status == "ok" else None
    if status == "ok" and head is None:
        status = "no headline"
    return {
        "script": path.name,
        "status": status,
        "seconds": round(seconds, 1),
        "headline": head,
        "figures": figures(out),
        "error_tail": "" if status == "ok" else "\n".join((err or out).strip().splitlines()[-5:]),
    }


def print_table(results: list[dict]) -> None:
    width = max([len(r["script"]) for r in results] + [6])
    print(f"{'script':<{width}}  {'status':<12} {'seconds':>8}  figure")
    print("-" * (width + 50))
    for r in results:
        head = r["headline"]
        first = f"{head[0]}={head[1]}  (headline)" if head else ""
        print(f"{r['script']:<{width}}  {r['status']:<12} {r['seconds']:>8.1f}  {first}")
        for name, value in r["figures"]:
            if head and (name, value) == tuple(head):
                continue
            print(f"{'':<{width}}  {'':<12} {'':>8}  {name}={value}")
        if r["error_tail"]:
            for line in r["error_tail"].splitlines():
                print(f"{'':<{width}}  ! {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated substrings of script names to run")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per script")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this path")
    ap.add_argument("--dir", default=str(HERE), help="folder of benchmark scripts (default: this one)")
    args = ap.parse_args(argv)
    only = [s for s in (args.only or "").split(",") if s] or None
    todo = scripts(only, Path(args.dir))
    results = []
    for path in todo:
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        results.append(run_one(path, args.timeout))
    print_table(results)
    if args.json:
        from mixlab.utils.io import atomic_write_json

        atomic_write_json(args.json, results)
    n = sum(1 for r in results if r["headline"])
    print(f"benchmarks={n}")
    return 0 if n == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
