"""A real serving loop in wall-clock time around the numpy transformer: Poisson arrivals, static or continuous
batching, per-token timestamps, and writers for the vLLM benchmark_serving --save-result JSON layout and for the
served model's config.json (so the simulator can replay the log with the model that produced it).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from roofsim.model.spec import ModelSpec
from roofsim.validation.local.machine import machine_facts, use_caching_allocator
from roofsim.validation.local.transformer import LocalLlama, StepRecord, build_local_llama
from roofsim.validation.profiles import atomic_write_text

logger = logging.getLogger(__name__)

Mode = Literal["static", "continuous"]
MODES: tuple[str, ...] = ("static", "continuous")


@dataclass(frozen=True, slots=True)
class RequestLog:
    """One request's timeline, seconds since the run's clock started. token_times_s[0] is the first token."""

    request_id: int
    input_len: int
    output_len: int
    send_s: float
    token_times_s: tuple[float, ...]

    @property
    def first_token_s(self) -> float:
        return self.token_times_s[0]

    @property
    def ttft_s(self) -> float:
        """Time to first token from the send time, queueing included (as vLLM's client measures it)."""
        return self.token_times_s[0] - self.send_s

    @property
    def e2el_s(self) -> float:
        return self.token_times_s[-1] - self.send_s

    @property
    def itls_s(self) -> tuple[float, ...]:
        """Gaps between consecutive output tokens: output_len - 1 of them."""
        times = self.token_times_s
        return tuple(b - a for a, b in zip(times[:-1], times[1:], strict=True))


@dataclass(frozen=True, slots=True)
class RunLog:
    """Everything one `run_serving` call measured."""

    model_id: str
    mode: str
    seed: int
    rate_per_s: float
    max_batch: int
    started_unix_s: float
    requests: tuple[RequestLog, ...]
    steps: tuple[StepRecord, ...]
    machine: tuple[tuple[str, str], ...]

    @property
    def duration_s(self) -> float:
        """First send to last token."""
        return max(r.token_times_s[-1] for r in self.requests) - min(r.send_s for r in self.requests)


@dataclass(slots=True)
class _Active:
    request: int
    slot: int
    last_token: int
    times: list[float]


def run_serving(
    spec: ModelSpec,
    mode: Mode,
    num_requests: int,
    rate_per_s: float,
    input_len: int | tuple[int, int],
    output_len: int,
    max_batch: int,
    seed: int,
    *,
    temperature: float = 0.0,
) -> RunLog:
    """Serve `num_requests` synthetic requests with the numpy model, in real time.

    Arrivals are Poisson at `rate_per_s` (inf: all at time 0). `input_len` is fixed or a uniform (lo, hi)
    range, inclusive; every request generates exactly `output_len` tokens (EOS ignored, as in vLLM's benchmark).
    continuous: between steps, arrived requests are admitted up to `max_batch` running and prefilled first (one
    prefill step for all of them), then the running batch decodes one token (prefill-prioritising, like vLLM's
    default scheduler). static: wait until `max_batch` requests have arrived (or no more will come), run that
    batch to completion, repeat. Weights, prompts, arrivals and sampling all come from `seed`.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be one of {MODES}")
    if num_requests < 1:
        raise ValueError(f"num_requests={num_requests} must be >= 1")
    if not rate_per_s > 0:
        raise ValueError(f"rate_per_s={rate_per_s} must be > 0 (inf sends everything at once)")
    if output_len < 1:
        raise ValueError(f"output_len={output_len} must be >= 1")
    if max_batch < 1:
        raise ValueError(f"max_batch={max_batch} must be >= 1")
    use_caching_allocator()  # as calibrate --local does (machine.use_caching_allocator)
    lo, hi = (input_len, input_len) if isinstance(input_len, int) else input_len
    if not 1 <= lo <= hi:
        raise ValueError(
            f"input_len={input_len} must be a positive int or a (lo, hi) range with 1 <= lo <= hi"
        )

    weights_rng, workload_rng, sample_rng = np.random.default_rng(seed).spawn(3)
    model = build_local_llama(spec, weights_rng, max_seqs=max_batch, max_ctx_tokens=hi + output_len)
    model.rng = sample_rng
    input_lens = workload_rng.integers(lo, hi + 1, size=num_requests)
    prompts = [workload_rng.integers(0, spec.vocab_size, size=n) for n in input_lens]
    if math.isinf(rate_per_s):
        sends = np.zeros(num_requests)
    else:
        # Poisson process: exponential gaps with mean 1/rate; the first request arrives after one gap.
        sends = np.cumsum(workload_rng.exponential(1.0 / rate_per_s, size=num_requests))

    _warm_up(model, int(lo))
    started_unix = time.time()
    t0 = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - t0

    times: list[list[float]] = [[] for _ in range(num_requests)]
    waiting: deque[int] = deque()
    running: list[_Active] = []
    next_arrival = finished = 0
    while finished < num_requests:
        now = clock()
        while next_arrival < num_requests and sends[next_arrival] <= now:
            waiting.append(next_arrival)
            next_arrival += 1
        all_arrived = next_arrival == num_requests
        if mode == "continuous":
            admit = min(len(waiting), max_batch - len(running))
        elif not running and waiting and (len(waiting) >= max_batch or all_arrived):
            admit = min(len(waiting), max_batch)
        else:
            admit = 0
        if admit:
            new = [waiting.popleft() for _ in range(admit)]
            slots = [model.allocate() for _ in new]
            logits = model.prefill(list(zip(slots, (prompts[i] for i in new), strict=True)))
            stamp = clock()
            tokens = model.sample(logits, temperature)
            for request, slot, token in zip(new, slots, tokens, strict=True):
                times[request].append(stamp)
                running.append(_Active(request, slot, int(token), times[request]))
        elif running:
            logits = model.decode([(a.slot, a.last_token) for a in running])
            stamp = clock()
            tokens = model.sample(logits, temperature)
            for active, token in zip(running, tokens, strict=True):
                active.times.append(stamp)
                active.last_token = int(token)
        elif next_arrival < num_requests:
            time.sleep(max(0.0, sends[next_arrival] - clock()))
            continue
        done = [a for a in running if len(a.times) >= output_len]
        for active in done:
            model.release(active.slot)
            finished += 1
        if done:
            running = [a for a in running if len(a.times) < output_len]

    requests = tuple(
        RequestLog(i, int(input_lens[i]), output_len, float(sends[i]), tuple(times[i]))
        for i in range(num_requests)
    )
    logger.info(
        "served %d requests (%s, max_batch=%d) in %.2f s with %d steps",
        num_requests,
        mode,
        max_batch,
        clock(),
        len(model.steps),
    )
    return RunLog(
        model_id=spec.name,
        mode=mode,
        seed=seed,
        rate_per_s=float(rate_per_s),
        max_batch=max_batch,
        started_unix_s=started_unix,
        requests=requests,
        steps=tuple(model.steps),
        machine=machine_facts(),
    )


def _warm_up(model: LocalLlama, prompt_len: int) -> None:
    """One unrecorded prefill and decode so first-call costs (page faults, BLAS thread start) stay out of the log."""
    slot = model.allocate()
    model.prefill([(slot, np.zeros(min(prompt_len, model.max_ctx_tokens - 1), dtype=np.int64))], record=False)
    model.decode([(slot, 0)], record=False)
    model.release(slot)


def _stats_ms(name: str, values_s: list[float], out: dict[str, object]) -> None:
    values = np.asarray(values_s, dtype=np.float64) * 1e3 if values_s else np.zeros(1)
    out[f"mean_{name}_ms"] = float(np.mean(values))
    out[f"median_{name}_ms"] = float(np.median(values))
    out[f"std_{name}_ms"] = float(np.std(values))
    out[f"p99_{name}_ms"] = float(np.percentile(values, 99))


def vllm_log_dict(runlog: RunLog) -> dict[str, object]:
    """The run in vLLM benchmark_serving's --save-result layout, plus send_times, steps, machine, seed, mode.

    Definitions follow vLLM's benchmarks/benchmark_serving.py: TTFT from the send time; TPOT =
    (e2el - ttft) / (output_len - 1) over requests with more than one token; ITL = every gap between tokens;
    e2el = last token - send; duration = first send to last token.
    """
    reqs = runlog.requests
    first_send = min(r.send_s for r in reqs)
    duration = runlog.duration_s
    total_in = sum(r.input_len for r in reqs)
    total_out = sum(r.output_len for r in reqs)
    tpots = [(r.e2el_s - r.ttft_s) / (r.output_len - 1) for r in reqs if r.output_len > 1]
    out: dict[str, object] = {
        "date": datetime.fromtimestamp(runlog.started_unix_s).strftime("%Y%m%d-%H%M%S"),
        "backend": "roofsim-measure",
        "model_id": runlog.model_id,
        "tokenizer_id": runlog.model_id,
        "num_prompts": len(reqs),
        "request_rate": "inf" if math.isinf(runlog.rate_per_s) else runlog.rate_per_s,
        "burstiness": 1.0,
        "max_concurrency": None,
        "duration": duration,
        "completed": len(reqs),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(reqs) / duration,
        "output_throughput": total_out / duration,
        "total_token_throughput": (total_in + total_out) / duration,
    }
    _stats_ms("ttft", [r.ttft_s for r in reqs], out)
    _stats_ms("tpot", tpots, out)
    _stats_ms("itl", [gap for r in reqs for gap in r.itls_s], out)
    _stats_ms("e2el", [r.e2el_s for r in reqs], out)
    out.update(
        {
            "input_lens": [r.input_len for r in reqs],
            "output_lens": [r.output_len for r in reqs],
            "ttfts": [r.ttft_s for r in reqs],
            "itls": [list(r.itls_s) for r in reqs],
            "generated_texts": ["" for _ in reqs],
            "errors": ["" for _ in reqs],
            "send_times": [r.send_s - first_send for r in reqs],
            "steps": [
                {
                    "kind": s.kind,
                    "batch_size": s.batch_size,
                    "tokens": s.tokens,
                    "ctx_sum": s.ctx_sum,
                    "seconds": s.seconds,
                }
                for s in runlog.steps
            ],
            "machine": dict(runlog.machine),
            "seed": runlog.seed,
            "mode": runlog.mode,
            "max_batch": runlog.max_batch,
        }
    )
    return out


def write_vllm_log(runlog: RunLog, path: str | Path) -> Path:
    """Write `vllm_log_dict(runlog)` as JSON to `path`; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(vllm_log_dict(runlog), indent=1))
    return path


