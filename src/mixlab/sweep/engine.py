"""Proxy-run sweeps: draw N mixtures, train one proxy per mixture on a local process pool or on Ray.

A sweep lives in ``<workspace>/sweeps/<name>/``:

- ``plan.json``: the config and the drawn mixtures (drawn once with RegMix's scheme,
  :func:`mixlab.predictors.sampling.regmix_mixtures`; a re-run reuses them, so results stay comparable);
- ``state.json``: per run ``status`` (``finished``/``failed``), attempts, error, run id, final losses,
  tokens, FLOPs, seconds; rewritten atomically after every run;
- ``mixtures.csv`` / ``losses.csv``: the finished runs in RegMix's CSV shape (``index`` then one column
  per domain), ready for ``mixlab predict`` / ``mixlab propose``.

Each proxy run is also recorded in the run store by the trainer (``mixlab.train.LocalProxyRunner``),
named ``<sweep>-<index>``. A re-run of the sweep skips runs that finished; a failed or killed run is
retried up to ``retries`` times, then marked failed (a later re-run tries it again).

The engines only see a picklable :class:`ProxyTask` and a top-level task function
(:func:`run_proxy_task` by default), so they do not depend on the trainer's internals. The local engine
starts one process per run (at most ``workers`` at a time), so a run that dies (out of memory, killed)
is attributed to its own mixture and cannot take others down with it. The Ray engine submits each run
as a Ray task with its own ``num_cpus``/``num_gpus`` request, on a cluster at ``address`` or a local
Ray instance.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress

from mixlab.data import Corpus
from mixlab.data.targets import resolve_target_paths
from mixlab.errors import ConfigError, MixlabError
from mixlab.mixture import Mixture
from mixlab.predictors.sampling import regmix_mixtures
from mixlab.train import LocalProxyRunner
from mixlab.utils.config import parse_config
from mixlab.utils.io import atomic_write_json, atomic_write_text, read_json, read_yaml, resolve_under
from mixlab.utils.lock import DirLock

log = logging.getLogger(__name__)


class SweepConfig(BaseModel):
    """A proxy sweep: which corpus, how many mixtures, how each proxy trains and where it runs."""

    model_config = ConfigDict(extra="forbid")

    corpus: str
    """Path of a prepared corpus (``mixlab prepare``)."""
    workspace: str
    """Workspace holding the run store and ``sweeps/<name>/``."""
    name: str = Field("sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Sweep name: its folder and the prefix of its run names."""
    n: int = Field(8, ge=1)
    """Number of mixtures (proxy runs)."""
    tokens: int = Field(1_000_000, ge=1)
    """Training tokens per proxy run."""
    model: str | dict[str, Any] = "tiny-1m"
    """Proxy model preset (or GPTConfig mapping)."""
    seq_len: int = Field(128, ge=1)
    """Tokens per training sequence."""
    batch_size: int = Field(8, ge=1)
    """Sequences per batch."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate of the proxies."""
    seed: int = 0
    """Seed of the mixture draws; every proxy also trains with this seed."""
    max_epochs: float | None = Field(15.0, gt=0)
    """Availability cap on the drawn mixtures: at most this many passes over a domain (RegMix: 15)."""
    temperature: float = Field(0.5, gt=0)
    """Temperature of the prior ``tokens^temperature`` the Dirichlet draws centre on (RegMix: 0.5)."""
    engine: Literal["local", "ray"] = "local"
    """``local`` (a pool of processes on this machine) or ``ray``."""
    workers: int = Field(1, ge=1)
    """Local engine: proxy runs at once."""
    threads: int = Field(1, ge=1)
    """Torch CPU threads per proxy run."""
    address: str | None = None
    """Ray engine: cluster address ``HOST:PORT`` (default: start or join a local instance)."""
    num_cpus: float = Field(1.0, ge=0)
    """Ray engine: CPUs each proxy task requests."""
    num_gpus: float = Field(0.0, ge=0)
    """Ray engine: GPUs each proxy task requests."""
    retries: int = Field(1, ge=0)
    """Extra attempts for a run that fails or is killed before it is marked failed."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Further ``TrainConfig`` fields for every proxy (``eval_batches``, ``device``, ``lr_schedule``...)."""
    targets: list[str | dict[str, Any]] = Field(default_factory=list)
    """Evaluation-only targets every proxy also evaluates (``mixlab.data.targets``); their losses are
    ``target:<name>`` columns of ``losses.csv``, for ``mixlab propose --target target:<name>``."""

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, where: str = "sweep config") -> SweepConfig:
        return parse_config(cls, dict(data), where)


