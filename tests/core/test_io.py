import os
import stat

import pytest

from mixlab.utils.io import atomic_open, atomic_write_text


def test_atomic_write_replaces_whole_file_with_ordinary_permissions(tmp_path):
    path = tmp_path / "sub" / "report.html"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary file left


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "good")
    with pytest.raises(RuntimeError), atomic_open(path) as fh:
        fh.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
