"""Disaggregated prefill/decode serving: requests are prefilled in a prefill pool, wait for KV blocks in a decode
replica, and their prompt KV crosses a link (one FIFO queue per prefill replica's egress and per decode replica's
ingress) before they decode there. Model, definitions and citations: docs/disaggregation.md."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from roofsim.simulator.cluster import Cluster
from roofsim.simulator.config import KVLinkConfig
from roofsim.simulator.metrics import LatencyStats, replica_usage
from roofsim.simulator.replica import Lane, Replica
from roofsim.simulator.request import Request

# Latency of a KV copy staged through host memory: one DMA set-up per direction. Assumption (no measurement
# here): a few microseconds per cudaMemcpyAsync launch, two of them.
PCIE_COPY_LATENCY_S = 10e-6


@dataclass(frozen=True, slots=True)
class LinkRate:
    """The resolved link between one prefill replica and one decode replica."""

    bytes_per_s_per_gpu: float
    latency_s: float


def link_rate(link: KVLinkConfig, prefill: Replica, decode: Replica) -> LinkRate:
    """Per-GPU bandwidth and latency of `link` between two replicas: the config's values, else the slower of the
    two GPUs' hardware-file figures for that kind of link."""
    ic = (prefill.cost.hardware.interconnect, decode.cost.hardware.interconnect)
    if link.kind == "nvlink":
        bw, lat = min(i.scaleup_bytes_per_s for i in ic), max(i.scaleup_latency_s for i in ic)
    elif link.kind == "network":
        bw, lat = min(i.scaleout_bytes_per_s for i in ic), max(i.scaleout_latency_s for i in ic)
    else:
        bw, lat = min(i.pcie_bytes_per_s for i in ic), PCIE_COPY_LATENCY_S
    bw = link.bytes_per_s_per_gpu if link.bytes_per_s_per_gpu is not None else bw
    if bw <= 0:
        raise ValueError(f"kv_link kind={link.kind!r}: the hardware files of {prefill.cost.hardware.id} and "
                         f"{decode.cost.hardware.id} give it no bandwidth (0); set kv_link.bytes_per_s_per_gpu")
    return LinkRate(bw, link.latency_s if link.latency_s is not None else lat)


def prompt_kv_bytes(rep: Replica, tokens: int) -> float:
    """KV bytes that `tokens` cached tokens of one sequence occupy on the replica (all GPUs of the attention rank
    holding it, seq_gpus): full
    layers grow with every token, sliding-window layers stop at the window, recurrent/state layers are one
    fixed-size state per sequence (model/memory.py MemoryPlan)."""
    p = rep.plan
    grow = p.kv_bytes_per_token - p.window_bytes_per_token
    per_gpu = grow * tokens + p.window_bytes_per_token * min(tokens, p.window_tokens) + p.state_bytes_per_seq
    return per_gpu * seq_gpus(rep)


def seq_gpus(rep: Replica) -> int:
    """GPUs holding one sequence's KV: a replica's attention rank (tp x pp of its attn_dp ranks)."""
    return rep.num_gpus // rep.cost.parallel.attn_dp


def transfer_seconds(nbytes: float, rate: LinkRate, prefill_gpus: int, decode_gpus: int) -> float:
    """Time to move `nbytes` of KV: every GPU of the narrower side streams its share over its own link
    (GPUDirect RDMA / NVLink, one NIC per GPU), after the link latency."""
    return rate.latency_s + nbytes / (rate.bytes_per_s_per_gpu * min(prefill_gpus, decode_gpus))


class _PoolView:
    """One pool seen by a router: its own replicas and round-robin counter, everything else the cluster's."""

    def __init__(self, cluster: Cluster, replicas: list[Replica]) -> None:
        self._cluster = cluster
        self.replicas = replicas
        self._rr = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)


