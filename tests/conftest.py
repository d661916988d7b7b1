"""Shared fixtures: a tiny prepared corpus with four domains of different character, and the byte tokenizer.

Single-threaded torch keeps tests deterministic and polite on a shared 2-core machine.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption(
        "--skip-slow",
        action="store_true",
        help="skip the end-to-end tests marked slow (demo, torchrun, Ray, kill-and-resume, sweeps); CI runs them",
    )


class ReliabilityLedger:
    """What the reliability tests exercised, for the table tests/reliability/conftest.py prints:
    ``kill(command, identical)``, ``bad_input(command, clean)``, ``writers(n, rows, lost)``, ``orphans(n)``."""

    def __init__(self):
        self.kills: dict[str, list[int]] = {}
        self.bad: dict[str, list[int]] = {}
        self.writer_runs: list[tuple[int, int, int]] = []
        self.orphan_counts: list[int] = []
        self.tracebacks = 0

    def kill(self, command: str, identical: bool) -> None:
        row = self.kills.setdefault(command, [0, 0])
        row[0] += 1
        row[1] += bool(identical)

    def bad_input(self, command: str, clean: bool, traceback: bool = False) -> None:
        self.tracebacks += bool(traceback)
        row = self.bad.setdefault(command, [0, 0])
        row[0] += 1
        row[1] += bool(clean)

    def writers(self, n: int, rows: int, lost: int) -> None:
        self.writer_runs.append((n, rows, lost))

    def orphans(self, n: int) -> None:
        self.orphan_counts.append(n)


@pytest.fixture()
def mixlab_cli(capsys):
    """Run ``mixlab ARGV`` through the real entry point (its error boundary included); returns
    ``(exit code, stdout + stderr with whitespace runs joined, raw stderr)`` (rich wraps long lines)."""
    from mixlab.cli.main import main

    def run(argv):
        capsys.readouterr()
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code or 0
        else:
            code = 0
        out = capsys.readouterr()
        return code, " ".join((out.out + out.err).split()), out.err

    return run


def pytest_configure(config):
    config.reliability_ledger = ReliabilityLedger()


@pytest.fixture()
def ledger(request):
    """The session's :class:`ReliabilityLedger` (a reliability test records what it tried in it)."""
    return request.config.reliability_ledger


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--skip-slow"):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test; run without --skip-slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have "
    "an had they you were their one all we can her has there been if more when will would who so no time "
    "people year way day man thing woman life child world school state family student group country problem "
    "hand part place case week company system program question work government number night point home water "
    "room mother area money story fact month lot right study book eye job word business issue side kind head "
    "house service friend father power hour game line end member law car city community name president team"
).split()


def english_docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sents = []
        for _ in range(rng.randint(3, 8)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 14))]
            sents.append(" ".join(words).capitalize() + rng.choice([".", ".", ".", "!", "?"]))
        docs.append(" ".join(sents))
    return docs


def code_docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = ["x", "y", "total", "items", "value", "result", "count", "data", "node", "key"]
    docs = []
    for i in range(n):
        lines = [f"def func_{i}({rng.choice(names)}, {rng.choice(names)}):"]
        for _ in range(rng.randint(3, 9)):
            a, b = rng.choice(names), rng.choice(names)
            lines.append(
                rng.choice(
                    [
                        f"    {a} = {b} + {rng.randint(0, 99)}",
                        f"    if {a} > {b}:\n        return {a}",
                        f"    for {a} in range({rng.randint(1, 20)}):\n        {b} += {a}",
                        f"    {a}.append({b})",
                    ]
                )
            )
        lines.append(f"    return {rng.choice(names)}")
        docs.append("\n".join(lines) + "\n")
    return docs


def arithmetic_docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        rows = []
        for _ in range(rng.randint(5, 15)):
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            op = rng.choice("+-*")
            rows.append(f"{a} {op} {b} = {eval(f'{a}{op}{b}')}")
        docs.append("\n".join(rows))
    return docs


def noise_docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#$%^&*() \n"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(200, 600))) for _ in range(n)]


TINY_DOMAINS = {
    "english": lambda: english_docs(100, 1),
    "code": lambda: code_docs(120, 2),
    "arithmetic": lambda: arithmetic_docs(150, 3),
    "noise": lambda: noise_docs(80, 4),
}


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A prepared corpus (byte tokenizer, 5% validation) with four synthetic domains of ~20-40 KB each:
    english-like prose, python-like code, arithmetic, and random characters. Read-only: do not modify."""
    from mixlab.data import prepare_domains

    out = tmp_path_factory.mktemp("tiny_corpus")
    return prepare_domains(
        out, {name: make() for name, make in TINY_DOMAINS.items()}, val_fraction=0.05, seed=0
    )


@pytest.fixture(scope="session")
def builtin_dir(tmp_path_factory):
    """The built-in corpus prepared once per test session (a few seconds) in a temporary cache."""
    from mixlab.data.builtin import prepare_builtin

    out = tmp_path_factory.mktemp("builtin")
    prepare_builtin(out)
    return out


@pytest.fixture(scope="session")
def byte_tokenizer():
    from mixlab.data import ByteTokenizer

    return ByteTokenizer()


class NoiseTargetCorpus:
    """In-memory corpus with the read interface MixtureSampler uses: a pure-noise domain and a
    learnable domain (a deterministic bigram rule), vocab 32."""

    vocab_size = 32

    def __init__(self, n=40_000, seed=0):
        rng = np.random.default_rng(seed)
        self.domains = ["noise", "target"]
        noise = rng.integers(0, 32, size=n)
        start = rng.integers(0, 32, size=n // 64)
        rule = [(s * 5 + 3 * np.arange(64)) % 32 for s in start]
        self._data = {
            ("noise", "train"): noise,
            ("noise", "val"): rng.integers(0, 32, size=4000),
            ("target", "train"): np.concatenate(rule),
            ("target", "val"): np.concatenate(rule[:60]),
        }

    def tokens(self, domain, split="train"):
        return self._data[(domain, split)]

    def train_tokens(self, domain):
        return self.tokens(domain, "train")

    def val_tokens(self, domain):
        return self.tokens(domain, "val")

    def token_counts(self, split="train"):
        return {d: len(self._data[(d, split)]) for d in self.domains}


@pytest.fixture(scope="session")
def noise_target_corpus():
    """In memory: a pure-noise domain and a learnable ``target`` domain (see :class:`NoiseTargetCorpus`)."""
    return NoiseTargetCorpus()
