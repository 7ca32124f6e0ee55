"""Replay a real serving log in the simulator (same input/output lengths, the log's send times or vLLM's regenerated
Poisson draw) and compare the latency distributions, duration, throughput and, when recorded, per-step times.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.batch import BatchShape
from roofsim.model.cost import Calibration, CostModel
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.model.uncertainty import ErrorModel
from roofsim.simulator.config import (
    SCHEDULER_KINDS,
    OrcaScheduler,
    ReplicaGroup,
    SarathiScheduler,
    SchedulerConfig,
    SimConfig,
    SJFScheduler,
    StaticScheduler,
    VLLMScheduler,
)
from roofsim.simulator.engines import (
    VLLM_CHUNKED_PREFILL_TOKENS,
    VLLM_MAX_NUM_SEQS,
    engine_profile,
    vllm_v1_defaults,
)
from roofsim.simulator.ensemble import run_ensemble
from roofsim.simulator.metrics import SimResult
from roofsim.simulator.run import group_quant, simulate
from roofsim.simulator.workload import FixedLengths, OfflineArrivals, SyntheticWorkload, Trace
from roofsim.validation.logs import ServingLog, read_log, read_logs, regenerate_poisson_arrivals
from roofsim.validation.uncertainty import INTERVAL_LEVELS, IntervalCheck

__all__ = ["ReplayResult", "log_trace", "prompt_hash_ids", "PROMPT_HASH_BLOCK", "replay_log", "replay_all",
           "make_scheduler_config", "compare_steps", "read_steps", "vllm_v1_defaults", "STATS", "SCHEDULERS",
           "streaming_gaps", "delivery_stalls", "fit_host_s_per_seq", "SERVERS", "burst_frontend_s_per_request",
           "burst_frontend_s_per_token"]

STATS = ("mean", "p50", "p90", "p99")
SCHEDULERS = ("vllm-v1", *SCHEDULER_KINDS)  # vllm-v1 = sarathi with vLLM V1's defaults for the GPU


def make_scheduler_config(kind: str, hardware: str, max_batch: int | None = None,
                          max_batched_tokens: int | None = None) -> tuple[SchedulerConfig, str]:
    """A scheduler config from CLI-style settings; 'vllm-v1' = Sarathi chunked prefill with vLLM V1's defaults."""
    if kind not in SCHEDULERS:
        raise InputError(f"unknown scheduler {kind!r}; known: {list(SCHEDULERS)}")
    kw: dict[str, int] = {}
    if max_batch is not None:
        kw["max_num_seqs"] = max_batch
    if max_batched_tokens is not None:
        kw["max_batched_tokens"] = max_batched_tokens
    if kind in ("vllm-v1", "sarathi"):
        if kind == "vllm-v1":  # the engine table's newest vLLM row (simulator/engines.py), as `simulate --engine vllm`
            prof = engine_profile("vllm", hardware)
            tokens, seqs = prof.max_batched_tokens, prof.max_num_seqs
        else:
            tokens, seqs = VLLM_CHUNKED_PREFILL_TOKENS, VLLM_MAX_NUM_SEQS
        tokens = kw.get("max_batched_tokens", tokens)
        seqs = kw.get("max_num_seqs", seqs)
        return (SarathiScheduler(chunk_size=tokens, max_batched_tokens=tokens, max_num_seqs=seqs),
                f"scheduler {kind}: chunked prefill, token budget {tokens}, max_num_seqs {seqs}")
    classes: dict[str, type[VLLMScheduler | OrcaScheduler | StaticScheduler | SJFScheduler]] = {
        "vllm": VLLMScheduler, "orca": OrcaScheduler, "static": StaticScheduler, "sjf": SJFScheduler}
    cls = classes[kind]
    cfg = cls(**kw)
    return cfg, f"scheduler {kind}: max_num_seqs {cfg.max_num_seqs}, max_batched_tokens {cfg.max_batched_tokens}"