@dataclass(frozen=True)
class ProxyTask:
    """Everything one proxy run needs, as plain picklable data."""

    sweep: str
    index: int
    mixture: dict[str, float]
    tokens: int
    seed: int
    corpus: str
    workspace: str
    model: str | dict[str, Any]
    seq_len: int
    batch_size: int
    lr: float
    threads: int = 1
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def run_name(self) -> str:
        return f"{self.sweep}-{self.index:04d}"


def run_proxy_task(task: ProxyTask) -> dict[str, Any]:
    """Train (or reuse) the proxy of ``task`` with ``mixlab.train.LocalProxyRunner``; plain-data result."""

    torch.set_num_threads(task.threads)

    runner = LocalProxyRunner(
        task.corpus, model=task.model, seq_len=task.seq_len, batch_size=task.batch_size, lr=task.lr,
        workspace=task.workspace, kind="proxy", method="sweep", **task.train,
    )
    res = runner.train(Mixture(task.mixture), tokens=task.tokens, seed=task.seed, name=task.run_name)
    return {
        "run_id": res.run_id,
        "final": {k: float(v) for k, v in res.final.items()},
        "tokens": int(res.tokens),
        "flops": float(res.flops),
        "seconds": float(res.seconds),
    }


TaskFn = Callable[[ProxyTask], dict[str, Any]]


@dataclass
class SweepResult:
    """Where the sweep stands after :meth:`Sweep.run`."""

    directory: Path
    finished: list[int]
    failed: list[int]
    skipped: list[int]
    """Runs already finished before this call (not run again)."""
    executed: list[int]
    """Runs attempted in this call."""
    state: dict[str, Any]


class Sweep:
    """One sweep (see the module docstring): ``Sweep(config).run()``."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config

    @property
    def directory(self) -> Path:
        return resolve_under(Path(self.config.workspace) / "sweeps", self.config.name)

    # -- plan and state ---------------------------------------------------------------------------
    def plan(self) -> list[Mixture]:
        """The sweep's mixtures: read from ``plan.json``, or drawn and saved on the first call."""
        path = self.directory / "plan.json"
        if path.exists():
            data = read_json(path)
            old = SweepConfig.parse(data.get("config", {}), where=str(path))
            same = ("n", "seed", "tokens", "max_epochs", "temperature")
            changed = [k for k in same if getattr(old, k) != getattr(self.config, k)]
            if changed:
                raise ConfigError(
                    f"{path}: sweep {self.config.name!r} was planned with different {changed}; use a new --name "
                    "or the original settings"
                )
            return [Mixture(m) for m in data["mixtures"]]

        corpus = Corpus.open(self.config.corpus)
        counts = corpus.token_counts("train")
        mixtures = regmix_mixtures(
            counts, self.config.n, domains=list(corpus.domains), tokens=self.config.tokens,
            max_epochs=self.config.max_epochs, temperature=self.config.temperature, seed=self.config.seed,
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"config": self.config.model_dump(), "mixtures": [m.to_dict() for m in mixtures]})
        return mixtures

    def state(self) -> dict[str, Any]:
        path = self.directory / "state.json"
        return read_json(path) if path.exists() else {"runs": {}}

    def _save_state(self, state: dict[str, Any], mixtures: list[Mixture]) -> None:
        atomic_write_json(self.directory / "state.json", state)
        self._export_csv(state, mixtures)

    def _export_csv(self, state: dict[str, Any], mixtures: list[Mixture]) -> None:
        done = sorted(int(i) for i, r in state["runs"].items() if r.get("status") == "finished")
        if not done:
            return
        domains = mixtures[0].domains
        losses = sorted({k for i in done for k in state["runs"][str(i)]["final"]})
        mix_lines = [",".join(["index", *domains])]
        loss_lines = [",".join(["index", *losses])]
        for i in done:
            mix_lines.append(",".join([str(i), *(repr(mixtures[i][d]) for d in domains)]))
            fin = state["runs"][str(i)]["final"]
            loss_lines.append(",".join([str(i), *(repr(float(fin.get(k, float("nan")))) for k in losses)]))
        atomic_write_text(self.directory / "mixtures.csv", "\n".join(mix_lines) + "\n")
        atomic_write_text(self.directory / "losses.csv", "\n".join(loss_lines) + "\n")

    def tasks(self, mixtures: list[Mixture]) -> list[ProxyTask]:
        c = self.config
        return [
            ProxyTask(
                sweep=c.name, index=i, mixture=m.to_dict(), tokens=c.tokens, seed=c.seed,
                corpus=str(Path(c.corpus).resolve()), workspace=str(Path(c.workspace).resolve()), model=c.model,
                seq_len=c.seq_len, batch_size=c.batch_size, lr=c.lr, threads=c.threads,
                train=dict(c.train) | ({"targets": list(c.targets)} if c.targets else {}),
            )
            for i, m in enumerate(mixtures)
        ]

    # -- running ---------------------------------------------------------------------------------
    def _run(self, *, task_fn: TaskFn, progress: bool, start_method: str | None) -> SweepResult:
        mixtures = self.plan()
        state = self.state()
        runs: dict[str, Any] = state.setdefault("runs", {})
        tasks = self.tasks(mixtures)
        skipped = [t.index for t in tasks if runs.get(str(t.index), {}).get("status") == "finished"]
        todo = [t for t in tasks if t.index not in set(skipped)]
        if skipped:
            log.info("sweep %s: %d of %d runs already finished, skipping them", self.config.name, len(skipped), len(tasks))

        def record(task: ProxyTask, ok: bool, payload: Any, attempt: int) -> None:
            entry = {"index": task.index, "mixture": task.mixture, "attempts": attempt}
            if ok:
                entry.update(status="finished", **payload)
            else:
                entry.update(status="failed", error=str(payload)[:2000])
            runs[str(task.index)] = entry
            self._save_state(state, mixtures)

        bar = _Progress(len(todo), f"sweep {self.config.name}", enabled=progress)
        with bar:
            if self.config.engine == "ray":
                _run_ray(todo, task_fn, self.config, record, bar)
            else:
                _run_local(todo, task_fn, self.config, record, bar, start_method)
        finished = sorted(int(i) for i, r in runs.items() if r["status"] == "finished")
        failed = sorted(int(i) for i, r in runs.items() if r["status"] == "failed")
        self._save_state(state, mixtures)
        return SweepResult(self.directory, finished, failed, skipped, [t.index for t in todo], state)

    def run(
        self, *, task_fn: TaskFn = run_proxy_task, progress: bool = False, start_method: str | None = None
    ) -> SweepResult:
        """Run every unfinished proxy; returns which runs finished, failed, were skipped or executed.

        The sweep's folder is locked meanwhile: a second ``mixlab sweep`` of the same name gets an error
        naming this process instead of starting workers on the same run directories."""
        self.plan()  # checks the corpus and settings before anything is created
        with DirLock(self.directory, what="sweep"):
            return self._run(task_fn=task_fn, progress=progress, start_method=start_method)