class DisaggCluster(Cluster):
    """The cluster of a disaggregated deployment: arrivals are routed over the prefill pool (the run's router);
    a request whose prompt is done goes to the decode replica with the fewest requests running or handed over,
    waits there for KV blocks (decode admission at the start of the replica's next iteration), then crosses the
    link; the prefill replica frees its KV when the transfer ends, and the request decodes from then on.

    Decode replicas simulate ahead of simpy's clock only up to the end of the prefill replicas' current
    iterations (next_event_s), so a handover never lands in a decode replica's past."""

    def __init__(self, env: simpy.Environment, replicas: list[Replica], router_kind: str,
                 requests: list[Request], rng: np.random.Generator, link: KVLinkConfig,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(env, replicas, router_kind, requests, rng, *args, **kwargs)
        self.prefill = [r for r in replicas if r.role == "prefill"]
        self.decode = [r for r in replicas if r.role == "decode"]
        self.link = link
        route = self.route
        view = _PoolView(self, self.prefill)
        self.route = lambda c, r: route(view, r)  # type: ignore[assignment,misc]
        self._rates = {(p.idx, d.idx): link_rate(link, p, d) for p in self.prefill for d in self.decode}
        for p in self.prefill:
            p.handoff = self._handoff
        for d in self.decode:
            d.intake = self._intake
        n, nrep = len(requests), len(replicas)
        self._kv_in: list[deque[Request]] = [deque() for _ in range(nrep)]
        self._landed: list[list[tuple[Request, float]]] = [[] for _ in range(nrep)]
        self._transit = [0] * nrep  # requests admitted at a decode replica whose KV is on the link
        self._free_s = [0.0] * nrep  # when each replica's side of the link is free (prefill egress, decode ingress)
        self._held = [0] * n  # KV blocks each request holds on its prefill replica while handed over
        nan = np.full(n, np.nan)
        self.prefill_done_s, self.admitted_s, self.transfer_start_s, self.landed_s = (
            nan.copy(), nan.copy(), nan.copy(), nan.copy())
        self.transfer_bytes = np.zeros(n)
        self.prefill_replica = np.full(n, -1, np.int64)

    @property
    def next_event_s(self) -> float:
        t = super().next_event_s
        for p in self.prefill:  # a prefill iteration in flight may hand a request over when it ends
            if p.yield_until_s < t:
                t = p.yield_until_s
        return t

    def _enqueue(self, rep: Replica, r: Request) -> None:
        super()._enqueue(rep, r)
        _resume_at(rep, self.env.now)

    def never_fits(self, rep: Replica, r: Request) -> str:
        reason = rep.never_fits(r)
        if not reason and r.output_tokens > 1:
            whys = [d.never_fits(r) for d in self.decode]
            if all(whys):  # no decode replica could ever hold it: rejected at the door
                reason = f"decode pool: {whys[0]}"
        return reason

    # ---- the handover ------------------------------------------------------------------------------------
    def _handoff(self, p: Replica, lane: Lane, r: Request, end: float) -> None:
        """`r`'s prompt is done on prefill replica `p` at `end`: it leaves p's batch (keeping its KV there) and
        queues for KV at a decode replica."""
        del lane.running[r]
        p.n_running -= 1
        self._held[r.id] = r.blocks
        r.blocks = 0
        r.kv_tokens = r.prefill_target
        self.prefill_done_s[r.id] = end
        self.prefill_replica[r.id] = p.idx
        d = min(self.decode, key=lambda x: (x.n_running + len(self._kv_in[x.idx]) + self._transit[x.idx]
                                            + len(self._landed[x.idx]), x.idx))
        r.replica = d.idx
        self._kv_in[d.idx].append(r)
        _resume_at(d, end)

    def _intake(self, d: Replica, lane: Lane, now: float) -> None:
        """At the start of an iteration of decode replica `d`: landed requests join `lane`; queued ones get KV
        blocks while the pool and the sequence limit allow (FIFO), and their transfer starts."""
        landed = self._landed[d.idx]
        if landed:
            for r, t in landed:
                d.join_handed_over(lane, r, r.kv_tokens, r.blocks, t)
                r.first_token_s = t
                if self.first_token_hook:
                    self.on_first_token(r, t)
            landed.clear()
        q = self._kv_in[d.idx]
        limit = d.max_num_seqs * d.pp
        while q and d.n_running + self._transit[d.idx] < limit:
            r = q[0]
            blocks = d.pool.blocks_for(r.kv_tokens)
            if not d.pool.can_admit(blocks):
                break
            q.popleft()
            d.pool.allocate(blocks)
            r.blocks = blocks
            self._start_transfer(d, r, now)

    def _start_transfer(self, d: Replica, r: Request, now: float) -> None:
        p = self.replicas[int(self.prefill_replica[r.id])]
        # what must arrive is the KV as the decode replica keeps it: a KV kept whole on every TP rank (MLA's latent,
        # or fewer KV heads than tp; model/graph.py) crosses once per decode rank, however the prefill side holds it
        nbytes = prompt_kv_bytes(d, r.kv_tokens)
        dur = transfer_seconds(nbytes, self._rates[(p.idx, d.idx)], seq_gpus(p), seq_gpus(d))
        if self.link.layerwise:
            # layer l's KV leaves while layer l+1 computes: only what outlasts the prefill iteration is exposed,
            # and never less than the last layer's share
            prefill_s = p.it_dur_s[-1] if len(p.it_dur_s) else 0.0
            dur = max(dur / p.cost.model.num_layers, dur - prefill_s)
        start = max(now, self._free_s[p.idx], self._free_s[d.idx])
        end = start + dur
        self._free_s[p.idx] = self._free_s[d.idx] = end
        i = r.id
        self.admitted_s[i], self.transfer_start_s[i], self.landed_s[i] = now, start, end
        self.transfer_bytes[i] = nbytes
        self._transit[d.idx] += 1
        heapq.heappush(self._pending, end)
        self.env.process(self._land(p, d, r, end))

    def _land(self, p: Replica, d: Replica, r: Request, end: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(end - self.env.now)
        heapq.heappop(self._pending)
        if self.stopped:
            return
        p.pool.release(self._held[r.id])
        self._held[r.id] = 0
        self._transit[d.idx] -= 1
        self._landed[d.idx].append((r, end))
        _resume_at(p, end)  # its queue may have waited for the blocks just freed
        _resume_at(d, end)

    # ---- reporting ---------------------------------------------------------------------------------------
    def in_handover(self) -> int:
        """Requests prefilled but not yet decoding (waiting for decode KV, on the link, or landed)."""
        return sum(len(q) for q in self._kv_in) + sum(self._transit) + sum(len(x) for x in self._landed)

    def summary(self, done: np.ndarray, arrival_s: np.ndarray, duration_s: float) -> dict[str, Any]:
        """Per-pool usage and the handover's statistics over the measured completed requests `done`."""
        out: dict[str, Any] = {}
        for name, pool in (("prefill", self.prefill), ("decode", self.decode)):
            use = [replica_usage(rp, duration_s) for rp in pool]
            gpus = sum(rp.num_gpus for rp in pool)
            its = sum(len(rp.it_start_s) for rp in pool)
            seqs = sum(int(np.frombuffer(rp.it_prefill_seqs, np.int32).sum())
                       + int(np.frombuffer(rp.it_decode_seqs, np.int32).sum()) for rp in pool)
            out[name] = {
                "replicas": len(pool), "gpus": gpus, "iterations": its,
                "busy_fraction": (sum(u[0] for u in use) / len(pool) / duration_s) if duration_s > 0 else math.nan,
                "mean_batch_size": seqs / its if its else math.nan,
                "max_kv_usage": max(rp.pool.peak_used / rp.pool.total for rp in pool),
                "energy_j": sum(u[1] for u in use), "cost_usd": sum(u[2] for u in use)}
        handed = done & np.isfinite(self.landed_s)

        def stats(x: np.ndarray) -> dict[str, float]:
            return LatencyStats.of(x[handed]).as_dict()

        out["handover"] = {
            "requests": int(handed.sum()),
            "prefill_ttft_s": stats(self.prefill_done_s - arrival_s),
            "decode_kv_wait_s": stats(self.admitted_s - self.prefill_done_s),
            "link_queue_s": stats(self.transfer_start_s - self.admitted_s),
            "transfer_s": stats(self.landed_s - self.transfer_start_s),
            "handover_s": stats(self.landed_s - self.prefill_done_s),
            "bytes_total": float(self.transfer_bytes[handed].sum()),
            "requests_in_handover_at_end": self.in_handover(),
        }
        return out


def _resume_at(rep: Replica, t: float) -> None:
    """Wake an idle replica; until its process runs, it counts as resuming at `t` (bounds next_event_s). A busy
    replica already resumes at the end of its iteration."""
    if rep.yield_until_s == math.inf:
        rep.yield_until_s = t
    w = rep._wake
    if w is not None and not w.triggered:
        w.succeed()


__all__ = ["DisaggCluster", "LinkRate", "PCIE_COPY_LATENCY_S", "link_rate", "prompt_kv_bytes", "transfer_seconds"]
