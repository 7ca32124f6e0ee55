"""Analytical bounds (no simulation): which candidates cannot work (layout, dtype, memory, latency floor) and
how many requests per second one replica can sustain at most, which brackets the capacity search."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape, causal_pairs
from roofsim.model.cost import CostModel, check_dtypes
from roofsim.model.loader import load_model
from roofsim.model.memory import DoesNotFitError, MemoryPlan, plan_memory
from roofsim.model.spec import ParallelSpec
from roofsim.simulator.config import group_engine_profile
from roofsim.simulator.planning.length import start_requests
from roofsim.simulator.planning.spec import Candidate, PlanSpec, Status
from roofsim.simulator.run import with_host_s_per_seq
from roofsim.simulator.schedulers import Scheduler
from roofsim.simulator.workload import Trace


@dataclass(frozen=True)
class TraceStats:
    """Length and rate statistics of the requests every point replays."""

    mean_input: float
    mean_output: float
    p99_input: int
    max_input: int
    max_total: int
    native_rate: float
    requests: int  # the most requests a point can replay (a trace's length, at most MAX_PLAN_REQUESTS)

    @classmethod
    def of(cls, trace: Trace) -> TraceStats:
        tot = trace.input_tokens + trace.output_tokens
        return cls(trace.mean_input_tokens, trace.mean_output_tokens,
                   int(np.percentile(trace.input_tokens, 99, method="higher")), int(trace.input_tokens.max()),
                   int(tot.max()), trace.rate_per_s, len(trace))


@dataclass(frozen=True)
class Bounds:
    """What the roofline model says before any simulation. `status` is None when the candidate is worth
    simulating; `capacity_ub` (req/s) bounds what one replica can sustain within the TPOT SLO."""

    status: Status | None
    reason: str = ""
    capacity_ub: float = math.nan
    ttft_lb_s: float = math.nan
    tpot_lb_s: float = math.nan
    max_kv_tokens: int = 0
    capacity_est: float = math.nan  # steady-state throughput bound (req/s): where the search starts
    start_requests: int = 0  # length of the first run of each point (the forced num_requests, else length.py's)


def analytical_bounds(spec: PlanSpec, cand: Candidate, ts: TraceStats) -> Bounds:
    """Skip what cannot work (layout, dtype, memory, latency floor) and bound the capacity.

    Latency floors: a request alone pays at least the prefill of its prompt (TTFT) and one batch-1 decode step
    per token (TPOT); P99 of a pointwise lower bound bounds the P99. Capacity: see `_capacity`."""
    screened = _screen(spec, cand, ts)
    if isinstance(screened, Bounds):
        return screened
    cost, mem, sched = screened
    p = ts.p99_input
    ttft_lb = cost.step_seconds(BatchShape(prefill_tokens=p, prefill_seqs=1, prefill_attn_pairs=causal_pairs(p, 0)))
    tpot_lb = _decode_step_s(cost, 1, p)
    kw: dict[str, Any] = {"capacity_ub": math.nan, "ttft_lb_s": ttft_lb, "tpot_lb_s": tpot_lb,
                          "max_kv_tokens": mem.max_kv_tokens}
    if ttft_lb > spec.slo_ttft_s:
        return Bounds("slo_unmet", f"the P99 prompt ({p} tokens) alone takes {ttft_lb:.3g} s to prefill > "
                      f"TTFT SLO {spec.slo_ttft_s:g} s", **kw)
    if tpot_lb > spec.slo_tpot_s:
        return Bounds("slo_unmet", f"one decode step with a single {p}-token request takes {tpot_lb * 1e3:.3g} ms "
                      f"> TPOT SLO {spec.slo_tpot_s * 1e3:g} ms", **kw)
    est, ub, n = _capacity(spec, cand, ts, sched, cost, mem)
    return Bounds(None, "", ub, ttft_lb, tpot_lb, mem.max_kv_tokens, est, n)


def _screen(spec: PlanSpec, cand: Candidate,
            ts: TraceStats) -> Bounds | tuple[CostModel, MemoryPlan, Scheduler]:
    """The candidate's cost model, memory plan and scheduler policy, or the Bounds that rule it out before any
    latency is computed: a layout the model does not allow, a dtype the hardware lacks, over the GPU budget, weights or
    the longest request not fitting."""
    model = load_model(spec.model)
    hw = load_hardware(cand.hardware)
    quant = cand.quant(spec)
    par = ParallelSpec(tp=cand.tp, pp=cand.pp, ep=cand.ep, attn_dp=cand.attn_dp)
    try:
        par.validate_for(model)
    except ValueError as e:
        return Bounds("invalid", str(e))
    try:
        check_dtypes(hw, quant)
    except ValueError as e:
        return Bounds("unsupported", str(e))
    if spec.max_gpus is not None and cand.gpus > spec.max_gpus:
        return Bounds("over_budget", f"one replica needs {cand.gpus} GPUs > max_gpus={spec.max_gpus}")
    tokens = cand.tokens(spec)  # the engine's budget, else the PlanSpec's (resolved by plan())
    try:
        mem = plan_memory(model, hw, quant, par, cand.memory_utilization(spec),
                          max_batched_tokens=tokens, max_seqs=cand.seqs)
    except DoesNotFitError as e:
        first = str(e).splitlines()
        return Bounds("does_not_fit", " ".join(s.strip() for s in first[:3]))
    sched = cand.scheduler_policy(spec)
    if not sched.chunked and ts.max_input > tokens:
        return Bounds("does_not_fit", f"the longest prompt ({ts.max_input} tokens) exceeds max_batched_tokens="
                      f"{tokens} and scheduler {cand.scheduler!r} does not chunk prompts")
    usable_kv = mem.max_kv_tokens * (1 - 0.01)  # the scheduler keeps a 1% watermark free
    if ts.max_total > usable_kv:
        return Bounds("does_not_fit", f"the longest request ({ts.max_total} tokens) exceeds the KV cache "
                      f"({mem.max_kv_tokens} tokens); the replica would reject it", max_kv_tokens=mem.max_kv_tokens)
    cal, attn = spec.calibrations.get(cand.hardware), ""
    if cand.engine is not None:  # the engine's host time per running sequence and attention backend, as the
        # simulated replicas pay them
        prof = group_engine_profile({"engine": cand.engine, "hardware": cand.hardware, "model": spec.model,
                                     "tp": cand.tp, "pp": cand.pp, "attn_dp": cand.attn_dp})
        cal, attn = with_host_s_per_seq(cal, prof.host_s_per_seq), prof.attn_backend
    return CostModel(model, hw, quant, par, cal, attn), mem, sched


def _decode_step_s(cost: CostModel, b: int, ctx: int) -> float:
    """One decode step of b sequences with ctx tokens of context each."""
    return cost.step_seconds(BatchShape(decode_seqs=b, decode_tokens=b, decode_ctx_tokens=b * ctx))


def max_decode_batch(cost: CostModel, b_max: int, ctx: int, slo_tpot_s: float) -> int:
    """Largest decode batch b <= b_max (at least 1) whose step stays within the TPOT SLO (bisection: the step
    time grows with b)."""
    lo, hi = 1, b_max
    if _decode_step_s(cost, hi, ctx) <= slo_tpot_s:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _decode_step_s(cost, mid, ctx) <= slo_tpot_s:
            lo = mid
        else:
            hi = mid
    return lo


def _capacity(spec: PlanSpec, cand: Candidate, ts: TraceStats, sched: Scheduler, cost: CostModel,
              mem: MemoryPlan) -> tuple[float, float, int]:
    """(steady-state throughput bound, capacity bound of a finite run, in req/s; the length of a point's first
    run: the forced num_requests, else from the most requests the replica holds at once, length.start_requests).

    In steady state decoding runs at batch b <= min(max_batch, KV tokens / (mean input + mean output / 2)) per
    pipeline lane, and b is held where one decode step stays within the TPOT SLO; a request costs at least its
    share of such a step per output token, and at least its prompt at the best prefill throughput (Roofline,
    Williams et al. 2009); the scheduler policy says how the two combine (`Scheduler.min_seconds_per_request`)."""
    lanes = cand.pp
    cin = max(1, round(ts.mean_input))
    b_max = max(1, min(cand.seqs, int(mem.max_kv_tokens / (ts.mean_input + ts.mean_output / 2) / lanes)))
    b = max_decode_batch(cost, b_max, cin, spec.slo_tpot_s)
    decode_s_per_token = _decode_step_s(cost, b, cin) / (b * lanes)
    chunk = cand.tokens(spec)
    seqs = max(1, round(chunk / ts.mean_input))
    per_seq = max(1, chunk // seqs)
    pf = cost.step_seconds(BatchShape(prefill_tokens=per_seq * seqs, prefill_seqs=seqs,
                                      prefill_attn_pairs=seqs * causal_pairs(per_seq, 0)))
    prefill_s_per_token = pf / (per_seq * seqs) / lanes
    decode_s = max(0.0, ts.mean_output - 1) * decode_s_per_token  # the first output token comes from prefill
    prefill_s = ts.mean_input * prefill_s_per_token
    per_request_s = max(decode_s, prefill_s)
    if cand.speculative is None:  # (speculation changes tokens per step; keep the plain bound there)
        tokens = ts.mean_input + max(0.0, ts.mean_output - 1)
        per_request_s = sched.min_seconds_per_request(prefill_s, decode_s, tokens, lanes, cost.step_seconds)
    est = 1.0 / per_request_s
    # A finite run is feasible while its backlog at the last arrival stays small (saturation: more than
    # max(20, 5%) of the requests waiting) plus what runs: n - backlog requests must complete within the
    # arrival window n / rate, so rate <= est x n / (n - backlog). A run that fits in one batch has no bound.
    # (a longer run of the same point has a lower bound: the first run's holds for all)
    n = spec.num_requests if spec.num_requests is not None else start_requests(b_max * lanes, ts.requests)
    backlog = cand.seqs * lanes + max(20.0, 0.05 * n)
    ub = est * n / (n - backlog) if n > backlog else math.inf
    return est, ub, n


__all__ = ["Bounds", "TraceStats", "analytical_bounds", "max_decode_batch"]
