"""Bad inputs per command: binary files, truncated files, wrong encodings, garbage YAML/CSV/JSON, folders
and missing files where files belong, read-only output paths. Each must end in a clean error (exit 2,
no traceback) with nothing changed on disk. Property-based (hypothesis) over the file contents."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mixlab.cli.main import main

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("MIXLAB_RELIABILITY_EXAMPLES", "12"))  # per command; raise it for a deeper search

MIX_CSV = "index,english,code\n0,0.5,0.5\n1,0.2,0.8\n2,0.9,0.1\n3,0.6,0.4\n"
LOSS_CSV = "index,english,code\n0,2.1,2.2\n1,2.4,1.9\n2,1.8,2.6\n3,2.0,2.3\n"
WIDE_CSV = "r_a,r_b,step,loss_a\n0.5,0.5,10,2.0\n0.2,0.8,10,2.2\n0.5,0.5,20,1.8\n0.2,0.8,20,2.0\n"


def _valid(kind: str) -> bytes:
    """A valid-looking input of each kind, pointing at a corpus that does not exist, so that even a
    truncation that stays valid fails before any work (and writes nothing)."""
    no_corpus = "/nonexistent/mixlab-corpus"
    texts = {
        "train": yaml.safe_dump({"train": {"corpus": no_corpus, "model": "nano-100k", "tokens": 4096,
                                           "mixture": {"english": 0.5, "code": 0.5}}}),
        "run": yaml.safe_dump({"train": {"corpus": no_corpus, "tokens": 4096}, "mixer": "tikmix-d", "stages": 2}),
        "sweep": yaml.safe_dump({"corpus": no_corpus, "n": 2, "tokens": 1024}),
        "prepare": yaml.safe_dump({"output_dir": "out", "domains": {"a": {"path": "/nonexistent/a.txt"}}}),
        # one stage whose last weight needs all its digits: no truncation of it is a valid schedule
        "export": yaml.safe_dump([{"start_step": 0, "mixture": {"a": 0.125, "b": 0.875}}], sort_keys=False),
        "predict": MIX_CSV,
        "propose": LOSS_CSV,
        "fit-law": WIDE_CSV,
        "corpus": json.dumps({"format_version": 1, "dtype": "uint16", "domains": {"a": {}}}),
        "eval": yaml.safe_dump({"corpus": no_corpus, "model": "nano-100k"}),
        "runs": "",
    }
    return texts[kind].encode()


def garbage(kind: str):
    """Contents that are not a usable input of ``kind``: random bytes, the valid file cut short, the
    valid file in UTF-16 or with Latin-1 bytes, NUL bytes, random text, random YAML/JSON structure."""
    valid = _valid(kind)
    # a CSV cut anywhere in its rows can still be a valid (shorter) table, so CSVs are cut in the header
    end = valid.index(b"\n") if kind in ("predict", "propose", "fit-law") else len(valid) - 2
    cut = st.integers(min_value=0, max_value=max(0, end)).map(lambda n: valid[:n])
    structured = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    )
    return st.one_of(
        st.binary(min_size=1, max_size=400).filter(lambda b: b.strip() and b != valid),
        cut,
        st.just(valid.decode().encode("utf-16")),
        st.just(valid.replace(b"a", b"\xe9", 3) if b"a" in valid else b"\xe9\xff"),
        st.just(valid[: len(valid) // 2] + b"\x00\x00" + valid[len(valid) // 2:]),
        st.text(min_size=1, max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        structured.map(lambda v: yaml.safe_dump(v).encode()),
        structured.map(lambda v: json.dumps(v).encode()),
    )


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st_ = p.lstat()
            out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns if p.is_file() else 0)
    return out


class Sandbox:
    """A working folder (the cwd and the workspace) for one command's bad inputs."""

    def __init__(self, root: Path, monkeypatch, capsys, ledger, command: str) -> None:
        self.root, self.capsys, self.ledger, self.command = root, capsys, ledger, command
        root.mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(root)
        monkeypatch.setenv("MIXLAB_WORKSPACE", str(root / "ws"))
        monkeypatch.delenv("MIXLAB_DEBUG", raising=False)

    def check(self, argv: list[str], *, keep: tuple[str, ...] = ()) -> None:
        """Run ``mixlab argv``; it must exit 2 with an ``error:`` and no traceback, and leave the
        folder as it was (``keep`` lists the inputs the test itself placed)."""
        before = _snapshot(self.root)
        self.capsys.readouterr()
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
        err = self.capsys.readouterr().err
        after = _snapshot(self.root)
        clean = code == 2 and "Traceback" not in err and "error:" in err and before == after
        self.ledger.bad_input(self.command, clean, traceback="Traceback" in err)
        assert code == 2, (argv, code, err[-1500:])
        assert "Traceback" not in err and "error:" in err, err[-1500:]
        assert before == after, sorted(set(after.items()) ^ set(before.items()))