def log_trace(log: ServingLog) -> tuple[Trace, np.ndarray, list[str]]:
    """The log's requests as a Trace sorted by send time, the permutation (trace position -> log index), and notes.
    Send times come from the log when it has them, else from vLLM's Poisson draw regenerated from rate and seed."""
    notes: list[str] = []
    n = log.num_requests
    if n == 0:
        raise InputError(f"{log.path}: the log has no successful requests to replay")
    if log.send_s is not None:
        send = np.asarray(log.send_s, dtype=np.float64)
        notes.append("arrivals: the log's own send times")
    elif log.request_rate_per_s is not None:
        seed = log.seed if log.seed is not None else 0
        send = regenerate_poisson_arrivals(n, log.request_rate_per_s, seed)
        notes.append(f"ASSUMPTION: the log has no send times; arrivals regenerated as vLLM benchmark_serving draws "
                     f"them (numpy RandomState({seed}) gamma gaps, rate {log.request_rate_per_s:g}/s, burstiness 1)"
                     + ("" if log.seed is not None else "; seed not recorded, 0 (vLLM's default) assumed")
                     + "; request i of the log is taken to be the i-th sent")
    else:
        raise InputError(f"{log.path}: the log has neither send times nor a request rate; cannot replay its "
                         f"arrivals")
    order = np.argsort(send, kind="stable")
    send = send[order] - send.min()
    return Trace(send, log.input_tokens[order], log.output_tokens[order], None, log.path), order, notes


def _send_times(log: ServingLog) -> np.ndarray:
    """Each request's send time in log order, as log_trace takes them (first send = 0)."""
    trace, order, _ = log_trace(log)
    send = np.empty(len(order))
    send[order] = trace.arrival_s
    return send


def streaming_gaps(log: ServingLog) -> tuple[np.ndarray, np.ndarray]:
    """Every measured inter-token gap and how many requests were streaming at its midpoint (first token out, last
    not yet), send times as log_trace takes them: the engine's step time against its batch, from the log alone."""
    send = _send_times(log)
    first, last = np.sort(send + log.ttft_s), np.sort(send + log.e2e_s)
    gaps, mids = [], []
    for i, g in enumerate(log.itl_s):
        g = np.asarray(g, dtype=np.float64)
        if g.size:
            gaps.append(g)
            mids.append(send[i] + log.ttft_s[i] + np.cumsum(g) - g / 2)
    if not gaps:
        return np.empty(0), np.empty(0, dtype=np.int64)
    t = np.concatenate(mids)
    return np.concatenate(gaps), np.searchsorted(first, t) - np.searchsorted(last, t)


def delivery_stalls(log: ServingLog, late: float = 1.6, early: float = 0.4, join_s: float = 0.2,
                    min_streams: int = 8) -> list[tuple[float, int, float]]:
    """Transient stalls of the token delivery path: (start s, streams, median extra delay s) of every cluster of
    streams that each got one token late and the next one early (a gap above `late` x the stream's median gap,
    then one below `early` x), clusters joined when within `join_s` and kept from `min_streams` streams. That
    signature is a pause of the process that delivers the tokens while the engine keeps stepping (its tokens wait,
    then leave back to back); a slow engine step delays the next token too. Times as log_trace takes them."""
    send = _send_times(log)
    pairs: list[tuple[float, float, int]] = []
    for i, g in enumerate(log.itl_s):
        g = np.asarray(g, dtype=np.float64)
        if g.size < 3:
            continue
        med = float(np.median(g))
        k = np.flatnonzero((g[:-1] > late * med) & (g[1:] < early * med))
        t = send[i] + log.ttft_s[i] + np.cumsum(g)
        pairs += [(float(t[j]), float(g[j] - med), i) for j in k]
    pairs.sort()
    clusters: list[list] = []  # [start, end, streams, extra delays]
    for t, extra, i in pairs:
        if clusters and t - clusters[-1][1] < join_s:
            c = clusters[-1]
            c[1] = t
            c[2].add(i)
            c[3].append(extra)
        else:
            clusters.append([t, t, {i}, [extra]])
    return [(c[0], len(c[2]), float(np.median(c[3]))) for c in clusters if len(c[2]) >= min_streams]


