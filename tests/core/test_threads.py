import os

from mixlab.utils.threads import available_threads


def test_threads_respect_the_user_and_the_load(monkeypatch):
    assert available_threads({"MIXLAB_THREADS": "3"}) == (3, "MIXLAB_THREADS")
    assert available_threads({"OMP_NUM_THREADS": "2"})[0] is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert available_threads({})[0] == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert available_threads({})[0] == 1  # three cores busy: one left
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert available_threads({})[0] == 1  # never fewer than one
