"""Behaviour serving papers report: continuous beats static batching (Orca), chunked prefill lowers tail ITL
(Sarathi-Serve), SJF lowers mean latency on heavy-tailed lengths, latency knee near capacity, more replicas
or higher TP move the knee."""

from __future__ import annotations

from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate


def _cfg(sched: dict, rate: float, n: int, inp: dict, out: dict, rep: dict | None = None,
         arrival: dict | None = None) -> SimConfig:
    r = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": sched, **(rep or {})}
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": arrival or {"kind": "poisson", "rate_per_s": rate},
                     "input": inp, "output": out, "num_requests": n},
        "replicas": [r], "seed": 11})


UNI_IN = {"kind": "uniform", "low": 100, "high": 1000}
UNI_OUT = {"kind": "uniform", "low": 10, "high": 500}


def test_continuous_beats_static_batching_throughput() -> None:
    # offline batch of 600 requests (Orca, Yu et al. OSDI 2022, fig. 10-style comparison)
    off = {"kind": "offline"}
    st = simulate(_cfg({"kind": "static", "max_num_seqs": 64}, 0, 600, UNI_IN, UNI_OUT, arrival=off))
    cb = simulate(_cfg({"kind": "orca", "max_num_seqs": 64}, 0, 600, UNI_IN, UNI_OUT, arrival=off))
    assert cb.summary["output_tokens_per_s"] > 1.3 * st.summary["output_tokens_per_s"]


def test_chunked_prefill_lowers_tail_itl_under_load() -> None:
    # long prompts interrupt decodes under prefill-prioritising vLLM; Sarathi-Serve (Agrawal et al. OSDI 2024)
    inp = {"kind": "uniform", "low": 2000, "high": 6000}
    out = {"kind": "uniform", "low": 100, "high": 300}
    v = simulate(_cfg({"kind": "vllm"}, 3.0, 400, inp, out))
    s = simulate(_cfg({"kind": "sarathi", "chunk_size": 512}, 3.0, 400, inp, out))
    assert s.summary["itl_s"]["p99"] < 0.5 * v.summary["itl_s"]["p99"]


def test_sjf_lowers_mean_latency_on_heavy_tailed_lengths() -> None:
    out = {"kind": "lognormal", "median": 100, "sigma": 1.2, "high": 3000}
    inp = {"kind": "fixed", "tokens": 200}
    fcfs = simulate(_cfg({"kind": "vllm", "max_num_seqs": 16}, 9.0, 1500, inp, out))
    sjf = simulate(_cfg({"kind": "sjf", "max_num_seqs": 16, "predictor_sigma": 0.3}, 9.0, 1500, inp, out))
    assert sjf.summary["e2e_s"]["mean"] < 0.8 * fcfs.summary["e2e_s"]["mean"]


def _p90_ttft(rate: float, rep: dict | None = None) -> float:
    inp = {"kind": "uniform", "low": 500, "high": 1500}
    out = {"kind": "uniform", "low": 100, "high": 300}
    r = simulate(_cfg({"kind": "vllm"}, rate, 1200, inp, out, rep))
    return r.summary["ttft_s"]["p90"]


def test_latency_knee_and_scaling_moves_it() -> None:
    low, mid, high = (_p90_ttft(x) for x in (4.0, 12.0, 24.0))
    assert low < mid < high
    assert high > 10 * low  # sharp rise near capacity
    assert _p90_ttft(24.0, {"count": 2}) < 0.2 * high  # two replicas: the knee moves right
    assert _p90_ttft(24.0, {"tp": 2}) < 0.5 * high  # higher TP as well