def fit_host_s_per_seq(logs: list[ServingLog], cost: CostModel, min_gaps: int = 50) -> tuple[float, float]:
    """(per-sequence, fixed) host seconds of one decode step missing from `cost`: a weighted line through the
    median measured gap at each batch size (streaming_gaps, batch sizes with >= `min_gaps` gaps) minus cost's
    decode step of that batch (each sequence at the logs' mean prompt + half their mean output). The median keeps
    the steps that also carried a prompt chunk out. `cost` should carry no per-sequence overhead of its own."""
    gaps, batch = zip(*(streaming_gaps(lg) for lg in logs), strict=True)
    g, b = np.concatenate(gaps), np.concatenate(batch)
    ctx = float(np.mean([lg.input_tokens.mean() + lg.output_tokens.mean() / 2 for lg in logs]))
    sizes, counts = np.unique(b[b > 0], return_counts=True)
    keep = sizes[counts >= min_gaps]
    if keep.size < 2:
        raise InputError(f"fit_host_s_per_seq: {keep.size} batch size(s) with >= {min_gaps} gaps; need 2")
    w = counts[counts >= min_gaps].astype(np.float64)
    resid = np.array([np.median(g[b == k]) - cost.step(BatchShape(decode_seqs=int(k), decode_tokens=int(k),
                                                                    decode_ctx_tokens=int(k * ctx))).seconds
                      for k in keep])
    slope, fixed = np.polyfit(keep.astype(np.float64), resid, 1, w=np.sqrt(w))
    return float(slope), float(fixed)


# The vLLM V1 server the llm-k8s logs ran (0.8.3): its host costs are the engine table's vllm==0.8 row.
_VLLM_V1 = engine_profile("vllm==0.8")
# server -> (front-end seconds per request, per streamed token, engine host seconds per running sequence per
# step; None = the calibration's)
SERVERS: dict[str | None, tuple[float, float, float | None]] = {
    "vllm-v1": (_VLLM_V1.frontend_s_per_request, _VLLM_V1.frontend_s_per_token, _VLLM_V1.host_s_per_seq),
    None: (0.0, 0.0, None),
}


def burst_frontend_s_per_request(log: ServingLog) -> float:
    """Front-end seconds per request read off a log whose requests were all sent at once (rate inf): with one
    FIFO front-end process, the first request's first token leaves only after the front end has taken in the whole
    burst, then one step: (min TTFT - mean TPOT) / requests."""
    _need_burst(log, "burst_frontend_s_per_request")
    tpot = _measured_arrays(log)["tpot_s"]
    return float((log.ttft_s.min() - tpot.mean()) / log.num_requests)


def burst_frontend_s_per_token(log: ServingLog, bin_s: float = 0.005, q: float = 99.0) -> float:
    """Front-end seconds per streamed token read off a rate-inf log while every request streams: the shortest
    time per token the client saw, `bin_s` over the q-th percentile of tokens delivered per `bin_s` after the
    last first token (an upper bound, reached when the front end runs saturated)."""
    _need_burst(log, "burst_frontend_s_per_token")
    t = np.concatenate([log.ttft_s[i] + np.concatenate(([0.0], np.cumsum(g))) for i, g in enumerate(log.itl_s)])
    start = float(log.ttft_s.max())
    t = t[t > start]
    if t.size == 0:
        raise InputError(f"{log.path}: no token after the last first token")
    counts, _ = np.histogram(t, bins=np.arange(start, float(t.max()) + bin_s, bin_s))
    return float(bin_s / np.percentile(counts, q))


def _need_burst(log: ServingLog, what: str) -> None:
    if log.request_rate_per_s is None or not math.isinf(log.request_rate_per_s):
        raise InputError(f"{log.path}: {what} needs a rate-inf log (request rate {log.request_rate_per_s})")


PROMPT_HASH_BLOCK = 16  # tokens per derived hash id (vLLM's default KV block size)


