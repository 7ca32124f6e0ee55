"""The cluster: the arrival process (open loop, closed loop, offline), the global router in front of the
replicas, rejection of requests that can never be served, and the stop conditions (done, time, overload)."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.simulator.clients import client_model
from roofsim.simulator.config import PrefixAwareRouter
from roofsim.simulator.replica import Replica
from roofsim.simulator.request import REJECTED, Request
from roofsim.simulator.workload import ClosedLoopArrivals

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


def _prefix_aware(c: Cluster, r: Request) -> Replica:
    """SGLang's cache_aware policy (config.PrefixAwareRouter): load guard, then longest cached prefix."""
    cfg = c.router_cfg if c.router_cfg is not None else PrefixAwareRouter()
    reps = c.replicas
    loads = [rep.outstanding for rep in reps]
    lo, hi = min(loads), max(loads)
    least = reps[loads.index(lo)]
    if (hi - lo > cfg.balance_abs_threshold and hi > lo * cfg.balance_rel_threshold) or not r.prefix:
        return least
    best, best_n = least, 0
    for rep in reps:  # ties: the lowest index
        if rep.prefix is not None:
            n = rep.prefix.hit_blocks(r.prefix)
            if n > best_n:
                best, best_n = rep, n
    if best_n and best.prefix is not None:
        matched = min(best_n * best.prefix.block_tokens, r.input_tokens)
        if matched > cfg.cache_threshold * r.input_tokens:
            return best
    return least


def _sticky_session(c: Cluster, r: Request) -> Replica:
    if r.session < 0:
        return _least_outstanding(c, r)
    rep = c.session_replica.get(r.session)
    if rep is None:
        rep = c.session_replica[r.session] = _least_outstanding(c, r)
    return rep


ROUTERS: dict[str, Router] = {
    "round_robin": _round_robin,
    "least_outstanding": _least_outstanding,
    "least_kv": _least_kv,
    "power_of_two": _power_of_two,
    "prefix_aware": _prefix_aware,
    "sticky_session": _sticky_session,
}