def _cases(tiny_corpus, root: Path):
    """command -> (input kind, file name, argv builder taking the input path)."""
    mix, loss = root / "mix.csv", root / "loss.csv"
    return {
        "train": ("train", "run.yaml", lambda p: ["train", "--config", str(p)]),
        "run": ("run", "run.yaml", lambda p: ["run", "--config", str(p)]),
        "sweep": ("sweep", "sweep.yaml", lambda p: ["sweep", "--config", str(p)]),
        "prepare": ("prepare", "corpus.yaml", lambda p: ["prepare", "--config", str(p)]),
        "export": ("export", "schedule.yaml", lambda p: ["export", str(p), "--format", "megatron"]),
        "predict": ("predict", "mix.csv", lambda p: [
            "predict", "--train-mixtures", str(p), "--train-losses", str(loss), "-t", "english",
            "--test-mixtures", str(mix), "--out", str(root / "preds.csv")]),
        "propose": ("propose", "loss.csv", lambda p: [
            "propose", "--train-mixtures", str(mix), "--train-losses", str(p), "--out", str(root / "best.yaml")]),
        "fit-law": ("fit-law", "runs.csv", lambda p: ["fit-law", "--data", str(p), "--out", str(root / "pred.csv")]),
        "corpus": ("corpus", "manifest.json", lambda p: ["corpus", "info", str(p.parent)]),
        "entropy": ("corpus", "manifest.json", lambda p: ["entropy", str(p.parent)]),
        "eval": ("eval", "config.yaml", lambda p: ["eval", str(p.parent)]),
        "runs": ("runs", "mixlab.db", lambda p: ["runs", "list", "--workspace", str(p.parent)]),
    }


COMMANDS = ["train", "run", "sweep", "prepare", "export", "predict", "propose", "fit-law", "corpus", "entropy",
            "eval", "runs"]


def _place(command: str, root: Path, name: str, data: bytes) -> Path:
    """Write the bad input where the command reads it (a corpus folder, a run folder, a workspace)."""
    folder = {"corpus": root / "corp", "entropy": root / "corp", "eval": root / "rundir", "runs": root / "wsx"}
    target_dir = folder.get(command, root)
    target_dir.mkdir(exist_ok=True)
    if command == "eval":
        (target_dir / "model.json").write_text(json.dumps({"gpt": {"n_layer": 1}}))
    path = target_dir / name
    path.write_bytes(data)
    return path


@pytest.fixture(params=COMMANDS)
def case(request, tiny_corpus, tmp_path, monkeypatch, capsys, ledger):
    """One command's sandbox (with the valid companion CSVs) and how to call it on an input file."""
    command = request.param
    root = tmp_path / "sandbox"
    box = Sandbox(root, monkeypatch, capsys, ledger, command)
    (root / "mix.csv").write_text(MIX_CSV)
    (root / "loss.csv").write_text(LOSS_CSV)
    kind, name, argv = _cases(tiny_corpus, root)[command]
    return command, root, box, kind, name, argv


def test_garbage_file_contents_are_clean_errors(case):
    command, root, box, kind, name, argv = case

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.filter_too_much])
    @given(data=garbage(kind))
    def run(data: bytes) -> None:
        path = _place(command, root, name, data)
        box.check(argv(path))

    run()


def test_missing_files_and_folders_given_as_files(case):
    command, root, box, kind, name, argv = case
    box.check(argv(root / "missing" / name))  # a path that does not exist
    if command not in ("corpus", "entropy", "eval", "runs"):
        (root / "afolder").mkdir()
        box.check(argv(root / "afolder"))  # a folder where a file belongs


def test_read_only_and_impossible_output_paths(tiny_corpus, tmp_path, monkeypatch, capsys, ledger):
    root = tmp_path / "sandbox"
    box = Sandbox(root, monkeypatch, capsys, ledger, "outputs")
    (root / "mix.csv").write_text(MIX_CSV)
    (root / "loss.csv").write_text(LOSS_CSV)
    (root / "afile").write_text("x")
    pred = ["predict", "--train-mixtures", "mix.csv", "--train-losses", "loss.csv", "-t", "english",
            "--test-mixtures", "mix.csv"]
    box.check([*pred, "--out", "/proc/mixlab-preds.csv"])  # a read-only file system
    box.check([*pred, "--out", "afile/preds.csv"])  # a file on the way
    box.check([*pred, "--out", "no/such/folder/preds.csv"])
    shutil.copytree(tiny_corpus.root, root / "corp")
    train = ["train", "--corpus", "corp", "--model", "nano-100k", "--tokens", "512", "--seq-len", "32",
             "--batch-size", "4", "--no-progress"]
    box.check([*train, "--workspace", "afile/ws"])  # a workspace under a file
    box.check([*train, "--workspace", "/proc/mixlab-ws"])  # a workspace on a read-only file system
    box.check(["runs", "export", "-o", "/proc/mixlab-m.csv", "--workspace", "afile"])
    if os.geteuid() != 0:  # root ignores permissions; the checks above cover read-only for root
        ro = root / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            box.check([*pred, "--out", "ro/preds.csv"])
            box.check([*train, "--workspace", "ro/ws"])
        finally:
            ro.chmod(0o755)
