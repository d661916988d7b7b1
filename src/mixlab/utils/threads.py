"""How many CPU threads to use when the machine may be shared.

PyTorch starts as many intra-op threads as the machine has cores. On a shared machine (other
training jobs, other users) that oversubscribes the cores: every thread waits for the others at each
parallel region, and a run slows down far more than its share (one ``mixlab demo`` Group Influence
pass took 1,900 s with four other jobs running). :func:`available_threads` counts the cores this
process may run on (``os.sched_getaffinity``, which respects taskset/cgroup CPU sets, unlike
``os.cpu_count``) and leaves out the cores the 1-minute load average says are busy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def available_threads(environ: Mapping[str, str] | None = None) -> tuple[int | None, str]:
    """``(threads, why)``: ``MIXLAB_THREADS`` when set; None (keep the library default) when the user
    set ``OMP_NUM_THREADS``; else the usable cores minus the busy ones (at least 1)."""
    env = os.environ if environ is None else environ
    if env.get("MIXLAB_THREADS"):
        try:
            n = int(env["MIXLAB_THREADS"])
        except ValueError:
            n = 0
        if n >= 1:
            return n, "MIXLAB_THREADS"
    if env.get("OMP_NUM_THREADS"):
        return None, "OMP_NUM_THREADS is set"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    busy = min(cores - 1, int(round(load)))
    return max(1, cores - busy), f"{cores} usable cores, 1-min load {load:.1f}"


__all__ = ["available_threads"]
