"""Where a plan's simulations run: in this process, on a local process pool, or on a Dask cluster; all behind
one `map` so any executor gives the same plan."""

from __future__ import annotations

import multiprocessing
import os
import sys
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol, TypeVar

from roofsim.simulator.planning.spec import PlannerError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs a batch of independent tasks and returns their results in order."""

    workers: int

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """In this process, one task after another (tests, one-core machines)."""

    workers = 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(x) for x in items]

    def close(self) -> None:
        pass


def _noop() -> None:
    return None


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn pool whose workers are all started now, with a bare `__main__` while they start.

    A spawned worker re-runs the parent's `__main__` file. Under Streamlit (and its AppTest) `__main__` is the
    page script, which must not run again in a worker; the planner's tasks only need importable modules, so the
    workers are started while `sys.modules["__main__"]` is a bare module, then it is put back.
    """
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        # submitting `workers` tasks at once makes the executor spawn every worker now (it spawns on demand)
        for f in [pool.submit(_noop) for _ in range(workers)]:
            f.result()
    finally:
        if main is not None:
            sys.modules["__main__"] = main
    return pool


class ProcessExecutor:
    """A local process pool (spawn start method: safe with threads, same behaviour on every OS); one worker per
    core by default. Callers' scripts need the usual `if __name__ == "__main__":` guard."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be >= 1")
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1 and self._pool is None:
            return [fn(x) for x in items]  # not worth starting the pool for
        if self._pool is None:
            self._pool = _start_pool(self.workers)
        return list(self._pool.map(fn, items, chunksize=1))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Tasks on a Dask distributed cluster: a scheduler address (`tcp://host:port`) or a Client/LocalCluster.
    An unreachable address fails after `timeout_s` with a PlannerError instead of hanging."""

    def __init__(self, address: Any, timeout_s: float = 5.0) -> None:
        from distributed import Client  # noqa: PLC0415 (only needed for cluster runs)

        self._own = True
        try:
            if isinstance(address, Client):
                self.client, self._own = address, False
            elif isinstance(address, str):
                self.client = Client(address, timeout=f"{timeout_s}s", set_as_default=False)
            else:  # a cluster object (LocalCluster, ...)
                self.client = Client(address, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise PlannerError(f"cannot connect to the Dask scheduler at {address!r} within {timeout_s:g} s: {e}. "
                               "Is `dask scheduler` running there and reachable?") from None
        info = self.client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if not items:
            return []
        futures = self.client.map(fn, list(items), pure=False)
        return list(self.client.gather(futures))

    def close(self) -> None:
        if self._own:
            self.client.close()


def make_executor(dask_scheduler: str | None = None, workers: int | None = None) -> Executor:
    """Dask when given a scheduler address; else a local process pool (`workers` processes, default all
    cores), or in-process when workers == 1."""
    if dask_scheduler:
        return DaskExecutor(dask_scheduler)
    if workers == 1:
        return SerialExecutor()
    return ProcessExecutor(workers)


__all__ = ["DaskExecutor", "Executor", "ProcessExecutor", "SerialExecutor", "make_executor"]
