"""SimResult and `summarize`: per-request arrays, token times and inter-token latencies derived from the lanes'
per-iteration end times, latency statistics, throughput, goodput, utilisation, energy and cost (docs/metrics.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roofsim.model.batch import BatchShape
from roofsim.simulator.replica import Replica
from roofsim.simulator.request import DONE, REJECTED, Request
from roofsim.simulator.speculative import technique_summary
from roofsim.simulator.steady import steady_state

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True, slots=True)
class LatencyStats:
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    count: int

    @classmethod
    def of(cls, x: np.ndarray) -> LatencyStats:
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
        p = np.percentile(x, PERCENTILES)
        return cls(float(x.mean()), float(p[0]), float(p[1]), float(p[2]), float(p[3]), int(x.size))

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "p50": self.p50, "p90": self.p90, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True)
class TimeSeries:
    """One row per iteration of every replica, sorted by (replica, start)."""

    replica: np.ndarray
    lane: np.ndarray
    start_s: np.ndarray
    duration_s: np.ndarray
    prefill_tokens: np.ndarray
    prefill_seqs: np.ndarray
    decode_seqs: np.ndarray
    kv_blocks_used: np.ndarray
    kv_blocks_total: np.ndarray
    waiting: np.ndarray  # requests waiting or swapped out at the replica when the iteration started
    running: np.ndarray  # requests admitted (prefilling or decoding) at the replica

    @property
    def batch_size(self) -> np.ndarray:
        return self.prefill_seqs + self.decode_seqs

    @property
    def kv_usage(self) -> np.ndarray:
        return self.kv_blocks_used / self.kv_blocks_total


@dataclass(frozen=True)
class SimResult:
    """Everything a run produced. Per-request arrays are indexed by request id (trace order)."""

    arrival_s: np.ndarray
    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    completion_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    preemptions: np.ndarray
    replica: np.ndarray
    completed: np.ndarray  # bool
    rejected: np.ndarray  # bool
    warmup: np.ndarray  # bool: a closed-loop client's warm-up request (excluded from the statistics)
    reject_reasons: tuple[str, ...]
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    queueing_s: np.ndarray
    normalized_latency_s: np.ndarray
    itl_s: np.ndarray
    token_times: tuple[np.ndarray, ...]
    series: TimeSeries
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def requests_completed(self) -> int:
        return int(self.completed.sum())

    @property
    def measured(self) -> np.ndarray:
        """Completed requests that count in the statistics (warm-up requests excluded)."""
        return self.completed & ~self.warmup


def _token_times(r: Request, lanes: list[list[tuple[np.ndarray, np.ndarray]]]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for pre_end, lane, join, n in r.segments:
        if pre_end == pre_end:
            parts.append(np.array([pre_end]))
        n = int(n)
        if n:
            end_s, cum = lanes[r.replica][int(lane)]
            j = int(join)
            idx = np.searchsorted(cum, np.arange(j + 1, j + n + 1), side="left")
            parts.append(end_s[idx])
    return np.concatenate(parts) if parts else np.empty(0)


def _stats_dict(x: np.ndarray) -> dict[str, float]:
    return LatencyStats.of(x).as_dict()


def _union_seconds(start: np.ndarray, dur: np.ndarray) -> float:
    """Length of the union of [start, start+dur) intervals (pipeline micro-batches overlap)."""
    if start.size == 0:
        return 0.0
    order = np.argsort(start, kind="stable")
    s, e = start[order], start[order] + dur[order]
    reach = np.maximum.accumulate(e)
    prev_reach = np.concatenate(([-np.inf], reach[:-1]))
    clipped_start = np.maximum(s, prev_reach)
    return float(np.sum(np.maximum(0.0, e - clipped_start)))


def replica_usage(rp: Replica, duration_s: float) -> tuple[float, float, float]:
    """(busy seconds, energy J, cost USD) of one replica over a run of `duration_s`: iteration energy plus idle
    power while not busy; every GPU of the replica is paid for the whole run."""
    hw = rp.cost.hardware
    busy = _union_seconds(np.frombuffer(rp.it_start_s, np.float64), np.frombuffer(rp.it_dur_s, np.float64))
    energy = rp.energy_j + hw.power.idle_w * rp.num_gpus * max(0.0, duration_s - busy)
    return busy, energy, hw.price_usd_per_hour * rp.num_gpus * duration_s / 3600.0


def summarize(requests: list[Request], replicas: list[Replica], *, slo_ttft_s: float | None,
              slo_tpot_s: float | None, stop_reason: str, last_arrival_s: float, wall_s: float,
              end_s: float) -> SimResult:
    n = len(requests)
    f = np.fromiter
    arrival = f((r.arrival_s for r in requests), np.float64, n)
    sched = f((r.first_scheduled_s for r in requests), np.float64, n)
    first = f((r.first_token_s for r in requests), np.float64, n)
    compl = f((r.completion_s for r in requests), np.float64, n)
    inp = f((r.input_tokens for r in requests), np.int64, n)
    out = f((r.output_tokens for r in requests), np.int64, n)
    pre = f((r.preemptions for r in requests), np.int64, n)
    rep = f((r.replica for r in requests), np.int64, n)
    state = f((r.state for r in requests), np.int64, n)
    warm = f((r.warmup for r in requests), np.bool_, n)
    done_all = state == DONE
    rejected = state == REJECTED
    # Statistics cover the measured requests; warm-up requests (closed-loop benchmark clients) are simulated and
    # counted (requests_completed, requests_warmup) but, as in genai-perf/aiperf, not in latency or throughput.
    done = done_all & ~warm
    ttft = first - arrival
    e2e = compl - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (e2e - ttft) / (out - 1), np.nan)
        norm = e2e / out
    queueing = sched - arrival
    lane_arrays = [[(np.frombuffer(ln.dec_end_s, np.float64), np.frombuffer(ln.dec_cum, np.int64))
                    for ln in rp.lanes] for rp in replicas]
    # decode-token times a progress tracker keeps outside the lane series (speculative slots; None otherwise)
    extra_tt = [rp.progress.token_times for rp in replicas]

    def times_of(r: Request) -> np.ndarray:
        t = _token_times(r, lane_arrays)
        f = extra_tt[r.replica]
        return t if f is None else np.sort(np.concatenate((t, f(r))))

    token_times = tuple(times_of(r) if r.state == DONE else np.empty(0) for r in requests)
    itl_parts = [np.diff(t) for t, w in zip(token_times, warm.tolist(), strict=True) if not w]
    itl = np.concatenate(itl_parts) if itl_parts else np.empty(0)

    # time series
    def cat(name: str, dtype: Any) -> np.ndarray:
        arrs = [np.frombuffer(getattr(rp, name), dtype) for rp in replicas]
        return np.concatenate(arrs) if arrs else np.empty(0, dtype)

    counts = [len(rp.it_start_s) for rp in replicas]
    series = TimeSeries(
        replica=np.repeat(np.arange(len(replicas)), counts),
        lane=cat("it_lane", np.int32), start_s=cat("it_start_s", np.float64),
        duration_s=cat("it_dur_s", np.float64), prefill_tokens=cat("it_prefill_tokens", np.int64),
        prefill_seqs=cat("it_prefill_seqs", np.int32), decode_seqs=cat("it_decode_seqs", np.int32),
        kv_blocks_used=cat("it_kv_blocks", np.int64),
        kv_blocks_total=np.repeat(np.array([rp.pool.total for rp in replicas], np.int64), counts),
        waiting=cat("it_waiting", np.int64), running=cat("it_running", np.int64),
    )

    duration = end_s
    # throughput window: the measured phase (from the first measured request sent to the end) when there was a
    # warm-up, else the whole run (aiperf: profiling duration = first profiling request to last response)
    n_warm = int(warm.sum())
    issued_meas = ~warm & (rep >= 0)
    meas_start = float(arrival[issued_meas].min()) if n_warm and issued_meas.any() else 0.0
    meas_dur = end_s - meas_start
    n_done = int(done.sum())
    out_done = float(out[done].sum())
    out_all = float(out[done_all].sum())  # energy and cost cover the whole run, warm-up included
    ok = done.copy()
    if slo_ttft_s is not None:
        ok &= ttft <= slo_ttft_s
    if slo_tpot_s is not None:
        ok &= ~(tpot > slo_tpot_s)  # one-token requests have no TPOT and pass
    energy = 0.0
    cost_usd = 0.0
    flops_gpu_s = peak_gpu_s = bytes_gpu_s = bw_gpu_s = 0.0
    for rp in replicas:
        hw = rp.cost.hardware
        busy, e_j, c_usd = replica_usage(rp, duration)
        energy += e_j
        cost_usd += c_usd
        fl, by = _work(rp)
        flops_gpu_s += fl
        bytes_gpu_s += by
        peak_gpu_s += busy * hw.peak(rp.cost.quant.gemm_dtype)
        bw_gpu_s += busy * hw.memory.bandwidth_bytes_per_s
    # saturation: a queue that is still long when the last request arrives did not keep up
    waiting_at_last = 0
    for i in range(len(replicas)):
        sel = series.replica == i
        st = series.start_s[sel]
        k = int(np.searchsorted(st, last_arrival_s, side="right")) - 1
        if k >= 0:
            waiting_at_last += int(series.waiting[sel][k])
    saturated = stop_reason.startswith("overload") or waiting_at_last > max(20, 0.05 * n)
    iters = int(series.start_s.size)
    summary: dict[str, Any] = {
        "requests_total": n,
        "requests_completed": int(done_all.sum()),
        "requests_rejected": int(rejected.sum()),
        "requests_unfinished": int(n - done_all.sum() - rejected.sum()),
        "requests_warmup": n_warm,
        "requests_measured": n_done,
        "measure_start_s": meas_start,
        "measure_duration_s": meas_dur,
        "requests_waiting_at_end": int(sum(len(rp.waiting) + len(rp.swapped) for rp in replicas)),
        "requests_running_at_end": int(sum(rp.n_running for rp in replicas)),
        "stop_reason": stop_reason,
        "saturated": bool(saturated),
        "waiting_at_last_arrival": waiting_at_last,
        "ttft_s": _stats_dict(ttft[done]),
        "tpot_s": _stats_dict(tpot[done]),
        "itl_s": _stats_dict(itl),
        "e2e_s": _stats_dict(e2e[done]),
        "queueing_s": _stats_dict(queueing[done]),
        "normalized_latency_s": _stats_dict(norm[done]),
        "input_tokens_per_s": float(inp[done].sum()) / meas_dur if meas_dur > 0 else math.nan,
        "output_tokens_per_s": out_done / meas_dur if meas_dur > 0 else math.nan,
        "requests_per_s": n_done / meas_dur if meas_dur > 0 else math.nan,
        "goodput_requests_per_s": float(ok.sum()) / meas_dur if meas_dur > 0 else math.nan,
        "slo_attainment": float(ok.sum()) / n_done if n_done else math.nan,
        "preemptions": int(pre.sum()),
        "mfu": flops_gpu_s / peak_gpu_s if peak_gpu_s > 0 else math.nan,
        "mbu": bytes_gpu_s / bw_gpu_s if bw_gpu_s > 0 else math.nan,
        "energy_j": energy,
        "energy_per_output_token_j": energy / out_all if out_all else math.nan,
        "cost_usd": cost_usd,
        "cost_per_million_output_tokens_usd": cost_usd / out_all * 1e6 if out_all else math.nan,
        "mean_batch_size": float(series.batch_size.mean()) if iters else math.nan,
        "max_kv_usage": float(series.kv_usage.max()) if iters else 0.0,
        "iterations": iters,
        "sim_duration_s": duration,
        "wall_s": wall_s,
        "sim_s_per_wall_s": duration / wall_s if wall_s > 0 else math.nan,
        "iterations_per_wall_s": iters / wall_s if wall_s > 0 else math.nan,
    }
    caches = [rp.prefix for rp in replicas if rp.prefix is not None]
    if caches:
        look = sum(c.lookup_tokens for c in caches)
        summary["prefix_cache_hit_rate"] = sum(c.hit_tokens for c in caches) / look if look else math.nan
        summary["prefix_cached_tokens"] = sum(c.hit_tokens for c in caches)
        n_look = sum(c.lookups for c in caches)
        summary["prefix_cache_request_hit_rate"] = (sum(c.hit_requests for c in caches) / n_look
                                                    if n_look else math.nan)
        if any(c.tiers for c in caches):
            summary["kv_tiers"] = tier_summary([rp for rp in replicas if rp.prefix is not None], look)
    vision = sum(rp.vision_s for rp in replicas)
    if vision:  # a VL workload (SimConfig.images): replica-seconds spent in the vision encoder
        summary["vision_encoder_s"] = vision
    steady, window = steady_state(arrival, tpot, ttft, e2e, done, series.start_s, series.replica,
                                  series.waiting + series.running, last_arrival_s, saturated)
    if steady["steady"]:
        steady.update(ttft_s=_stats_dict(ttft[window]), tpot_s=_stats_dict(tpot[window]))
    summary["steady_state"] = steady
    busy_total = sum(rp.busy_s for rp in replicas)
    summary.update(technique_summary([rp.strategy for rp in replicas], busy_total))
    return SimResult(
        arrival_s=arrival, first_scheduled_s=sched, first_token_s=first, completion_s=compl, input_tokens=inp,
        output_tokens=out, preemptions=pre, replica=rep, completed=done_all, rejected=rejected, warmup=warm,
        reject_reasons=tuple(r.reject_reason for r in requests), ttft_s=ttft, tpot_s=tpot, e2e_s=e2e,
        queueing_s=queueing, normalized_latency_s=norm, itl_s=itl, token_times=token_times, series=series,
        summary=summary,
    )


def tier_summary(replicas: list[Replica], lookup_tokens: int) -> dict[str, dict[str, float]]:
    """Per tier kind ("hbm" first, then the kv_tiers top down), summed over replicas: the fraction of looked-up
    prompt tokens it served, the tokens, and the bytes read back into HBM and written into it (all GPUs of a
    replica together), blocks evicted from it, and its read time `load_s` (before overlap with compute)."""
    out: dict[str, dict[str, float]] = {"hbm": {"hit_rate": 0.0, "hit_tokens": 0}}
    for rp in replicas:
        c = rp.prefix
        assert c is not None
        out["hbm"]["hit_tokens"] += c.hit_tokens - sum(t.hit_tokens for t in c.tiers)
        for t in c.tiers:
            d = out.setdefault(t.kind, {"hit_rate": 0.0, "hit_tokens": 0, "bytes_read": 0.0, "bytes_written": 0.0,
                                        "evicted_blocks": 0, "load_s": 0.0})
            d["hit_tokens"] += t.hit_tokens
            d["bytes_read"] += t.bytes_read * rp.num_gpus
            d["bytes_written"] += t.bytes_written * rp.num_gpus
            d["evicted_blocks"] += t.evicted
            d["load_s"] += t.bytes_read / t.read_bytes_per_s
    for d in out.values():
        d["hit_rate"] = d["hit_tokens"] / lookup_tokens if lookup_tokens else math.nan
    return out


def _work(rp: Replica) -> tuple[float, float]:
    """(FLOPs, bytes) per GPU over the whole run. FLOPs and activation/KV bytes are linear in the batch
    aggregates, so one StepCost of the summed shape gives them exactly; weights are read once per
    iteration (for MoE the experts touched depend on the batch: approximate)."""
    n_it = len(rp.it_start_s)
    if n_it == 0:
        return 0.0, 0.0
    p_tok = int(np.frombuffer(rp.it_prefill_tokens, np.int64).sum())
    p_seq = int(np.frombuffer(rp.it_prefill_seqs, np.int32).sum())
    d_seq = int(np.frombuffer(rp.it_decode_seqs, np.int32).sum())
    win = rp.window is not None
    agg = BatchShape(prefill_tokens=p_tok, prefill_seqs=p_seq, prefill_attn_pairs=rp.sum_pairs,
                     prefill_ctx_tokens=rp.sum_prefill_ctx, decode_seqs=d_seq, decode_tokens=d_seq,
                     decode_ctx_tokens=rp.sum_decode_ctx,
                     prefill_attn_pairs_win=rp.sum_pairs_win if win else -1.0,
                     decode_ctx_tokens_win=rp.sum_decode_ctx_win if win else -1)
    total = rp.cost.step(agg)
    one = rp.cost.step(BatchShape(decode_seqs=1, decode_tokens=1, decode_ctx_tokens=1))
    w1 = sum(kc.kernel.weight_bytes * kc.kernel.count for kc in one.kernels)
    return total.flops, total.bytes + (n_it - 1) * w1


__all__ = ["LatencyStats", "SimResult", "TimeSeries", "replica_usage", "summarize"]