class _Progress:
    """A rich progress bar (or nothing, when disabled)."""

    def __init__(self, total: int, label: str, *, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled and self.total:

            self._bar = Progress(transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


def _die_with(parent: int, *, host: str | None = None) -> None:
    """Make this worker stop when the sweep process ``parent`` is gone, however it died (SIGKILL too).

    On Linux the kernel sends SIGTERM the moment the parent exits (``PR_SET_PDEATHSIG``, for a local
    worker); everywhere a daemon thread also checks twice a second that the parent lives (for a Ray worker
    on the driver's host, whose parent is the raylet, by its pid) and ends the process if not. The
    worker's last checkpoint is complete (writes are atomic), so the re-run sweep resumes it.
    """
    local = parent == os.getppid()
    if local and sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if host is not None and host != socket.gethostname():
        return  # a driver on another machine: Ray itself cancels its tasks when it goes

    def gone() -> bool:
        if local:
            return os.getppid() != parent
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def watch() -> None:
        while not gone():
            time.sleep(0.5)
        log.warning("sweep process %d is gone; stopping this proxy run (it resumes when the sweep is re-run)", parent)
        os._exit(3)

    if gone():
        os._exit(3)
    threading.Thread(target=watch, name="mixlab-parent-watch", daemon=True).start()


def _child(task_fn: TaskFn, task: ProxyTask, conn: Any, parent: int) -> None:
    _die_with(parent)
    try:
        msg: tuple[str, Any] = ("ok", task_fn(task))
    except BaseException as exc:  # the parent records the message; the run is retried or marked failed
        msg = ("error", f"{type(exc).__name__}: {exc}")
    try:
        conn.send(msg)
    except OSError:  # BrokenPipeError: the sweep that would read it is gone; nothing to report to
        os._exit(3)
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def _ray_task(task_fn: TaskFn, task: ProxyTask, driver: int, host: str) -> dict[str, Any]:
    """A Ray task: the proxy run, stopped if the driver (the sweep) dies on this host."""
    _die_with(driver, host=host)
    return task_fn(task)


def _run_local(
    todo: list[ProxyTask], task_fn: TaskFn, cfg: SweepConfig, record: Callable[..., None], bar: _Progress,
    start_method: str | None,
) -> None:
    """One process per run, ``cfg.workers`` at a time; a dead process fails only its own run."""
    ctx = mp.get_context(start_method or "spawn")
    queue = [(t, 1) for t in todo]
    live: dict[Any, tuple[Any, Any, ProxyTask, int]] = {}
    try:
        _local_loop(ctx, queue, live, task_fn, cfg, record, bar)
    finally:  # an error or Ctrl-C/SIGTERM here: stop the workers rather than leave them training
        for proc, _conn, _, _ in live.values():
            if proc.is_alive():
                proc.terminate()
        for proc, conn, _, _ in live.values():
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()


def _local_loop(
    ctx: Any, queue: list[tuple[ProxyTask, int]], live: dict[Any, tuple[Any, Any, ProxyTask, int]], task_fn: TaskFn,
    cfg: SweepConfig, record: Callable[..., None], bar: _Progress,
) -> None:

    while queue or live:
        while queue and len(live) < cfg.workers:
            task, attempt = queue.pop(0)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(task_fn, task, child, os.getpid()), daemon=True)
            proc.start()
            child.close()
            live[proc.sentinel] = (proc, parent, task, attempt)
            log.info("sweep: started run %d (attempt %d) in process %d", task.index, attempt, proc.pid)
        for sentinel in wait(list(live)):
            proc, conn, task, attempt = live.pop(sentinel)
            msg = None
            try:
                if conn.poll():
                    msg = conn.recv()
            except (EOFError, OSError):
                msg = None
            proc.join()
            conn.close()
            if msg is None:
                msg = ("error", f"process killed (exit code {proc.exitcode})")
            _settle(task, attempt, msg, cfg, queue, record, bar)


def _settle(
    task: ProxyTask, attempt: int, msg: tuple[str, Any], cfg: SweepConfig, queue: list[tuple[ProxyTask, int]],
    record: Callable[..., None], bar: _Progress,
) -> None:
    status, payload = msg
    if status == "ok":
        record(task, True, payload, attempt)
        bar.advance()
    elif attempt <= cfg.retries:
        log.warning("sweep: run %d failed (%s); retrying (%d of %d)", task.index, payload, attempt, cfg.retries)
        queue.append((task, attempt + 1))
    else:
        log.error("sweep: run %d failed after %d attempt(s): %s", task.index, attempt, payload)
        record(task, False, payload, attempt)
        bar.advance()


def _run_ray(
    todo: list[ProxyTask], task_fn: TaskFn, cfg: SweepConfig, record: Callable[..., None], bar: _Progress
) -> None:
    """Each run is a Ray task requesting ``num_cpus``/``num_gpus``; failures are retried by this loop."""
    try:
        import ray
    except ImportError:
        raise MixlabError("the Ray engine needs Ray: pip install 'mixlab[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            if cfg.address:
                ray.init(address=cfg.address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, int(cfg.num_cpus * max(cfg.workers, 1))), include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise MixlabError(f"cannot connect to Ray at {cfg.address or 'a local instance'}: {exc}") from None
    try:
        remote = ray.remote(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_retries=0)(_ray_task)
        queue = [(t, 1) for t in todo]
        pending: dict[Any, tuple[ProxyTask, int]] = {}
        driver, host = os.getpid(), socket.gethostname()
        while queue or pending:
            while queue:
                task, attempt = queue.pop(0)
                pending[remote.remote(task_fn, task, driver, host)] = (task, attempt)
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task, attempt = pending.pop(ref)
                try:
                    msg: tuple[str, Any] = ("ok", ray.get(ref))
                except Exception as exc:  # task error, worker crash or node loss: the run failed
                    msg = ("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                _settle(task, attempt, msg, cfg, queue, record, bar)
    finally:
        if started:  # a local instance this sweep started: do not leave it running
            ray.shutdown()


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sweep config mapping from YAML/JSON (``mixlab sweep --config``)."""

    p = Path(path)
    data = read_json(p) if p.suffix == ".json" else read_yaml(p)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a mapping of sweep settings")
    data = dict(data)
    if isinstance(data.get("targets"), list):  # relative target paths are relative to the config file

        data["targets"] = resolve_target_paths(data["targets"], p.parent)
    return data


__all__ = ["ProxyTask", "Sweep", "SweepConfig", "SweepResult", "load_config", "run_proxy_task"]
