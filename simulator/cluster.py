"""The cluster: the arrival process (open loop, closed loop, offline), the global router in front of the
replicas, rejection of requests that can never be served, and the stop conditions (done, time, overload)."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from hardware_specs.errors import UnknownNameError
from simulator.replica import Replica
from simulator.request import REJECTED, Request

logger = logging.getLogger(__name__)

Router = Callable[["Cluster", Request], Replica]


def _round_robin(c: Cluster, r: Request) -> Replica:
    rep = c.replicas[c._rr % len(c.replicas)]
    c._rr += 1
    return rep


def _least_outstanding(c: Cluster, r: Request) -> Replica:
    return min(c.replicas, key=lambda rep: rep.outstanding)


def _least_kv(c: Cluster, r: Request) -> Replica:
    def load(rep: Replica) -> float:
        # blocks in use plus the prompts of queued requests, as a fraction of the replica's pool
        return (rep.pool.used + rep.pool.blocks_for(rep.queued_prompt_tokens)) / rep.pool.total
    return min(c.replicas, key=load)


def _power_of_two(c: Cluster, r: Request) -> Replica:
    n = len(c.replicas)
    if n == 1:
        return c.replicas[0]
    i, j = c.rng.choice(n, size=2, replace=False)
    a, b = c.replicas[int(i)], c.replicas[int(j)]
    return a if (a.outstanding, a.idx) <= (b.outstanding, b.idx) else b


ROUTERS: dict[str, Router] = {
    "round_robin": _round_robin,
    "least_outstanding": _least_outstanding,
    "least_kv": _least_kv,
    "power_of_two": _power_of_two,
}


class Cluster:
    """Routes requests to replicas and decides when the run stops."""

    def __init__(self, env: simpy.Environment, replicas: list[Replica], router_kind: str,
                 requests: list[Request], rng: np.random.Generator, closed_loop: tuple[int, float] | None,
                 max_sim_time_s: float, max_waiting_requests: int | None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        if router_kind not in ROUTERS:
            raise UnknownNameError("router kind", router_kind, ROUTERS)
        self.env = env
        self.replicas = replicas
        self.route: Router = ROUTERS[router_kind]
        self.requests = requests
        self.rng = rng
        self.closed_loop = closed_loop
        self.max_sim_time_s = max_sim_time_s
        self.max_waiting_requests = max_waiting_requests
        self.progress = progress
        self._rr = 0
        self.completed = 0
        self.rejected = 0
        self.stopped = False
        self.stop_reason = ""
        self.done_event = env.event()
        self._pending: list[float] = []  # times of arrivals not yet delivered (heap)
        self._issued = 0
        self.last_completion_s = 0.0
        for rep in replicas:
            rep.cluster = self

    @property
    def next_event_s(self) -> float:
        """Time of the next event from outside the replicas: the next arrival or the stop time."""
        p = self._pending
        return p[0] if p and p[0] < self.max_sim_time_s else self.max_sim_time_s

    # ---- arrivals ------------------------------------------------------------------------------------
    def deliver(self, r: Request) -> None:
        rep = self.route(self, r)
        reason = rep.never_fits(r)
        if reason:
            r.state = REJECTED
            r.replica = rep.idx
            r.reject_reason = reason
            self.rejected += 1
            logger.debug("request %d rejected: %s", r.id, reason)
            self._check_done()
            return
        rep.queued_prompt_tokens += r.input_tokens
        rep.enqueue(r)
        if self.max_waiting_requests is not None and len(rep.waiting) > self.max_waiting_requests:
            self.stop(f"overload: {len(rep.waiting)} requests waiting at replica {rep.idx} "
                      f"(max_waiting_requests={self.max_waiting_requests})")

    def open_loop(self) -> Generator[simpy.Event, Any, None]:
        """Deliver requests at their trace arrival times; all requests due now are delivered before any
        replica forms its next batch."""
        env = self.env
        reqs = self.requests
        n = len(reqs)
        i = 0
        while i < n and not self.stopped:
            t = reqs[i].arrival_s
            if t > env.now:
                yield env.timeout(t - env.now)
            while i < n and reqs[i].arrival_s <= env.now:
                heapq.heappop(self._pending)
                self.deliver(reqs[i])
                i += 1

    def issue_later(self, delay_s: float) -> Generator[simpy.Event, Any, None]:
        """Closed loop: the client whose request finished sends its next one after `delay_s`."""
        yield self.env.timeout(delay_s)
        if self.stopped or self._issued >= len(self.requests):
            return
        r = self.requests[self._issued]
        self._issued += 1
        heapq.heappop(self._pending)
        r.arrival_s = self.env.now
        self.deliver(r)

    def start(self) -> None:
        if self.closed_loop is None:
            self._pending = [r.arrival_s for r in self.requests]  # sorted, hence a valid heap
            self.env.process(self.open_loop())
        else:
            clients, _ = self.closed_loop
            first = min(clients, len(self.requests))
            for r in self.requests[:first]:
                r.arrival_s = 0.0
            self._issued = first
            for r in self.requests[:first]:
                self.deliver(r)
        self.env.process(self._time_limit())

    def _time_limit(self) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.max_sim_time_s)
        if not self.stopped:
            self.stop(f"max_sim_time_s={self.max_sim_time_s:g} reached")

    # ---- completions ---------------------------------------------------------------------------------
    def on_finish(self, r: Request, t: float) -> None:
        self.completed += 1
        if t > self.last_completion_s:
            self.last_completion_s = t
        if self.progress is not None and (self.completed & 63) == 0:
            self.progress(self.completed + self.rejected, len(self.requests))
        if self.closed_loop is not None and self._issued + len(self._pending) < len(self.requests):
            _, think = self.closed_loop
            at = t + think
            heapq.heappush(self._pending, at)
            self.env.process(self.issue_later(at - self.env.now))
        self._check_done()

    def _check_done(self) -> None:
        if self.completed + self.rejected >= len(self.requests) and not self.stopped:
            self.stopped = True
            self.stop_reason = "completed"
            self.done_event.succeed()

    def stop(self, reason: str) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.stop_reason = reason
        logger.warning("simulation stopped early: %s", reason)
        self.done_event.succeed()


__all__ = ["Cluster", "ROUTERS"]
