"""Readers for real serving logs (vLLM benchmark_serving / `vllm bench serve`, GuideLLM, LLMPerf, SGLang
bench_serving, genai-perf and AIPerf profile exports) into one per-request `ServingLog` per benchmark, summary-only
exports into `ServingStats`, plus the regeneration of vLLM's Poisson send times when a log lacks them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import MAX_DOCUMENT_BYTES, parse_json_text, read_text_file

__all__ = ["ServingLog", "ServingStats", "LOG_FORMATS", "read_vllm_benchmark", "read_guidellm", "read_guidellm_all",
           "read_llmperf", "read_sglang", "read_aiperf", "read_genai_perf", "read_log", "read_logs", "read_stats",
           "regenerate_poisson_arrivals"]


@dataclass(frozen=True)
class ServingLog:
    """Per-request measurements of one benchmark run, in seconds and tokens; `notes` lists every assumption.
    `label` names the benchmark inside its file (a sweep file holds several); `concurrency` is the closed-loop
    client count or the harness's concurrency cap when the file records one; `server` is the serving software the
    file names ('' when it names none; vLLM and SGLang benchmark files: their `backend`, e.g. "vllm", "sglang",
    "roofsim-measure" for `roofsim measure` logs)."""

    source_format: str
    path: str
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    itl_s: tuple[np.ndarray, ...]
    e2e_s: np.ndarray
    send_s: np.ndarray | None
    request_rate_per_s: float | None
    seed: int | None
    duration_s: float | None
    notes: tuple[str, ...]
    label: str = ""
    concurrency: int | None = None
    server: str = ""

    @property
    def num_requests(self) -> int:
        return int(self.input_tokens.shape[0])


@dataclass(frozen=True)
class ServingStats:
    """Summary statistics of one benchmark run from an export without per-request records (per-request replay is
    impossible). stats: metric (ttft_s, tpot_s, itl_s, e2e_s) -> statistic (mean, p50, p90, p99, ...) -> seconds."""

    source_format: str
    path: str
    label: str
    stats: dict[str, dict[str, float]]
    num_requests: int | None
    duration_s: float | None
    request_rate_per_s: float | None
    concurrency: int | None
    notes: tuple[str, ...] = field(default=())


def regenerate_poisson_arrivals(n: int, rate: float, seed: int, burstiness: float = 1.0) -> np.ndarray:
    """Send times (s, first = 0) that vLLM benchmark_serving would have used for n requests.

    vLLM benchmarks/benchmark_serving.py `get_request` (v0.8.x) yields a request, then sleeps
    `np.random.gamma(shape=burstiness, scale=1/(rate*burstiness))`; main() seeds numpy's global RNG with
    `np.random.seed(args.seed)`. We replay the same draw sequence with a local RandomState(seed), assuming nothing
    else drew from numpy's global RNG before the first request (true for the sharegpt dataset path, which
    samples with Python's `random`). rate=inf sends everything at 0.
    """
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    if not rate > 0:
        raise ValueError(f"rate={rate} must be > 0 (use math.inf for 'inf')")
    if not burstiness > 0:
        raise ValueError(f"burstiness={burstiness} must be > 0")
    if math.isinf(rate) or n == 0:
        return np.zeros(n, dtype=np.float64)
    rs = np.random.RandomState(seed)
    theta = 1.0 / (rate * burstiness)
    gaps = np.array([rs.gamma(shape=burstiness, scale=theta) for _ in range(n - 1)], dtype=np.float64)
    return np.concatenate(([0.0], np.cumsum(gaps)))


# ------------------------------------------------------------------------------------------------ helpers
def _load_json(path: Path) -> Any:
    """The file's JSON value (within the loading layer's size, encoding and nesting limits); a JSON Lines file
    (vLLM --append-result, SGLang bench_serving, AIPerf profile_export.jsonl) becomes the list of its line objects.
    The one place serving logs are loaded."""
    text = read_text_file(path, what="serving log", max_bytes=MAX_DOCUMENT_BYTES)
    try:
        return parse_json_text(text, str(path))
    except InputError:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) < 2:
            raise
        return [parse_json_text(ln, f"{path}: JSON Lines line {i + 1}") for i, ln in enumerate(lines)]


def _rate(value: Any, path: Path, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: field {key!r}={value!r} is not a number or 'inf'") from None
    if not x > 0:
        raise InputError(f"{path}: field {key!r}={value!r} must be > 0")
    return x


def _num(value: Any, path: Path, where: str, *, integer: bool = False, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{path}: {where}={value!r} is not a number")
    x = float(value)
    if not math.isfinite(x) or x < 0 or (not allow_zero and x == 0) or (integer and x != int(x)):
        raise InputError(f"{path}: {where}={value!r} must be a finite non-negative "
                         f"{'integer' if integer else 'number'}")
    return x


def _opt_int(value: Any, path: Path, where: str) -> int | None:
    return None if value is None else int(_num(value, path, where, integer=True))


def _unread_keys(d: dict[str, Any], known: Iterable[str], where: str) -> list[str]:
    """A note naming the keys of `d` this reader does not know (so nothing is dropped silently)."""
    extra = sorted(set(d) - set(known))
    return [f"{where}: keys not read (unknown to this reader): {extra}"] if extra else []


@dataclass
class _Rows:
    """Per-request columns while a reader walks a file."""

    inp: list[int] = field(default_factory=list)
    out: list[int] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    itl: list[np.ndarray] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    send: list[float | None] = field(default_factory=list)

    def add(self, inp: int, out: int, ttft: float, itl: np.ndarray, e2e: float, send: float | None) -> None:
        self.inp.append(inp)
        self.out.append(out)
        self.ttft.append(ttft)
        self.itl.append(itl)
        self.e2e.append(e2e)
        self.send.append(send)

    def log(self, fmt: str, path: Path, notes: list[str], *, rate: float | None = None, seed: int | None = None,
            duration_s: float | None = None, label: str = "", concurrency: int | None = None,
            server: str = "") -> ServingLog:
        send = None
        if self.send and None not in self.send:
            st = np.array(self.send, dtype=np.float64)
            send = st - st.min()
        return ServingLog(fmt, str(path), np.array(self.inp, dtype=np.int64), np.array(self.out, dtype=np.int64),
                          np.array(self.ttft, dtype=np.float64), tuple(self.itl),
                          np.array(self.e2e, dtype=np.float64), send, rate, seed, duration_s, tuple(notes), label,
                          concurrency, server)


def _backend(d: dict[str, Any]) -> str:
    """The `backend` a vLLM or SGLang benchmark file names (the server it talked to), '' when none."""
    b = d.get("backend")
    return b if isinstance(b, str) else ""


def _mean_gaps(out_tokens: int, mean_gap_s: float) -> np.ndarray:
    """The per-request mean decode gap repeated output - 1 times (for formats that store no individual gaps)."""
    return np.full(max(out_tokens - 1, 0), mean_gap_s, dtype=np.float64)


# ------------------------------------------------------------------------- vLLM and SGLang (per-request lists)


def _optional(value: Any, path: Path, key: str, *, integer: bool = False) -> float | None:
    """A recorded seed/duration: None when absent, else a finite number (an integer for a seed)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            integer and value != int(value)):
        raise InputError(f"{path}: field {key!r}={value!r} must be a finite {'integer' if integer else 'number'}")
    return value


