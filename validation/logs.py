"""Readers for real serving logs (vLLM benchmark_serving JSON, GuideLLM JSON, LLMPerf individual_responses.json)
into one per-request `ServingLog`, plus the regeneration of vLLM's Poisson send times when a log lacks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import MAX_DOCUMENT_BYTES, load_json_file

__all__ = ["ServingLog", "read_vllm_benchmark", "read_guidellm", "read_guidellm_all", "read_llmperf", "read_log",
           "regenerate_poisson_arrivals"]


@dataclass(frozen=True)
class ServingLog:
    """Per-request measurements of one benchmark run, in seconds and tokens; `notes` lists every assumption."""

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

    @property
    def num_requests(self) -> int:
        return int(self.input_tokens.shape[0])


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


def _load_json(path: Path) -> Any:
    return load_json_file(path, what="serving log", max_bytes=MAX_DOCUMENT_BYTES)


def _rate(value: Any, path: Path, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "inf":
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


# ------------------------------------------------------------------------------------------------ vLLM
_VLLM_KEYS = ("input_lens", "output_lens", "ttfts", "itls")


def read_vllm_benchmark(path: Path | str) -> ServingLog:
    """Read a vLLM `benchmark_serving.py --save-result --save-detailed` JSON (per-request lists).

    e2e = ttft + sum(itls). Failed requests (non-empty `errors` entry or output_len 0) are excluded from the
    arrays and counted, by index, in notes. Extra keys `send_times` / `arrival_s` (seconds) are used as send times.
    """
    path = Path(path)
    d = _load_json(path)
    if not isinstance(d, dict):
        raise InputError(f"{path} is not a vLLM benchmark_serving JSON: top level is {type(d).__name__}, not an object")
    for key in _VLLM_KEYS:
        if key not in d:
            raise InputError(f"{path} is not a vLLM benchmark_serving JSON: missing key {key!r}")
        if not isinstance(d[key], list):
            raise InputError(f"{path}: key {key!r} must be a list, got {type(d[key]).__name__}")
    n = len(d["ttfts"])
    for key in _VLLM_KEYS + ("errors", "generated_texts"):
        if key in d and d[key] is not None and len(_list(d[key], path, f"key {key!r}")) != n:
            raise InputError(f"{path}: key {key!r} has {len(d[key])} entries but 'ttfts' has {n}")
    notes: list[str] = []
    errors = d.get("errors") or [""] * n
    failed = [i for i in range(n) if errors[i] or d["output_lens"][i] == 0]
    if failed:
        notes.append(f"{len(failed)} of {n} requests failed (non-empty 'errors' or output_len 0) and are excluded: "
                     f"indices {failed[:20]}{' ...' if len(failed) > 20 else ''}")
    texts = d.get("generated_texts")
    if texts is not None:
        empty_ok = [i for i in range(n) if not texts[i] and i not in failed]
        if empty_ok:
            notes.append(f"{len(empty_ok)} requests have empty generated text but no error and output_len >= 1 "
                         f"(e.g. an immediate end-of-sequence token); kept as successful")
    ok = [i for i in range(n) if i not in set(failed)]
    inp = np.array([_num(d["input_lens"][i], path, f"input_lens[{i}]", integer=True) for i in ok], dtype=np.int64)
    out = np.array([_num(d["output_lens"][i], path, f"output_lens[{i}]", integer=True) for i in ok], dtype=np.int64)
    ttft = np.array([_num(d["ttfts"][i], path, f"ttfts[{i}]") for i in ok], dtype=np.float64)
    itls = []
    for i in ok:
        gaps = d["itls"][i]
        if not isinstance(gaps, list):
            raise InputError(f"{path}: itls[{i}] must be a list of seconds, got {type(gaps).__name__}")
        itls.append(np.array([_num(g, path, f"itls[{i}][{j}]") for j, g in enumerate(gaps)], dtype=np.float64))
    mismatch = sum(1 for o, g in zip(out, itls, strict=True) if len(g) != o - 1)
    if mismatch:
        notes.append(f"{mismatch} requests have len(itls) != output_len - 1 (several tokens per streamed chunk)")
    e2e = ttft + np.array([g.sum() for g in itls], dtype=np.float64)
    notes.append("e2e_s = ttft + sum(itls) (vLLM's own latency field is not saved per request)")
    rate = _rate(d.get("request_rate"), path, "request_rate")
    seed = _optional(d.get("seed"), path, "seed", integer=True)
    if seed is None:
        notes.append("seed not recorded in the file; vLLM benchmark_serving's --seed defaults to 0")
    send = None
    for key in ("send_times", "arrival_s"):
        if key in d:
            vals = d[key]
            if not isinstance(vals, list) or len(vals) != n:
                raise InputError(f"{path}: key {key!r} must be a list with {n} entries")
            raw = np.array([_num(v, path, f"{key}[{i}]") for i, v in enumerate(vals)], dtype=np.float64)
            send = (raw - raw.min())[ok] if n else raw
            notes.append(f"send times from key {key!r}, made relative to the first")
            break
    if send is None:
        notes.append("no send times in the file (vLLM's layout has none); use regenerate_poisson_arrivals("
                     "num_prompts, request_rate, seed) to replay vLLM's arrival draw")
    burst = d.get("burstiness")
    if burst not in (None, 1.0, 1):
        notes.append(f"burstiness={burst}: arrivals are gamma, not Poisson")
    dur = _optional(d.get("duration"), path, "duration")
    return ServingLog("vllm", str(path), inp, out, ttft, tuple(itls), e2e, send, rate,
                      int(seed) if seed is not None else None,
                      float(dur) if dur is not None else None, tuple(notes))


# -------------------------------------------------------------------------------------------- GuideLLM
def _guidellm_request(r: Any, path: Path, where: str) -> tuple[int, int, float, float, float, float | None]:
    """-> (prompt_tokens, output_tokens, ttft_s, itl_mean_s, e2e_s, start_time_s)."""
    if not isinstance(r, dict):
        raise InputError(f"{path}: {where} is not an object")
    timings = (r.get("info") or {}).get("timings") if isinstance(r.get("info"), dict) else None
    pt, ot = r.get("prompt_tokens"), r.get("output_tokens")
    if pt is None or ot is None:
        raise InputError(f"{path}: {where} is not a GuideLLM request: missing key "
                         f"{'prompt_tokens' if pt is None else 'output_tokens'!r}")
    pt = int(_num(pt, path, f"{where}.prompt_tokens", integer=True))
    ot = int(_num(ot, path, f"{where}.output_tokens", integer=True))
    if timings is not None and not isinstance(timings, dict):
        raise InputError(f"{path}: {where}.info.timings must be an object, got {type(timings).__name__}")
    if timings:  # GuideLLM >= 0.4: info.timings.{request_start, first_iteration, last_iteration, request_end}
        start, first = timings.get("request_start"), timings.get("first_iteration")
        last, end = timings.get("last_iteration"), timings.get("request_end")
    else:        # GuideLLM 0.2/0.3: start_time, first_token_time, last_token_time, end_time
        start, first = r.get("start_time"), r.get("first_token_time")
        last, end = r.get("last_token_time"), r.get("end_time")
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
    # computed fields only (ms), e.g. a trimmed export
    for key in ("time_to_first_token_ms", "inter_token_latency_ms", "request_latency"):
        if r.get(key) is None:
            raise InputError(f"{path}: {where} has neither timestamps nor {key!r}")
    ttft = _num(r["time_to_first_token_ms"], path, f"{where}.time_to_first_token_ms") / 1e3
    itl = _num(r["inter_token_latency_ms"], path, f"{where}.inter_token_latency_ms") / 1e3
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
    rows = [_guidellm_request(r, path, f"benchmarks[{bi}].requests.successful[{i}]") for i, r in enumerate(succ)]
    inp = np.array([r[0] for r in rows], dtype=np.int64)
    out = np.array([r[1] for r in rows], dtype=np.int64)
    ttft = np.array([r[2] for r in rows], dtype=np.float64)
    itl = tuple(np.full(max(r[1] - 1, 0), r[3], dtype=np.float64) for r in rows)
    e2e = np.array([r[4] for r in rows], dtype=np.float64)
    starts = [r[5] for r in rows]
    send = None
    if rows and None not in starts:
        st = np.array(starts, dtype=np.float64)
        send = st - st.min()
        notes.append("send_s = request start_time relative to the earliest request of this benchmark")
    args = b.get("args")
    if not isinstance(args, dict):
        args = {}
    strat = args.get("strategy")
    if not isinstance(strat, dict):
        strat = {}
    rate = None
    stype = strat.get("type_") or strat.get("type")
    if strat.get("rate") is not None:
        rate = _rate(strat["rate"], path, f"benchmarks[{bi}].args.strategy.rate")
    elif stype == "throughput":
        rate = math.inf
    if stype:
        notes.append(f"strategy {stype}" + (f", streams/concurrency {strat.get('streams')}" if strat.get("streams")
                                            else ""))
    seed = _optional(strat.get("random_seed"), path, f"benchmarks[{bi}].args.strategy.random_seed", integer=True)
    dur = None
    if b.get("start_time") is not None and b.get("end_time") is not None:
        dur = _num(b["end_time"], path, f"benchmarks[{bi}].end_time") - _num(b["start_time"], path,
                                                                              f"benchmarks[{bi}].start_time")
    return ServingLog("guidellm", str(path), inp, out, ttft, itl, e2e, send, rate,
                      int(seed) if seed is not None else None, dur, tuple(notes))


def read_guidellm(path: Path | str, index: int = 0) -> ServingLog:
    """Read benchmark `index` of a GuideLLM JSON (schema of GuideLLM 0.2/0.3 `GenerativeBenchmarksReport`;
    0.4+ `info.timings` requests are also accepted). A note says how many benchmarks the file holds."""
    logs = read_guidellm_all(path)
    if not -len(logs) <= index < len(logs):
        raise InputError(f"{path}: benchmark index {index} out of range; the file holds {len(logs)}")
    lg = logs[index]
    if len(logs) > 1:
        object.__setattr__(lg, "notes", lg.notes + (f"file holds {len(logs)} benchmarks; read #{index}",))
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
    inp = np.array([_num(r["number_input_tokens"], path, "number_input_tokens", integer=True) for r in keep],
                   dtype=np.int64)
    out = np.array([_num(r["number_output_tokens"], path, "number_output_tokens", integer=True) for r in keep],
                   dtype=np.int64)
    ttft = np.array([_num(r["ttft_s"], path, "ttft_s") for r in keep], dtype=np.float64)
    e2e = np.array([_num(r["end_to_end_latency_s"], path, "end_to_end_latency_s") for r in keep], dtype=np.float64)
    bad = [i for i in range(len(keep)) if e2e[i] < ttft[i]]
    if bad:
        raise InputError(f"{path}: end_to_end_latency_s < ttft_s in kept entries {bad[:10]}")
    itl = tuple(np.full(max(int(o) - 1, 0), (e - t) / (o - 1) if o > 1 else 0.0, dtype=np.float64)
                for o, e, t in zip(out, e2e, ttft, strict=True))
    return ServingLog("llmperf", str(path), inp, out, ttft, itl, e2e, None, None, None, None, tuple(notes))


# ------------------------------------------------------------------------------------------------ dispatch
_READERS = {"vllm": read_vllm_benchmark, "guidellm": read_guidellm, "llmperf": read_llmperf}


def read_log(path: Path | str, format: str = "auto") -> ServingLog:
    """Read a serving log; format 'auto' detects vLLM (key 'ttfts'), GuideLLM ('benchmarks'), LLMPerf (a list)."""
    path = Path(path)
    if format != "auto":
        if format not in _READERS:
            raise InputError(f"{path}: unknown log format {format!r}; known: {['auto', *_READERS]}")
        return _READERS[format](path)
    d = _load_json(path)
    if isinstance(d, list):
        return read_llmperf(path)
    if isinstance(d, dict) and "benchmarks" in d:
        return read_guidellm(path)
    if isinstance(d, dict) and ("ttfts" in d or "itls" in d or "input_lens" in d):
        return read_vllm_benchmark(path)
    raise InputError(f"{path}: cannot detect the log format: expected a vLLM benchmark_serving JSON (key 'ttfts'), "
                     f"a GuideLLM JSON (key 'benchmarks') or an LLMPerf individual_responses list")