def prompt_hash_ids(input_tokens: np.ndarray, prompt_keys: np.ndarray, block: int) -> tuple[tuple[int, ...], ...]:
    """Prefix-block hash ids from prompt identity: prompt k's j-th block is k * 2**32 + j, so equal keys share
    every block and different keys none. As vLLM V1 (0.8) does, only full blocks get a hash
    (vllm/v1/core/kv_cache_utils.py hash_request_tokens), and a prompt that is a whole number of blocks loses its
    last one (kv_cache_manager.get_computed_blocks recomputes that whole block to get the last token's logits):
    an n-token prompt can hit at most block * floor((n - 1) / block) tokens, and 1 to `block` are recomputed."""
    return tuple(tuple(int(k) * 2**32 + j for j in range((int(n) - 1) // block))
                 for n, k in zip(input_tokens.tolist(), prompt_keys.tolist(), strict=True))


@dataclass(frozen=True)
class ReplayResult:
    log: ServingLog
    sim: SimResult
    order: np.ndarray  # trace position -> log request index
    comparison: dict[str, dict[str, dict[str, float]]]  # metric -> stat -> {measured, predicted, err_pct}
    totals: dict[str, dict[str, float]]  # duration_s, output_tokens_per_s, requests_per_s
    steps: list[dict[str, Any]]  # per (kind, batch_size): n, measured_s, predicted_s, err_pct
    notes: tuple[str, ...]
    # replay_log(ensemble=M): metric -> stat -> level -> (low, high) of the M-member ensemble's summaries
    intervals: dict[str, dict[str, dict[float, tuple[float, float]]]] = field(default_factory=dict)
    tp: int = 1  # the replay's tensor parallelism (an input of the end-to-end difficulty, interval_checks)

    def measured_values(self, metric: str) -> np.ndarray:
        return _measured_arrays(self.log)[metric]

    def predicted_values(self, metric: str) -> np.ndarray:
        return _predicted_arrays(self.sim)[metric]

    def as_json(self) -> dict[str, Any]:
        return {"log": self.log.path, "benchmark": self.log.label, "format": self.log.source_format,
                "requests": self.log.num_requests, "request_rate_per_s": _json_rate(self.log.request_rate_per_s),
                "concurrency": self.log.concurrency,
                "comparison": self.comparison, "totals": self.totals, "steps": self.steps,
                "notes": list(self.notes),
                **({"intervals": {m: {st: {f"{q:.0%}": list(b) for q, b in d.items()} for st, d in v.items()}
                                  for m, v in self.intervals.items()}} if self.intervals else {})}

    def interval_checks(self, unit: str = "") -> list[IntervalCheck]:
        """validation.uncertainty.IntervalCheck of every compared statistic with an interval (group = metric), with
        the log's inputs as a benchmark row states them (simulator.ensemble.run_inputs: mean prompt and output
        tokens, the client concurrency or the request rate, 0 when the log has none, tp)."""
        rate = self.log.request_rate_per_s
        inputs = {"isl": float(self.log.input_tokens.mean()), "osl": float(self.log.output_tokens.mean()),
                  "concurrency": float(self.log.concurrency or 0),
                  "qps": float(rate) if rate is not None and math.isfinite(rate) else 0.0, "tp": float(self.tp)}
        return [IntervalCheck(unit or self.log.label, m, f"{m}.{st}", self.comparison[m][st]["measured"],
                              self.comparison[m][st]["predicted"], bounds, inputs)
                for m, d in self.intervals.items() for st, bounds in d.items()]


def _json_rate(rate: float | None) -> float | str | None:
    return "inf" if rate is not None and math.isinf(rate) else rate


def _measured_arrays(log: ServingLog) -> dict[str, np.ndarray]:
    out = log.output_tokens
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (log.e2e_s - log.ttft_s) / (out - 1), np.nan)
    itl = np.concatenate(log.itl_s) if log.itl_s else np.empty(0)
    return {"ttft_s": log.ttft_s, "tpot_s": tpot[np.isfinite(tpot)], "itl_s": itl, "e2e_s": log.e2e_s}


def _predicted_arrays(sim: SimResult) -> dict[str, np.ndarray]:
    d = sim.measured
    tpot = sim.tpot_s[d]
    return {"ttft_s": sim.ttft_s[d], "tpot_s": tpot[np.isfinite(tpot)], "itl_s": sim.itl_s, "e2e_s": sim.e2e_s[d]}


def _stat(x: np.ndarray, s: str) -> float:
    if x.size == 0:
        return math.nan
    return float(x.mean()) if s == "mean" else float(np.percentile(x, int(s[1:])))


def _err(p: float, m: float) -> float:
    return 100.0 * (p - m) / m if m and math.isfinite(m) and math.isfinite(p) else math.nan


def read_steps(path: Path | str) -> list[dict[str, Any]]:
    """The `steps` list of a `roofsim measure` log ({kind, batch_size, tokens, ctx_sum, seconds}); [] if none."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    steps = d.get("steps") if isinstance(d, dict) else None
    if not steps:
        return []
    if not isinstance(steps, list):
        raise InputError(f"{path}: key 'steps' must be a list")
    for i, s in enumerate(steps):
        if not isinstance(s, dict) or any(k not in s for k in ("kind", "batch_size", "tokens", "ctx_sum", "seconds")):
            raise InputError(f"{path}: steps[{i}] needs keys kind, batch_size, tokens, ctx_sum, seconds")
        if s["kind"] not in ("prefill", "decode"):
            raise InputError(f"{path}: steps[{i}].kind={s['kind']!r} is not 'prefill' or 'decode'")
    return steps


def step_shape(kind: str, batch_size: int, tokens: int, ctx_sum: int) -> BatchShape:
    """BatchShape of one measured step. Prefill: `tokens` new tokens over `batch_size` sequences with
    ctx_sum - tokens already cached, sequences taken as equal length (attention pairs b*L(L+1)/2 + L*cached/b).
    Decode: one token per sequence attending to ctx_sum tokens in all."""
    b = max(int(batch_size), 1)
    if kind == "prefill":
        L = tokens / b
        cached = max(int(ctx_sum) - int(tokens), 0)
        pairs = b * L * (L + 1) / 2 + L * cached
        return BatchShape(prefill_tokens=int(tokens), prefill_seqs=b, prefill_attn_pairs=pairs,
                          prefill_ctx_tokens=cached)
    return BatchShape(decode_seqs=b, decode_tokens=max(int(tokens), b), decode_ctx_tokens=int(ctx_sum))


def compare_steps(steps: list[dict[str, Any]], cost: CostModel) -> list[dict[str, Any]]:
    """Mean measured vs predicted step time per (kind, batch_size)."""
    groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for s in steps:
        pred = cost.step(step_shape(s["kind"], s["batch_size"], s["tokens"], s["ctx_sum"])).seconds
        groups.setdefault((s["kind"], int(s["batch_size"])), []).append((float(s["seconds"]), pred))
    out = []
    for (kind, b), v in sorted(groups.items()):
        a = np.array(v)
        m, p = float(a[:, 0].mean()), float(a[:, 1].mean())
        out.append({"kind": kind, "batch_size": b, "n": len(v), "measured_s": m, "predicted_s": p,
                    "err_pct": _err(p, m)})
    return out


def replay_log(log: ServingLog | str | Path, model: str, hardware: str, tp: int = 1, pp: int = 1, *,
               log_format: str = "auto", scheduler: SchedulerConfig | None = None,
               quant: QuantSpec | None = None, calibration: Calibration | None = None,
               gpu_memory_utilization: float = 0.9, seed: int = 0, prompts_cached: bool = False,
               prefix_caching: bool | None = None, server: str | None = "auto",
               frontend_s_per_request: float | None = None, frontend_s_per_token: float | None = None,
               host_s_per_seq: float | None = None, ensemble: int = 0,
               error_model: ErrorModel | None = None) -> ReplayResult:
    """Replay the log's requests on `model` x `hardware` (tp, pp) and compare distributions.

    quant: the formats served; None = the checkpoint's own on this hardware (simulator.run.group_quant), noted.

    prefix_caching: the server ran with prefix caching (vLLM --enable-prefix-caching); the simulator's prefix
    cache is on, with each prompt's hash ids derived from its identity in the log (request i = prompt i; distinct
    prompts share nothing, since the log has no token ids). Default: on when `prompts_cached`.
    prompts_cached: the server's prefix cache already holds every prompt (the same prompts were sent in an
    earlier run with prefix caching on): the prefix cache starts warm with them (each prefill then computes only
    its prompt's last, partial or recomputed, block as vLLM V1 does (prompt_hash_ids), while the prompt's KV stays
    in the blocks and in decode attention).
    server: the serving software's host-side costs beyond the GPU steps: "vllm-v1" = the vLLM V1 API server and
    engine core (the host costs of the engine table's vllm==0.8 row, simulator/engines.py, fitted on vLLM 0.8.3
    logs); None = only the calibration's step overheads; "auto" =
    None when the log names another server (an SGLang file, a `roofsim measure` log), else "vllm-v1" (as the
    default scheduler). The three settings below, when given, win over it.
    frontend_s_per_request: serialized API-server time per request (ReplicaGroup.frontend_s_per_request).
    frontend_s_per_token: API-server time per streamed token (ReplicaGroup.frontend_s_per_token): a new request's
    first token reaches the client after the tokens of its step's running requests.
    host_s_per_seq: the engine's host time per running sequence of one step (ReplicaGroup.host_s_per_seq,
    replacing the calibration's step_overhead_per_seq_s); None = the calibration's.
    ensemble > 1: also an ensemble of that many members drawing from `error_model` (simulator.ensemble; needs a
    calibration), whose intervals per compared statistic land in `intervals`."""
    path = None
    if not isinstance(log, ServingLog):
        path = Path(log)
        log = read_log(path, log_format)
    trace, order, notes = log_trace(log)
    notes = list(log.notes) + notes
    if prefix_caching is None:
        prefix_caching = prompts_cached
    if prompts_cached and not prefix_caching:
        raise InputError("prompts_cached needs prefix_caching (a prompt can only stay cached in a prefix cache)")
    warm: tuple[tuple[int, ...], ...] = ()
    if prefix_caching:
        ids = prompt_hash_ids(trace.input_tokens, order, PROMPT_HASH_BLOCK)
        trace = Trace(trace.arrival_s, trace.input_tokens, trace.output_tokens, ids, trace.source, PROMPT_HASH_BLOCK)
        notes.append("prefix caching on: hash ids from prompt identity (request i of the log = prompt i; prompts "
                     "share no prefix)")
        if prompts_cached:
            warm = ids
            notes.append("ASSUMPTION prompts cached: every prompt was sent before with prefix caching on; the "
                         "prefix cache starts warm with all of them")
    if server == "auto":
        server = None if log.server and not log.server.startswith(("vllm", "openai")) else "vllm-v1"
    if server not in SERVERS:
        raise InputError(f"unknown server {server!r}; known: {['auto', *SERVERS]}")
    fe_req, fe_tok, host = SERVERS[server]
    frontend_s_per_request = fe_req if frontend_s_per_request is None else frontend_s_per_request
    frontend_s_per_token = fe_tok if frontend_s_per_token is None else frontend_s_per_token
    host_s_per_seq = host if host_s_per_seq is None else host_s_per_seq
    if frontend_s_per_request:
        notes.append(f"front end: {frontend_s_per_request * 1e3:g} ms per request, serialized, in the process "
                     f"that also streams the tokens")
    if frontend_s_per_token:
        notes.append(f"front end: {frontend_s_per_token * 1e6:g} us per streamed token, in batch order")
    if host_s_per_seq is not None:  # the simulated steps only: recorded per-step times (compare_steps) are GPU steps
        notes.append(f"engine host time: {host_s_per_seq * 1e6:g} us per running sequence per step")
    if scheduler is None:
        scheduler, note = make_scheduler_config("vllm-v1", hardware)
        notes.append(note + " (default)")
    group = ReplicaGroup(model=model, hardware=hardware, tp=tp, pp=pp, quant=quant, scheduler=scheduler,
                         calibration=calibration, gpu_memory_utilization=gpu_memory_utilization,
                         prefix_caching=prefix_caching, frontend_s_per_request=frontend_s_per_request,
                         frontend_s_per_token=frontend_s_per_token, host_s_per_seq=host_s_per_seq)
    if quant is None:  # the checkpoint's own format on this hardware (bf16 for an unquantised one)
        quant, why = group_quant(group)
        group = group.model_copy(update={"quant": quant})
        notes += [f"quantisation: {n}" for n in why]
    wl = SyntheticWorkload(arrival=OfflineArrivals(), input=FixedLengths(tokens=1), output=FixedLengths(tokens=1),
                           num_requests=len(trace))  # placeholder: the trace replaces its requests
    cfg = SimConfig(workload=wl, replicas=(group,), seed=seed)
    sim = simulate(cfg, trace=trace, warm_prefixes=warm)
    intervals = _replay_intervals(cfg, trace, warm, ensemble, error_model) if ensemble > 1 else {}
    if intervals:
        notes.append(f"intervals: ensemble of {ensemble} members, kernel error model {error_model.residuals}"  # type: ignore[union-attr]
                     " (docs/intervals.md)")
    if sim.summary["requests_completed"] < len(trace):
        notes.append(f"only {sim.summary['requests_completed']} of {len(trace)} replayed requests finished "
                     f"({sim.summary['stop_reason']})")
    meas, pred = _measured_arrays(log), _predicted_arrays(sim)
    comparison = {k: {s: {"measured": _stat(meas[k], s), "predicted": _stat(pred[k], s),
                          "err_pct": _err(_stat(pred[k], s), _stat(meas[k], s))} for s in STATS} for k in meas}
    # duration: first send to last token (vLLM benchmark_serving's `duration` spans the same).
    m_dur = float(np.max(trace.arrival_s[np.argsort(order)] + log.e2e_s)) if log.duration_s is None \
        else float(log.duration_s)
    if log.duration_s is None:
        notes.append("measured duration = last (send + e2e) (the log records no duration)")
    p_dur = float(np.nanmax(sim.completion_s))
    out_tok = float(log.output_tokens.sum())
    totals = {
        "duration_s": {"measured": m_dur, "predicted": p_dur, "err_pct": _err(p_dur, m_dur)},
        "output_tokens_per_s": {"measured": out_tok / m_dur, "predicted": out_tok / p_dur,
                                "err_pct": _err(out_tok / p_dur, out_tok / m_dur)},
        "requests_per_s": {"measured": len(trace) / m_dur, "predicted": len(trace) / p_dur,
                           "err_pct": _err(len(trace) / p_dur, len(trace) / m_dur)},
    }
    steps: list[dict[str, Any]] = []
    if path is not None:
        raw = read_steps(path)
        if raw:
            m = load_model(model)
            par = ParallelSpec(tp=tp, pp=pp)
            cost = CostModel(m, load_hardware(hardware), quant, par, calibration)
            steps = compare_steps(raw, cost)
            notes.append(f"per-step times: {len(raw)} recorded steps compared with model.cost step estimates")
    return ReplayResult(log, sim, order, comparison, totals, steps, tuple(notes), intervals, tp)


def _replay_intervals(cfg: SimConfig, trace: Trace, warm: tuple[tuple[int, ...], ...], members: int,
                      error_model: ErrorModel | None) -> dict[str, dict[str, dict[float, tuple[float, float]]]]:
    if error_model is None or cfg.replicas[0].calibration is None:
        raise InputError("an ensemble replay needs a measured calibration profile and its error model "
                         "(validation.profiles.resolve_error_model)")
    ens = run_ensemble(cfg, [error_model], members, INTERVAL_LEVELS, trace=trace, warm_prefixes=warm)
    return {m: {st: {q: ens.interval(f"{m}.{st}", q) for q in INTERVAL_LEVELS} for st in STATS}
            for m in ("ttft_s", "tpot_s", "itl_s", "e2e_s")}


def replay_all(path: str | Path, model: str, hardware: str, tp: int = 1, pp: int = 1, *, log_format: str = "auto",
               **options: Any) -> list[ReplayResult]:
    """replay_log for every benchmark of a file (a GuideLLM sweep, an SGLang or vLLM --append-result JSONL,
    genai-perf experiments), in file order; `options` as replay_log's. A one-benchmark file is replayed from its
    path, so recorded per-step times are compared too."""
    logs = read_logs(path, log_format)
    if len(logs) == 1:
        return [replay_log(path, model, hardware, tp, pp, log_format=log_format, **options)]
    return [replay_log(lg, model, hardware, tp, pp, **options) for lg in logs]
