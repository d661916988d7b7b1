"""Proxy-run sweeps on a local process pool or Ray (see :mod:`mixlab.sweep.engine`)."""

from mixlab.sweep.engine import ProxyTask, Sweep, SweepConfig, SweepResult, load_config, run_proxy_task

__all__ = ["ProxyTask", "Sweep", "SweepConfig", "SweepResult", "load_config", "run_proxy_task"]