class Cluster:
    """Routes requests to replicas and decides when the run stops."""

    def __init__(self, env: simpy.Environment, replicas: list[Replica], router_kind: str,
                 requests: list[Request], rng: np.random.Generator, closed_loop: ClosedLoopArrivals | None,
                 max_sim_time_s: float, max_waiting_requests: int | None,
                 progress: Callable[[int, int], None] | None = None, router_cfg: Any = None) -> None:
        if router_kind not in ROUTERS:
            raise UnknownNameError("router kind", router_kind, ROUTERS)
        self.env = env
        self.replicas = replicas
        self.route: Router = ROUTERS[router_kind]
        self.router_cfg = router_cfg  # the router's settings (config.RouterConfig); None = the kind's defaults
        self.session_replica: dict[int, Replica] = {}  # sticky_session: where each session's turns go
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
        # closed loop: requests [0, _phase_limit) belong to the current phase (warm-up with drain, then the rest)
        self._phase_limit = len(requests)
        self._n_warm = 0
        self._warm_settled = 0  # warm-up requests finished or rejected
        self._ramp_left = 0  # "first_token" ramp: clients still to start in this phase
        self._ramp_last = -1  # id of the request whose first token starts the next client
        self.first_token_hook = False  # replicas call on_first_token (only while a first-token ramp runs)
        self.client = client_model(closed_loop.client) if closed_loop is not None else None
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
        reason = self.never_fits(rep, r)
        if reason:
            r.state = REJECTED
            r.replica = rep.idx
            r.reject_reason = reason
            self.rejected += 1
            logger.debug("request %d rejected: %s", r.id, reason)
            if r.warmup:
                self._warm_settled += 1
                self._maybe_end_warmup(self.env.now)
            if r.id == self._ramp_last:  # its first token never comes: start the next client now
                self.on_first_token(r, self.env.now)
            self._check_done()
            return
        rep.queued_prompt_tokens += r.input_tokens
        if rep.frontend_s:
            # the replica's API server handles requests one at a time before the engine sees them
            ready = max(self.env.now, rep.frontend_free_s) + rep.frontend_s
            rep.frontend_free_s = ready
            rep.frontend_n += 1
            heapq.heappush(self._pending, ready)
            self.env.process(self._through_frontend(rep, r, ready - self.env.now))
            return
        self._enqueue(rep, r)

    def never_fits(self, rep: Replica, r: Request) -> str:
        """Why `r`, routed to `rep`, can never be served ('' when it can)."""
        return rep.never_fits(r)

    def _through_frontend(self, rep: Replica, r: Request, delay_s: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(delay_s)
        heapq.heappop(self._pending)
        rep.frontend_n -= 1
        if not self.stopped:
            self._enqueue(rep, r)

    def _enqueue(self, rep: Replica, r: Request) -> None:
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

    def issue_later(self, delay_s: float, ramp: bool = False) -> Generator[simpy.Event, Any, None]:
        """Closed loop: a client sends its next request after `delay_s` (`ramp`: this client's start is the
        one whose first token starts the next client)."""
        yield self.env.timeout(delay_s)
        heapq.heappop(self._pending)
        if self.stopped or self._issued >= len(self.requests):
            return
        r = self.requests[self._issued]
        self._issued += 1
        r.arrival_s = self.env.now
        if ramp:
            self._ramp_last = r.id
        self.deliver(r)

    def _schedule(self, at: float, ramp: bool = False) -> None:
        """Issue the next closed-loop request at `at` (>= now). Goes through the pending heap, so a replica
        that simulates ahead of simpy's clock stops at `at` (next_event_s)."""
        heapq.heappush(self._pending, at)
        # max: `at` comes from a replica's own clock, which can trail simpy's by one rounding step
        self.env.process(self.issue_later(max(at - self.env.now, 0.0), ramp))

    def _start_phase(self, t: float) -> None:
        """Start the clients of a closed-loop phase at time t (t=0: the run; after a drained warm-up: the
        measured phase), all at once or along the ramp."""
        cl = self.closed_loop
        assert cl is not None
        k = min(cl.clients, self._phase_limit - self._issued)
        if k <= 0:
            return
        ramp = cl.ramp_up_s
        if ramp == "first_token":
            self._ramp_left = k - 1
            self.first_token_hook = k > 1
            self._schedule(t, ramp=True)
        else:
            step = float(ramp) / cl.clients
            assert self.client is not None
            spacing, gaps = self.client.start_spacing_s, self.client.gaps(self.rng, k)
            for j in range(k):
                self._schedule(t + j * (step + spacing) + float(gaps[j]))

    def start(self) -> None:
        cl = self.closed_loop
        if cl is None:
            self._pending = [r.arrival_s for r in self.requests]  # sorted, hence a valid heap
            self.env.process(self.open_loop())
        elif cl.ramp_up_s == 0 and cl.warmup_requests == 0 and cl.client == "ideal":
            first = min(cl.clients, len(self.requests))
            for r in self.requests[:first]:
                r.arrival_s = 0.0
            self._issued = first
            for r in self.requests[:first]:
                self.deliver(r)
        else:
            n = len(self.requests)
            self._n_warm = min(cl.warmup_requests * cl.clients, n)
            for r in self.requests[: self._n_warm]:
                r.warmup = True
            if cl.warmup_drain and self._n_warm:
                self._phase_limit = self._n_warm
            self._start_phase(0.0)
        self.env.process(self._time_limit())

    def on_first_token(self, r: Request, t: float) -> None:
        """A request got its first token at t: with a first-token ramp, the next client starts."""
        if r.id != self._ramp_last:
            return
        self._ramp_last = -1
        if self._ramp_left > 0 and self._issued + len(self._pending) < self._phase_limit:
            self._ramp_left -= 1
            self._schedule(t, ramp=True)
        else:
            self._ramp_left = 0
        self.first_token_hook = self._ramp_left > 0

    def _maybe_end_warmup(self, t: float) -> None:
        """Drained warm-up: once every warm-up request has finished (or was rejected), the measured phase starts."""
        if self._phase_limit == self._n_warm < len(self.requests) and self._warm_settled >= self._n_warm:
            self._phase_limit = len(self.requests)
            self._start_phase(t)

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
        cl = self.closed_loop
        if cl is not None:
            if r.warmup:
                self._warm_settled += 1
            if self._issued + len(self._pending) < self._phase_limit:
                assert self.client is not None
                self._schedule(t + cl.think_s + float(self.client.gaps(self.rng, 1)[0]))
            elif r.warmup:
                self._maybe_end_warmup(t)
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