def _list(value: Any, path: Path, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(f"{path}: {key} must be a list, got {type(value).__name__}")
    return value

_VLLM_KEYS = ("input_lens", "output_lens", "ttfts", "itls")
# Summary fields both scripts also write: recomputable from the per-request lists, so not needed for replay.
_SUMMARY_PREFIXES = ("mean_", "median_", "std_", "p")
_VLLM_INFO = ("date", "backend", "endpoint_type", "label", "model_id", "tokenizer_id", "num_prompts", "completed",
              "failed", "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput",
              "request_goodput:", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
              "max_concurrent_requests", "rtfx", "generated_texts", "queue_times", "rps_change_events")
_SGLANG_INFO = ("backend", "dataset_name", "sharegpt_output_len", "random_input_len", "random_output_len",
                "random_range_ratio", "completed", "total_input_tokens", "total_output_tokens",
                "total_output_tokens_retokenized", "request_throughput", "input_throughput", "output_throughput",
                "total_throughput", "concurrency", "accept_length", "generated_texts")
_SGLANG_MARKERS = ("total_output_tokens_retokenized", "mean_e2e_latency_ms", "input_throughput", "accept_length")


def _is_summary_key(k: str) -> bool:
    return k.endswith("_ms") and k.startswith(_SUMMARY_PREFIXES)


def _per_request_lists(d: dict[str, Any], path: Path, fmt: str, where: str, notes: list[str]) -> tuple[
        _Rows, list[int], int]:
    """Read the per-request lists vLLM and SGLang share (input_lens, output_lens, ttfts, itls, errors,
    generated_texts; vLLM >= 0.10 also latencies, start_times). -> rows, failed indices, n."""
    at = "" if where == "file" else f" ({where})"
    for key in _VLLM_KEYS:
        if key not in d:
            raise InputError(f"{path} is not a {fmt} JSON: missing key {key!r}{at}")
        if not isinstance(d[key], list):
            raise InputError(f"{path}: {where} key {key!r} must be a list, got {type(d[key]).__name__}")
    n = len(d["ttfts"])
    for key in _VLLM_KEYS + ("errors", "generated_texts", "latencies", "start_times"):
        if key in d and d[key] is not None and len(_list(d[key], path, f"{where} key {key!r}")) != n:
            raise InputError(f"{path}: {where} key {key!r} has {len(d[key])} entries but 'ttfts' has {n}")
    errors = d.get("errors") or [""] * n
    failed = [i for i in range(n) if errors[i] or d["output_lens"][i] == 0]
    if failed:
        notes.append(f"{len(failed)} of {n} requests failed (non-empty 'errors' or output_len 0) and are excluded: "
                     f"indices {failed[:20]}{' ...' if len(failed) > 20 else ''}")
    texts = d.get("generated_texts")
    bad = set(failed)
    if texts is not None:
        empty_ok = [i for i in range(n) if not texts[i] and i not in bad]
        if empty_ok:
            notes.append(f"{len(empty_ok)} requests have empty generated text but no error and output_len >= 1 "
                         f"(e.g. an immediate end-of-sequence token); kept as successful")
    lat, starts = d.get("latencies"), d.get("start_times")
    rows = _Rows()
    mismatch = 0
    for i in range(n):
        if i in bad:
            continue
        gaps = d["itls"][i]
        if not isinstance(gaps, list):
            raise InputError(f"{path}: {where} itls[{i}] must be a list of seconds, got {type(gaps).__name__}")
        g = np.array([_num(x, path, f"itls[{i}][{j}]") for j, x in enumerate(gaps)], dtype=np.float64)
        out = int(_num(d["output_lens"][i], path, f"output_lens[{i}]", integer=True))
        mismatch += len(g) != out - 1
        ttft = _num(d["ttfts"][i], path, f"ttfts[{i}]")
        e2e = _num(lat[i], path, f"latencies[{i}]") if lat else ttft + float(g.sum())
        rows.add(int(_num(d["input_lens"][i], path, f"input_lens[{i}]", integer=True)), out, ttft, g, e2e,
                 _num(starts[i], path, f"start_times[{i}]") if starts else None)
    if mismatch:
        notes.append(f"{mismatch} requests have len(itls) != output_len - 1 (several tokens per streamed chunk)")
    notes.append("e2e_s = the file's per-request 'latencies'" if lat else
                 "e2e_s = ttft + sum(itls) (the per-request latency is not saved in this layout)")
    return rows, failed, n


def _vllm_one(d: Any, path: Path, where: str) -> ServingLog:
    if not isinstance(d, dict):
        raise InputError(f"{path} is not a vLLM benchmark_serving JSON: {where} is {type(d).__name__}, not an object")
    notes: list[str] = [where] if where != "file" else []
    rows, failed, n = _per_request_lists(d, path, "vLLM benchmark_serving", where, notes)
    known = (*_VLLM_KEYS, *_VLLM_INFO, "errors", "latencies", "start_times", "request_rate", "seed", "burstiness",
             "max_concurrency", "duration", "send_times", "arrival_s", "ramp_up_strategy", "ramp_up_start_rps",
             "ramp_up_end_rps", "steps")
    notes += _unread_keys({k: v for k, v in d.items() if not _is_summary_key(k) and not k.startswith(
        ("spec_decode_", "diffusion_", "probe_"))}, known, where)
    rate = _rate(d.get("request_rate"), path, "request_rate")
    seed = _optional(d.get("seed"), path, "seed", integer=True)
    # our own `roofsim measure` logs store send times under these keys (seconds)
    for key in ("send_times", "arrival_s"):
        if key in d:
            vals = d[key]
            if not isinstance(vals, list) or len(vals) != n:
                raise InputError(f"{path}: key {key!r} must be a list with {n} entries")
            raw = [_num(v, path, f"{key}[{i}]") for i, v in enumerate(vals)]
            keep = [i for i in range(n) if i not in set(failed)]
            rows.send = [raw[i] for i in keep]
            notes.append(f"send times from key {key!r}, made relative to the first")
            break
    else:
        if "start_times" in d:
            notes.append("send_s = 'start_times' (client perf_counter when each request was sent, after any "
                         "client-side --max-concurrency queueing), relative to the first")
        else:
            if seed is None:
                notes.append("seed not recorded in the file; vLLM benchmark_serving's --seed defaults to 0")
            notes.append("no send times in the file (vLLM's layout has none); use regenerate_poisson_arrivals("
                         "num_prompts, request_rate, seed) to replay vLLM's arrival draw")
    if d.get("ramp_up_strategy") is not None:
        notes.append(f"ramp_up_strategy={d['ramp_up_strategy']!r} ({d.get('ramp_up_start_rps')} -> "
                     f"{d.get('ramp_up_end_rps')} req/s): the rate changed during the run, so 'request_rate' is not "
                     "the arrival rate and is not used")
        rate = None
    burst = d.get("burstiness")
    if burst not in (None, 1.0, 1):
        notes.append(f"burstiness={burst}: arrivals are gamma, not Poisson")
    dur = _optional(d.get("duration"), path, "duration")
    mc = _opt_int(d.get("max_concurrency"), path, "max_concurrency")
    if mc is not None:
        notes.append(f"max_concurrency={mc}: the client held at most {mc} requests in flight")
    return rows.log("vllm", path, notes, rate=rate, seed=int(seed) if seed is not None else None,
                    duration_s=float(dur) if dur is not None else None,
                    label="" if where == "file" else where, concurrency=mc, server=_backend(d))


def read_vllm_benchmark(path: Path | str) -> ServingLog:
    """Read a vLLM `benchmark_serving.py --save-result --save-detailed` JSON (vLLM 0.8 layout) or a
    `vllm bench serve --save-result --save-detailed` JSON (vllm/benchmarks/serve.py `main_async` result_json:
    adds per-request `latencies` and `start_times`); with --append-result, the first line of the JSON Lines file.

    Failed requests (non-empty `errors` entry or output_len 0) are excluded and counted, by index, in notes.
    """
    return _vllm_all(Path(path))[0]


def _vllm_all(path: Path) -> list[ServingLog]:
    d = _load_json(path)
    if isinstance(d, list):
        return [_vllm_one(x, path, f"line {i + 1}") for i, x in enumerate(d)]
    return [_vllm_one(d, path, "file")]


def _sglang_one(d: Any, path: Path, where: str) -> ServingLog:
    if not isinstance(d, dict):
        raise InputError(f"{path} is not an SGLang bench_serving JSONL: {where} is not an object")
    if "ttfts" not in d:
        raise InputError(f"{path}: {where} of the SGLang bench_serving output has summary statistics only (no "
                         "per-request 'ttfts'); per-request replay is impossible: rerun with --output-details, or "
                         "read it with read_stats()")
    notes = [where]
    rows, _, _ = _per_request_lists(d, path, "SGLang bench_serving", where, notes)
    known = (*_VLLM_KEYS, *_SGLANG_INFO, "errors", "request_rate", "max_concurrency", "duration")
    notes += _unread_keys({k: v for k, v in d.items() if not _is_summary_key(k)}, known, where)
    notes.append("SGLang bench_serving records neither send times nor its --seed (default 1); its get_request "
                 "draws np.random.exponential(1/rate) gaps, the same sequence as regenerate_poisson_arrivals(n, "
                 "rate, seed) when nothing else drew from numpy's RNG first (the random dataset does)")
    if d.get("accept_length") is not None:
        notes.append(f"accept_length={d['accept_length']}: the server ran speculative decoding")
    dur = _optional(d.get("duration"), path, f"{where}.duration")
    return rows.log("sglang", path, notes, rate=_rate(d.get("request_rate"), path, f"{where}.request_rate"),
                    duration_s=float(dur) if dur is not None else None, label=where,
                    concurrency=_opt_int(d.get("max_concurrency"), path, "max_concurrency"), server=_backend(d))


def read_sglang(path: Path | str) -> list[ServingLog]:
    """Every run of an SGLang `python -m sglang.bench_serving --output-file X.jsonl --output-details` file (one JSON
    object per line, appended per run; sgl-project/sglang python/sglang/bench_serving.py `benchmark`: result |
    result_details with input_lens, output_lens, ttfts, itls, generated_texts, errors)."""
    path = Path(path)
    d = _load_json(path)
    return [_sglang_one(x, path, f"line {i + 1}") for i, x in enumerate(d if isinstance(d, list) else [d])]


# -------------------------------------------------------------------------------------------- GuideLLM
def _first(*vals: Any) -> Any:
    return next((v for v in vals if v is not None), None)


def _guidellm_tokens(r: dict[str, Any], key: str, metrics_key: str) -> Any:
    """prompt/output token count: the computed field (GuideLLM >= 0.2) or {input,output}_metrics.total_tokens
    (GuideLLM 0.5/0.6 UsageMetrics) or, for output, info.timings.token_iterations (GuideLLM's own fallback)."""
    m = r.get(metrics_key)
    v = _first(r.get(key), m.get("total_tokens") if isinstance(m, dict) else None)
    if v is None and key == "output_tokens":
        t = (r.get("info") or {}).get("timings") if isinstance(r.get("info"), dict) else None
        v = (t or {}).get("token_iterations") or None
    return v


def _guidellm_request(r: Any, path: Path, where: str) -> tuple[int, int, float, float, float, float | None]:
    """-> (prompt_tokens, output_tokens, ttft_s, itl_mean_s, e2e_s, start_time_s)."""
    if not isinstance(r, dict):
        raise InputError(f"{path}: {where} is not an object")
    timings = (r.get("info") or {}).get("timings") if isinstance(r.get("info"), dict) else None
    pt, ot = _guidellm_tokens(r, "prompt_tokens", "input_metrics"), _guidellm_tokens(r, "output_tokens",
                                                                                      "output_metrics")
    if pt is None or ot is None:
        raise InputError(f"{path}: {where} is not a GuideLLM request: missing key "
                         f"{'prompt_tokens' if pt is None else 'output_tokens'!r}")
    pt = int(_num(pt, path, f"{where}.prompt_tokens", integer=True))
    ot = int(_num(ot, path, f"{where}.output_tokens", integer=True))
    if timings is not None and not isinstance(timings, dict):
        raise InputError(f"{path}: {where}.info.timings must be an object, got {type(timings).__name__}")
    if isinstance(timings, dict):
        # GuideLLM 0.5/0.6 RequestTimings (src/guidellm/schemas/info.py): request_start, first_token_iteration,
        # last_token_iteration, request_end (resolve_start/resolve_end as GuideLLM's own fallbacks);
        # GuideLLM 0.4: first_iteration / last_iteration
        start = _first(timings.get("request_start"), timings.get("resolve_start"))
        first = _first(timings.get("first_token_iteration"), timings.get("first_iteration"))
        last = _first(timings.get("last_token_iteration"), timings.get("last_iteration"))
        end = _first(timings.get("request_end"), timings.get("resolve_end"))
    else:        # GuideLLM 0.2/0.3: start_time, first_token_time, last_token_time, end_time
        start, first = r.get("start_time"), r.get("first_token_time")
        last, end = r.get("last_token_time"), r.get("end_time")
    if ot <= 1 and last is None:
        last = first  # one output token: no decode gap (GuideLLM leaves inter_token_latency_ms null)
    if None not in (start, first, last, end):
        s = _num(start, path, f"{where}.start")
        ttft = _num(first, path, f"{where}.first_token_time") - s
        e2e = _num(end, path, f"{where}.end_time") - s
        itl = (_num(last, path, f"{where}.last_token_time") - _num(first, path, f"{where}.first_token_time")
               ) / (ot - 1) if ot > 1 else 0.0
        if ttft < 0 or e2e < ttft or itl < 0:
            raise InputError(f"{path}: {where}: timestamps out of order (start {start}, first {first}, "
                             f"last {last}, end {end})")
        return pt, ot, ttft, itl, e2e, s
    # computed fields only (ms), e.g. a trimmed export; inter_token_latency_ms is null for 1-token outputs
    need = ("time_to_first_token_ms", "request_latency") + (("inter_token_latency_ms",) if ot > 1 else ())
    for key in need:
        if r.get(key) is None:
            raise InputError(f"{path}: {where} has neither timestamps nor {key!r}")
    ttft = _num(r["time_to_first_token_ms"], path, f"{where}.time_to_first_token_ms") / 1e3
    itl = _num(r["inter_token_latency_ms"], path, f"{where}.inter_token_latency_ms") / 1e3 if ot > 1 else 0.0
    e2e = _num(r["request_latency"], path, f"{where}.request_latency")
    return pt, ot, ttft, itl, e2e, None


def read_guidellm_all(path: Path | str) -> list[ServingLog]:
    """Read every benchmark of a GuideLLM `benchmarks.json` (one ServingLog per benchmark/strategy)."""
    path = Path(path)
    d = _load_json(path)
    if not isinstance(d, dict) or "benchmarks" not in d:
        raise InputError(f"{path} is not a GuideLLM JSON: missing key 'benchmarks'")
    if not isinstance(d["benchmarks"], list) or not d["benchmarks"]:
        raise InputError(f"{path}: 'benchmarks' must be a non-empty list")
    return [_guidellm_one(path, b, i) for i, b in enumerate(d["benchmarks"])]


def _guidellm_strategy(b: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's scheduling strategy: `config.strategy` (GuideLLM 0.5/0.6 BenchmarkConfig,
    src/guidellm/benchmark/schemas/base.py) or `args.strategy` (GuideLLM 0.2-0.4 BenchmarkArgs)."""
    for holder in ("config", "args"):
        h = b.get(holder)
        if isinstance(h, dict) and isinstance(h.get("strategy"), dict):
            return h["strategy"]
    return {}


def _guidellm_one(path: Path, b: Any, bi: int) -> ServingLog:
    if not isinstance(b, dict) or not isinstance(b.get("requests"), dict) or "successful" not in b["requests"]:
        raise InputError(f"{path} is not a GuideLLM JSON: benchmarks[{bi}] missing key 'requests.successful'")
    reqs = b["requests"]
    succ = _list(reqs["successful"], path, f"benchmarks[{bi}].requests.successful")
    notes = [
        f"benchmarks[{bi}]",
        "GuideLLM stores one mean inter-token latency per request, (last_token - first_token)/(output_tokens - 1);"
        " itl_s holds that mean repeated output_tokens - 1 times (the individual gaps are not recorded)",
        "GuideLLM's time_per_output_token_ms includes the first token ((last_token - start)/output_tokens);"
        " it is not used: our TPOT is (e2e - ttft)/(output_tokens - 1)",
    ]
    for kind in ("errored", "incomplete"):
        k = len(_list(reqs.get(kind) or [], path, f"benchmarks[{bi}].requests.{kind}"))
        if k:
            notes.append(f"{k} {kind} requests are excluded")
    rows = _Rows()
    for i, r in enumerate(succ):
        pt, ot, ttft, itl, e2e, s = _guidellm_request(r, path, f"benchmarks[{bi}].requests.successful[{i}]")
        rows.add(pt, ot, ttft, _mean_gaps(ot, itl), e2e, s)
    ones = sum(1 for o in rows.out if o <= 1)
    if ones:
        notes.append(f"{ones} requests have a single output token: no decode gap, TPOT undefined for them")
    if rows.send and None not in rows.send:
        notes.append("send_s = request start time relative to the earliest request of this benchmark")
    strat = _guidellm_strategy(b)
    stype = strat.get("type_") or strat.get("type")
    rate = None
    if strat.get("rate") is not None:
        rate = _rate(strat["rate"], path, f"benchmarks[{bi}].strategy.rate")
    elif stype == "throughput":
        rate = math.inf
    # GuideLLM scheduler/strategies.py: concurrent -> `streams` closed-loop clients; synchronous -> 1;
    # throughput/constant/poisson -> optional max_concurrency cap
    conc = {"synchronous": 1, "concurrent": strat.get("streams")}.get(stype, strat.get("max_concurrency"))
    conc = _opt_int(conc, path, f"benchmarks[{bi}].strategy.streams")
    label = f"benchmarks[{bi}]" + (f" {stype}" if stype else "") + (f"@{strat['rate']:g}" if isinstance(
        strat.get("rate"), (int, float)) else f"@{conc}" if stype == "concurrent" else "")
    if stype:
        notes.append(f"strategy {stype}" + (f", concurrency {conc}" if conc else ""))
    cfg = b.get("config") if isinstance(b.get("config"), dict) else {}
    if cfg.get("sample_requests") is not None:
        notes.append(f"config.sample_requests={cfg['sample_requests']}: the file keeps only a sample of the "
                     "requests, so replaying them under-loads the server")
    for k in ("warmup_duration", "cooldown_duration"):
        if b.get(k):
            notes.append(f"{k}={float(b[k]):.3g} s: requests of that phase ran but are not in the file")
    seed = _optional(strat.get("random_seed"), path, f"benchmarks[{bi}].args.strategy.random_seed", integer=True)
    dur = None
    if b.get("duration") is not None:
        dur = _num(b["duration"], path, f"benchmarks[{bi}].duration")
    elif b.get("start_time") is not None and b.get("end_time") is not None:
        dur = _num(b["end_time"], path, f"benchmarks[{bi}].end_time") - _num(b["start_time"], path,
                                                                              f"benchmarks[{bi}].start_time")
    return rows.log("guidellm", path, notes, rate=rate, seed=int(seed) if seed is not None else None,
                    duration_s=dur, label=label, concurrency=conc)


def read_guidellm(path: Path | str, index: int = 0) -> ServingLog:
    """Read benchmark `index` of a GuideLLM JSON (GuideLLM 0.2/0.3 `GenerativeBenchmarksReport`, 0.4 `info.timings`
    and 0.5/0.6 `config.strategy` + `info.timings.first_token_iteration` requests). A note says how many
    benchmarks the file holds."""
    return _pick(read_guidellm_all(path), path, index)


def _pick(logs: list[ServingLog], path: Path | str, index: int) -> ServingLog:
    if not -len(logs) <= index < len(logs):
        raise InputError(f"{path}: benchmark index {index} out of range; the file holds {len(logs)}")
    lg = logs[index]
    if len(logs) > 1:
        lg = replace(lg, notes=lg.notes + (f"file holds {len(logs)} benchmarks; read #{index} (read_logs reads "
                                           "them all)",))
    return lg


# ---------------------------------------------------------------------------------------------- LLMPerf
_LLMPERF_KEYS = ("ttft_s", "end_to_end_latency_s", "number_input_tokens", "number_output_tokens")


def read_llmperf(path: Path | str) -> ServingLog:
    """Read LLMPerf `*_individual_responses.json` (a list of per-request dicts).

    LLMPerf's `inter_token_latency_s` is sum(chunk gaps incl. TTFT) / number_output_tokens (token_benchmark_ray.py
    divides the client's sum by the token count), i.e. ~ e2e / output tokens; it is not our ITL. Individual gaps
    are not stored, so itl_s holds (e2e - ttft)/(output - 1) repeated output - 1 times. Requests with a non-null
    error_code are excluded and counted in notes.
    """
    path = Path(path)
    d = _load_json(path)
    if not isinstance(d, list):
        raise InputError(f"{path} is not an LLMPerf individual_responses JSON: top level is "
                         f"{type(d).__name__}, not a list")
    notes = ["itl_s: LLMPerf stores no per-token gaps; each request's mean decode gap (e2e - ttft)/(output - 1) "
             "is repeated output - 1 times",
             "LLMPerf inter_token_latency_s (= sum of all chunk gaps incl. TTFT / output tokens) is not used",
             "output token counts are LLMPerf's (client-side Llama tokenizer count of the text)"]
    keep = []
    failed = []
    for i, r in enumerate(d):
        if not isinstance(r, dict):
            raise InputError(f"{path}: entry [{i}] is not an object")
        if r.get("error_code") not in (None, "", 0) or r.get("error_msg"):
            failed.append(i)
            continue
        for key in _LLMPERF_KEYS:
            if key not in r:
                raise InputError(f"{path} is not an LLMPerf individual_responses JSON: entry [{i}] missing key {key!r}")
        keep.append(r)
    if failed:
        notes.append(f"{len(failed)} of {len(d)} requests have an error_code and are excluded: indices {failed[:20]}")
    rows = _Rows()
    for i, r in enumerate(keep):
        o = int(_num(r["number_output_tokens"], path, "number_output_tokens", integer=True))
        t = _num(r["ttft_s"], path, "ttft_s")
        e = _num(r["end_to_end_latency_s"], path, "end_to_end_latency_s")
        if e < t:
            raise InputError(f"{path}: end_to_end_latency_s < ttft_s in kept entry {i}")
        rows.add(int(_num(r["number_input_tokens"], path, "number_input_tokens", integer=True)), o, t,
                 _mean_gaps(o, (e - t) / (o - 1) if o > 1 else 0.0), e, None)
    return rows.log("llmperf", path, notes)


# ------------------------------------------------------------------------------------ AIPerf / genai-perf
_TIME_UNITS_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0}


def _metric_s(m: Any, path: Path, where: str) -> float | list[float] | None:
    """An AIPerf / genai-perf metric {value|avg..., unit} in seconds (a list stays a list)."""
    if m is None:
        return None
    if not isinstance(m, dict) or "value" not in m:
        raise InputError(f"{path}: {where} must be an object with 'value' and 'unit'")
    unit = m.get("unit", "ms")
    if unit not in _TIME_UNITS_S:
        raise InputError(f"{path}: {where}.unit={unit!r} is not a time unit {sorted(_TIME_UNITS_S)}")
    f = _TIME_UNITS_S[unit]
    v = m["value"]
    if isinstance(v, list):
        return [_num(x, path, f"{where}.value[{j}]") * f for j, x in enumerate(v)]
    return _num(v, path, f"{where}.value") * f


def _aiperf_count(m: Any, path: Path, where: str) -> int | None:
    if m is None:
        return None
    if not isinstance(m, dict) or "value" not in m:
        raise InputError(f"{path}: {where} must be an object with 'value'")
    return int(_num(m["value"], path, f"{where}.value", integer=True))


def read_aiperf(path: Path | str) -> ServingLog:
    """Read an AIPerf `profile_export.jsonl` (one MetricRecordInfo per line: metadata.request_start_ns,
    metrics.{input_sequence_length, output_sequence_length, time_to_first_token, request_latency,
    inter_chunk_latency, inter_token_latency} with units, error; ai-dynamo/aiperf
    docs/tutorials/working-with-profile-exports.md, aiperf/common/models/record_models.py)."""
    path = Path(path)
    d = _load_json(path)
    recs = d if isinstance(d, list) else [d]
    notes: list[str] = []
    rows = _Rows()
    failed = warm = chunky = 0
    for i, r in enumerate(recs):
        w = f"line {i + 1}"
        if not isinstance(r, dict) or not isinstance(r.get("metadata"), dict) or "metrics" not in r:
            raise InputError(f"{path} is not an AIPerf profile_export.jsonl: {w} lacks 'metadata' / 'metrics'")
        meta, m = r["metadata"], r["metrics"] or {}
        if r.get("error") is not None or meta.get("was_cancelled"):
            failed += 1
            continue
        if meta.get("benchmark_phase", "profiling") != "profiling":
            warm += 1
            continue
        inp = _aiperf_count(m.get("input_sequence_length"), path, f"{w}.metrics.input_sequence_length")
        out = _aiperf_count(_first(m.get("output_sequence_length"), m.get("output_token_count")), path,
                            f"{w}.metrics.output_sequence_length")
        ttft = _metric_s(m.get("time_to_first_token"), path, f"{w}.metrics.time_to_first_token")
        e2e = _metric_s(m.get("request_latency"), path, f"{w}.metrics.request_latency")
        for name, v in (("input_sequence_length", inp), ("output_sequence_length", out),
                        ("time_to_first_token", ttft), ("request_latency", e2e)):
            if v is None:
                raise InputError(f"{path}: {w}.metrics has no {name!r} (needed per request; was the run "
                                 "streaming?)")
        gaps = _metric_s(m.get("inter_chunk_latency"), path, f"{w}.metrics.inter_chunk_latency")
        if isinstance(gaps, list):
            g = np.array(gaps, dtype=np.float64)
            chunky += len(g) != out - 1
        else:
            itl = _metric_s(m.get("inter_token_latency"), path, f"{w}.metrics.inter_token_latency")
            g = _mean_gaps(out, float(itl) if itl is not None else (e2e - ttft) / max(out - 1, 1))
        start = meta.get("request_start_ns")
        rows.add(inp, out, float(ttft), g, float(e2e),  # type: ignore[arg-type]
                 _num(start, path, f"{w}.metadata.request_start_ns") * 1e-9 if start is not None else None)
    if failed:
        notes.append(f"{failed} of {len(recs)} records have an error or were cancelled and are excluded")
    if warm:
        notes.append(f"{warm} records outside the 'profiling' phase (warm-up) are excluded")
    if chunky:
        notes.append(f"{chunky} requests have len(inter_chunk_latency) != output - 1 (several tokens per chunk)")
    notes.append("send_s = metadata.request_start_ns relative to the first; load settings (rate, concurrency) "
                 "live in profile_export_aiperf.json and are not needed for replay")
    return rows.log("aiperf", path, notes)


def _sse_has_content(resp: Any) -> bool:
    """Whether one genai-perf response carries generated text: an OpenAI SSE 'data: {...}' chunk with
    choices[].delta.content or choices[].text, or a Triton {'text_output': ...} (genai-perf
    profile_data_parser/llm_profile_data_parser.py skips responses without text the same way)."""
    if not isinstance(resp, dict):
        return False
    if "text_output" in resp:
        return bool(resp["text_output"])
    body = resp.get("response")
    if not isinstance(body, str):
        return False
    for part in body.split("data:"):
        part = part.strip()
        if not part or part == "[DONE]":
            continue
        try:
            ev = json.loads(part)
        except json.JSONDecodeError:
            continue
        for c in (ev.get("choices") or []) if isinstance(ev, dict) else []:
            if isinstance(c, dict) and ((c.get("delta") or {}).get("content") or c.get("text")):
                return True
    return False


def read_genai_perf(path: Path | str) -> list[ServingLog]:
    """Every experiment of a genai-perf `profile_export.json` (Perf Analyzer's export: experiments[].experiment
    {mode, value}, requests[].{timestamp, response_timestamps (ns), response_outputs};
    triton-inference-server/client genai-perf tests/test_llm_profile_data_parser.py fixtures).

    The file stores text, not token counts (genai-perf tokenizes it): output tokens = responses carrying text (one
    token per streamed response, assumed); input tokens = input_sequence_length.avg of the
    profile_export_genai_perf.json next to the file (synthetic prompts of one length, assumed), else an error."""
    path = Path(path)
    d = _load_json(path)
    if not isinstance(d, dict) or not isinstance(d.get("experiments"), list):
        raise InputError(f"{path} is not a genai-perf profile_export.json: missing list 'experiments'")
    side = path.with_name("profile_export_genai_perf.json")
    isl = None
    if side.exists():
        s = _load_json(side)
        isl_stats = s.get("input_sequence_length") if isinstance(s, dict) else None
        if isinstance(isl_stats, dict) and isl_stats.get("avg") is not None:
            isl = int(round(_num(isl_stats["avg"], side, "input_sequence_length.avg")))
    if isl is None:
        raise InputError(f"{path}: genai-perf's profile_export.json holds prompt text, not token counts; put its "
                         f"profile_export_genai_perf.json (with input_sequence_length) next to it ({side} not found "
                         "or without that field)")
    logs = []
    for ei, ex in enumerate(d["experiments"]):
        w = f"experiments[{ei}]"
        if not isinstance(ex, dict) or not isinstance(ex.get("requests"), list):
            raise InputError(f"{path}: {w} missing list 'requests'")
        mode_val = ex.get("experiment") or {}
        notes = [w, f"input_tokens = {isl} for every request (input_sequence_length.avg of {side.name})",
                 "output_tokens = responses carrying text (one token per streamed response assumed)"]
        rows = _Rows()
        dropped = 0
        for ri, r in enumerate(ex["requests"]):
            ts, outs = r.get("response_timestamps"), r.get("response_outputs")
            if "timestamp" not in r or not isinstance(ts, list) or not isinstance(outs, list) or len(ts) != len(outs):
                raise InputError(f"{path}: {w}.requests[{ri}] needs 'timestamp' and equally long "
                                 "'response_timestamps' / 'response_outputs'")
            t0 = _num(r["timestamp"], path, f"{w}.requests[{ri}].timestamp")
            tok = [_num(t, path, f"{w}.requests[{ri}].response_timestamps") for t, o in zip(ts, outs, strict=True)
                   if _sse_has_content(o)]
            if not tok:
                dropped += 1
                continue
            g = np.diff(np.array(tok)) * 1e-9
            rows.add(isl, len(tok), (tok[0] - t0) * 1e-9, g, (max(_num(t, path, "response_timestamps")
                                                                   for t in ts) - t0) * 1e-9, t0 * 1e-9)
        if dropped:
            notes.append(f"{dropped} requests without any text response are excluded")
        mode, val = mode_val.get("mode"), mode_val.get("value")
        rate = _rate(val, path, f"{w}.experiment.value") if mode == "request_rate" else None
        conc = _opt_int(val, path, f"{w}.experiment.value") if mode == "concurrency" else None
        logs.append(rows.log("genai-perf", path, notes, rate=rate, label=f"{w} {mode}={val}", concurrency=conc))
    if not logs:
        raise InputError(f"{path}: 'experiments' is empty")
    return logs


# ------------------------------------------------------------------------------------ summary-only exports
_STAT_KEYS = {"avg": "mean", "mean": "mean", "p50": "p50", "median": "p50", "p90": "p90", "p95": "p95",
              "p99": "p99", "min": "min", "max": "max", "std": "std"}
# genai-perf profile_export_genai_perf.json / AIPerf profile_export_aiperf.json metric names -> ours
_EXPORT_METRICS = {"time_to_first_token": "ttft_s", "inter_token_latency": "tpot_s", "request_latency": "e2e_s"}
# vLLM / SGLang result keys <metric>_ms -> ours (vLLM 'e2el', SGLang 'e2e_latency')
_BENCH_METRICS = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_s", "e2el": "e2e_s", "e2e_latency": "e2e_s"}


def _export_stats(d: dict[str, Any], path: Path, fmt: str) -> ServingStats:
    stats: dict[str, dict[str, float]] = {}
    for key, ours in _EXPORT_METRICS.items():
        m = d.get(key)
        if not isinstance(m, dict):
            continue
        f = _TIME_UNITS_S.get(m.get("unit", "ms"))
        if f is None:
            raise InputError(f"{path}: {key}.unit={m.get('unit')!r} is not a time unit {sorted(_TIME_UNITS_S)}")
        stats[ours] = {_STAT_KEYS[k]: float(v) * f for k, v in m.items() if k in _STAT_KEYS and v is not None}
    if not stats:
        raise InputError(f"{path}: no time_to_first_token / inter_token_latency / request_latency statistics")
    count = (d.get("request_count") or {}).get("avg") if isinstance(d.get("request_count"), dict) else None
    dur = (d.get("benchmark_duration") or {}).get("avg") if isinstance(d.get("benchmark_duration"), dict) else None
    lg = ((d.get("input_config") or {}).get("loadgen") or {}) if isinstance(d.get("input_config"), dict) else {}
    notes = [f"{fmt} summary statistics only: per-request replay is impossible",
             "inter_token_latency is per request (e2e - ttft)/(output - 1), i.e. our TPOT"]
    return ServingStats(fmt, str(path), "file", stats, int(count) if count is not None else None,
                        float(dur) if dur is not None else None,
                        _rate(lg.get("request_rate"), path, "input_config.loadgen.request_rate"),
                        _opt_int(lg.get("concurrency"), path, "input_config.loadgen.concurrency"), tuple(notes))


def _bench_stats(d: dict[str, Any], path: Path, fmt: str, where: str) -> ServingStats:
    stats: dict[str, dict[str, float]] = {}
    for k, v in d.items():
        if not (isinstance(v, (int, float)) and _is_summary_key(k)):
            continue
        stat, _, rest = k.partition("_")
        metric = rest[:-3]
        if metric in _BENCH_METRICS:
            stats.setdefault(_BENCH_METRICS[metric], {})[_STAT_KEYS.get(stat, stat)] = float(v) / 1e3
    if not stats:
        raise InputError(f"{path}: {where} has no <stat>_<metric>_ms summary fields")
    dur = d.get("duration")
    return ServingStats(fmt, str(path), where, stats, _opt_int(d.get("completed"), path, "completed"),
                        float(dur) if dur is not None else None, _rate(d.get("request_rate"), path, "request_rate"),
                        _opt_int(d.get("max_concurrency"), path, "max_concurrency"),
                        (f"{fmt} summary statistics only: per-request replay is impossible",))


def read_stats(path: Path | str) -> list[ServingStats]:
    """Summary statistics of a file without per-request records (genai-perf profile_export_genai_perf.json,
    AIPerf profile_export_aiperf.json, vLLM without --save-detailed, SGLang without --output-details), one per run."""
    path = Path(path)
    d = _load_json(path)
    kind = _summary_kind(d)
    if kind is None:
        raise InputError(f"{path}: not a summary-only export (genai-perf/AIPerf profile_export_*.json, vLLM or "
                         "SGLang result without per-request lists)")
    if kind == "export":
        fmt = "aiperf" if any(k in d for k in ("telemetry_data", "error_summary", "was_cancelled")) else "genai-perf"
        return [_export_stats(d, path, fmt)]
    items = d if isinstance(d, list) else [d]
    return [_bench_stats(x, path, kind, f"line {i + 1}" if isinstance(d, list) else "file")
            for i, x in enumerate(items)]


def _summary_kind(d: Any) -> str | None:
    """'export' (genai-perf/AIPerf stats), 'vllm' or 'sglang' (result without per-request lists), else None."""
    if isinstance(d, dict) and isinstance(d.get("time_to_first_token"), dict) and "experiments" not in d:
        return "export"
    items = d if isinstance(d, list) else [d]
    if items and all(isinstance(x, dict) and "ttfts" not in x and "mean_ttft_ms" in x for x in items):
        return "sglang" if any(k in items[0] for k in _SGLANG_MARKERS) else "vllm"
    return None


# ------------------------------------------------------------------------------------------------ dispatch
def _detect(d: Any) -> str | None:
    """The per-request format of a loaded file, from its content (not its name)."""
    first = d[0] if isinstance(d, list) and d else d
    if isinstance(d, dict) and "benchmarks" in d:
        return "guidellm"
    if isinstance(d, dict) and "experiments" in d:
        return "genai-perf"
    if isinstance(first, dict) and isinstance(first.get("metadata"), dict) and "metrics" in first:
        return "aiperf"
    if isinstance(d, list) and isinstance(first, dict) and ("ttft_s" in first or "end_to_end_latency_s" in first):
        return "llmperf"
    if isinstance(first, dict) and ("ttfts" in first or "itls" in first or "input_lens" in first):
        return "sglang" if any(k in first for k in _SGLANG_MARKERS) and "date" not in first else "vllm"
    return None


_READERS_ALL: dict[str, Callable[[Path], list[ServingLog]]] = {
    "vllm": _vllm_all, "guidellm": read_guidellm_all, "llmperf": lambda p: [read_llmperf(p)],
    "sglang": read_sglang, "aiperf": lambda p: [read_aiperf(p)], "genai-perf": read_genai_perf}
LOG_FORMATS = ("auto", *_READERS_ALL)
_TRIED = ("vLLM benchmark_serving / bench serve JSON (key 'ttfts'), GuideLLM benchmarks.json ('benchmarks'), "
          "LLMPerf individual_responses list ('ttft_s'), SGLang bench_serving JSONL ('ttfts' + "
          "'total_output_tokens_retokenized'), AIPerf profile_export.jsonl ('metadata' + 'metrics'), genai-perf "
          "profile_export.json ('experiments')")


def read_logs(path: Path | str, format: str = "auto") -> list[ServingLog]:
    """Every benchmark of a serving log (a GuideLLM sweep, an SGLang / vLLM --append-result JSONL, genai-perf
    experiments hold several), detected from the content when format is 'auto'."""
    path = Path(path)
    if format not in LOG_FORMATS:
        raise InputError(f"{path}: unknown log format {format!r}; known: {list(LOG_FORMATS)}")
    if format != "auto":
        return _READERS_ALL[format](path)
    d = _load_json(path)
    fmt = _detect(d)
    if fmt is None:
        kind = _summary_kind(d)
        if kind is not None:
            hint = {"export": "genai-perf's profile_export.json or AIPerf's profile_export.jsonl",
                    "vllm": "vllm bench serve --save-detailed", "sglang": "sglang.bench_serving --output-details"}
            raise InputError(f"{path}: {kind} summary statistics only (no per-request records); per-request replay "
                             f"is impossible: read it with read_stats(), or replay {hint[kind]}")
        raise InputError(f"{path}: cannot detect the log format; tried {_TRIED}")
    return _READERS_ALL[fmt](path)


def read_log(path: Path | str, format: str = "auto", index: int = 0) -> ServingLog:
    """Benchmark `index` of a serving log (read_logs reads them all); a note says when the file holds more."""
    return _pick(read_logs(path, format), path, index)
