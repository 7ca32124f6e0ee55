"""Tests for serving-log readers (vLLM on real shared data; GuideLLM/LLMPerf on small schema fixtures)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from roofsim.hardware_specs.errors import InputError
from roofsim.validation.logs import (
    read_guidellm,
    read_llmperf,
    read_log,
    read_logs,
    read_vllm_benchmark,
    regenerate_poisson_arrivals,
)

VLLM = "serving/vllm_llm-k8s/results_serving_meta-llama-Llama-3.3-70B-Instruct/01_tp8_pp1"


def test_vllm_real_file(shared_data: Path) -> None:
    p = shared_data / VLLM / "serving_meta-llama-Llama-3.3-70B-Instruct_tp8_pp1_sharegpt_qps_04.json"
    raw = json.loads(p.read_text())
    lg = read_log(p)
    assert lg.source_format == "vllm" and lg.num_requests == 200
    assert lg.request_rate_per_s == 4.0 and lg.send_s is None and lg.seed is None
    assert lg.duration_s == pytest.approx(raw["duration"])
    i = 5
    assert lg.ttft_s[i] == raw["ttfts"][i] and lg.output_tokens[i] == raw["output_lens"][i]
    assert lg.e2e_s[i] == pytest.approx(raw["ttfts"][i] + sum(raw["itls"][i]))
    assert len(lg.itl_s[i]) == len(raw["itls"][i]) == 739  # 741 tokens: some chunks carried 2 tokens
    assert any("len(itls) != output_len - 1" in n for n in lg.notes)
    # reproduces vLLM's own summary: mean TTFT over successful requests
    assert lg.ttft_s.mean() * 1e3 == pytest.approx(raw["mean_ttft_ms"])
    assert any("empty generated text" in n for n in lg.notes)


def test_vllm_inf_rate(shared_data: Path) -> None:
    p = shared_data / VLLM / "serving_meta-llama-Llama-3.3-70B-Instruct_tp8_pp1_sharegpt_qps_inf.json"
    assert math.isinf(read_vllm_benchmark(p).request_rate_per_s)


def _vllm_doc(**extra) -> dict:
    d = {"input_lens": [10, 20, 30], "output_lens": [3, 0, 2], "ttfts": [0.1, 0.0, 0.2],
         "itls": [[0.01, 0.02], [], [0.05]], "errors": ["", "timeout", ""], "request_rate": "inf",
         "duration": 1.5}
    d.update(extra)
    return d


def test_vllm_failed_requests_and_send_times(tmp_path: Path) -> None:
    p = tmp_path / "v.json"
    p.write_text(json.dumps(_vllm_doc(send_times=[100.0, 100.5, 101.0])))
    lg = read_vllm_benchmark(p)
    assert lg.num_requests == 2 and list(lg.input_tokens) == [10, 30]
    assert np.allclose(lg.e2e_s, [0.13, 0.25]) and np.allclose(lg.send_s, [0.0, 1.0])
    assert any("1 of 3 requests failed" in n and "[1]" in n for n in lg.notes)
    assert math.isinf(lg.request_rate_per_s)


def test_vllm_wrong_keys(tmp_path: Path) -> None:
    p = tmp_path / "v.json"
    d = _vllm_doc()
    d["ttft"] = d.pop("ttfts")
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"is not a vLLM benchmark_serving JSON: missing key 'ttfts'"):
        read_vllm_benchmark(p)
    p.write_text(json.dumps(_vllm_doc(itls=[[0.01], [], "x"])))
    with pytest.raises(InputError, match=r"itls\[2\] must be a list"):
        read_vllm_benchmark(p)
    p.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_log(p)


def test_poisson_arrivals() -> None:
    a = regenerate_poisson_arrivals(200, 4.0, 0)
    b = regenerate_poisson_arrivals(200, 4.0, 0)
    assert np.array_equal(a, b) and a[0] == 0.0 and len(a) == 200
    gap = np.diff(a).mean()
    assert abs(gap - 0.25) < 0.025
    # the exact draw sequence of np.random.seed(0); np.random.gamma(1, 0.25) per request
    rs = np.random.RandomState(0)
    assert a[1] == pytest.approx(rs.gamma(1.0, 0.25)) and a[2] - a[1] == pytest.approx(rs.gamma(1.0, 0.25))
    assert not np.array_equal(a, regenerate_poisson_arrivals(200, 4.0, 1))
    assert np.all(regenerate_poisson_arrivals(5, math.inf, 0) == 0)


# GuideLLM 0.2.x GenerativeBenchmarksReport layout (guidellm/benchmark/benchmark.py: GenerativeTextResponseStats
# with start_time, end_time, first_token_time, last_token_time, prompt_tokens, output_tokens + computed fields).
def _guidellm_req(start: float, ttft: float, itl: float, n_out: int) -> dict:
    first = start + ttft
    last = first + itl * (n_out - 1)
    return {"type_": "generative_text_response", "request_id": f"r{start}", "request_type": "text_completions",
            "prompt": "...", "output": "...", "prompt_tokens": 128, "output_tokens": n_out,
            "start_time": start, "end_time": last + 0.001, "first_token_time": first, "last_token_time": last,
            "request_latency": last + 0.001 - start, "time_to_first_token_ms": ttft * 1e3,
            "time_per_output_token_ms": (last - start) / n_out * 1e3, "inter_token_latency_ms": itl * 1e3}


GUIDELLM = {"benchmarks": [{
    "type_": "generative_benchmark", "id_": "b0", "start_time": 1000.0, "end_time": 1010.0,
    "args": {"strategy": {"type_": "poisson", "rate": 2.0, "random_seed": 42}},
    "requests": {"successful": [_guidellm_req(1000.0, 0.2, 0.02, 11), _guidellm_req(1000.6, 0.3, 0.03, 5)],
                 "errored": [], "incomplete": [{"request_id": "x"}]}}]}


def test_guidellm(tmp_path: Path) -> None:
    p = tmp_path / "benchmarks.json"
    p.write_text(json.dumps(GUIDELLM))
    lg = read_log(p)
    assert lg.source_format == "guidellm" and lg.num_requests == 2
    assert np.allclose(lg.ttft_s, [0.2, 0.3]) and np.allclose(lg.send_s, [0.0, 0.6])
    assert len(lg.itl_s[0]) == 10 and lg.itl_s[0][0] == pytest.approx(0.02)
    assert lg.e2e_s[1] == pytest.approx(0.3 + 0.03 * 4 + 0.001)
    assert lg.request_rate_per_s == 2.0 and lg.seed == 42 and lg.duration_s == 10.0
    assert any("1 incomplete" in n for n in lg.notes) and any("includes the first token" in n for n in lg.notes)
    bad = {"benchmarks": [{"requests": {"successful": [{"output_tokens": 3}]}}]}
    p.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="missing key 'prompt_tokens'"):
        read_guidellm(p)


# LLMPerf individual_responses.json (ray-project/llmperf token_benchmark_ray.py, keys from common_metrics.py).
LLMPERF = [
    {"error_code": None, "error_msg": "", "inter_token_latency_s": 0.05, "ttft_s": 0.2,
     "end_to_end_latency_s": 1.2, "request_output_throughput_token_per_s": 20.0, "number_total_tokens": 571,
     "number_output_tokens": 21, "number_input_tokens": 550},
    {"error_code": 500, "error_msg": "Internal Server Error", "inter_token_latency_s": 0, "ttft_s": 0,
     "end_to_end_latency_s": 0, "request_output_throughput_token_per_s": 0, "number_total_tokens": 550,
     "number_output_tokens": 0, "number_input_tokens": 550},
]


def test_llmperf(tmp_path: Path) -> None:
    p = tmp_path / "x_individual_responses.json"
    p.write_text(json.dumps(LLMPERF))
    lg = read_log(p)
    assert lg.source_format == "llmperf" and lg.num_requests == 1
    assert lg.itl_s[0].shape == (20,) and lg.itl_s[0][0] == pytest.approx(0.05)
    assert any("1 of 2 requests have an error_code" in n for n in lg.notes)
    p.write_text(json.dumps([{"ttft_s": 0.1}]))
    with pytest.raises(InputError, match="missing key 'end_to_end_latency_s'"):
        read_llmperf(p)


def test_read_log_unknown(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="cannot detect the log format"):
        read_log(p)


def test_every_shared_vllm_log_reads_as_before(shared_data: Path) -> None:
    """All vllm_llm-k8s logs: one benchmark each, vLLM's own mean TTFT / TPOT reproduced, no unknown keys."""
    files = sorted((shared_data / "serving" / "vllm_llm-k8s").rglob("serving_*.json"))
    assert len(files) == 24
    for p in files:
        raw = json.loads(p.read_text())
        (lg,) = read_logs(p)
        assert lg.source_format == "vllm" and lg.num_requests == raw["completed"] == 200 and lg.label == ""
        assert lg.ttft_s.mean() * 1e3 == pytest.approx(raw["mean_ttft_ms"])
        out = lg.output_tokens
        tpot = ((lg.e2e_s - lg.ttft_s)[out > 1] / (out[out > 1] - 1)).mean()
        assert tpot * 1e3 == pytest.approx(raw["mean_tpot_ms"], rel=1e-6), p.name  # vLLM: latency - ttft
        assert not any("keys not read" in n for n in lg.notes), p.name