def local_model_config(spec: ModelSpec) -> dict[str, Any]:
    """A HuggingFace LlamaConfig-style config.json dict for a Llama-architecture ModelSpec, so the simulator
    (which loads models by preset name or config path) can load the model the local run served."""
    if spec.family not in ("llama", "mistral", "qwen2", "qwen3") or spec.moe or spec.mla or spec.num_sliding_layers:
        raise ValueError(f"model {spec.name!r} (family {spec.family!r}) has no Llama-style config.json; "
                         f"pass the preset or config.json it came from instead")
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": spec.hidden_size,
            "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads, "head_dim": spec.head_dim,
            "intermediate_size": spec.intermediate_size, "vocab_size": spec.vocab_size,
            "max_position_embeddings": spec.max_context_tokens, "hidden_act": spec.activation,
            "tie_word_embeddings": spec.tie_word_embeddings, "attention_bias": spec.attention_bias,
            "mlp_bias": spec.mlp_bias, "rms_norm_eps": 1e-6, "torch_dtype": "float32",
            "_roofsim_source": spec.source}


def write_model_config(spec: ModelSpec, path: Path | str) -> Path:
    """Write `local_model_config(spec)` as JSON to `path` atomically (`roofsim measure` puts it next to the log)."""
    return atomic_write_text(path, json.dumps(local_model_config(spec), indent=1) + "\n")
