"""The memory planner against what vLLM really reserved: the memory-profiling lines of the vLLM 0.8.3 server logs
in ../shared/data (Llama-3.3-70B, TP4 x PP2 on A100-SXM4-40GB, gpu_memory_utilization 0.9, chunked prefill with a
2,048-token budget, max_num_seqs 256). Figures documented in docs/validation-e2e.md ("Memory against vLLM's own
profile")."""

from __future__ import annotations

from pathlib import Path

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.loader import load_model
from roofsim.model.memory import plan_memory
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.validation.engine_logs import read_vllm_memory_profile

RUNS = "serving/vllm_llm-k8s/results_serving_meta-llama-Llama-3.3-70B-Instruct"


def _plan() -> object:
    # the server's settings, from the log's own lines: TP 4, PP 2, utilisation 0.9, "Chunked prefill is enabled
    # with max_num_batched_tokens=2048", max_num_seqs None = vLLM V0's 256
    return plan_memory(load_model("meta-llama/Llama-3.3-70B-Instruct"), load_hardware("a100-sxm-40gb"), QuantSpec(),
                       ParallelSpec(tp=4, pp=2), 0.9, max_batched_tokens=2048, max_seqs=256)


@pytest.mark.parametrize("log", ["lws-run-1.log.txt", "lws-run-2.log.txt"])
def test_memory_plan_against_the_vllm_profile(shared_data: Path, log: str) -> None:
    prof = read_vllm_memory_profile(shared_data / RUNS / log)
    assert prof.version == "0.8.3" and prof.gpu_memory_utilization == 0.9
    assert prof.total_bytes == pytest.approx(39.49 * 2**30)
    plan = _plan()
    # weights per GPU: 16.43 GiB planned, 16.46 GiB loaded (-0.2 %)
    for w in prof.workers:
        assert plan.weights_bytes == pytest.approx(w.weights_bytes, rel=0.005)
    # KV tokens per replica: vLLM holds 3.12 x 131,072 = 408,945 (its smallest worker: the last pipeline stage,
    # 1.27 GiB of activation peak and up to 2.24 GiB non-torch memory); the plan 489,072: +19.6 %
    assert prof.kv_tokens == pytest.approx(408_944.64)
    assert plan.max_kv_tokens / prof.kv_tokens - 1 == pytest.approx(0.196, abs=0.01)
    # a typical worker (first stage, ~0.9-1.1 GiB non-torch): 17.76-17.94 GiB of KV; the plan 18.66 GiB: +4-5 %
    typical = [w for w in prof.workers if w.activation_bytes < 0.5 * 2**30 and w.non_torch_bytes < 1.5 * 2**30]
    assert typical
    for w in typical:
        assert 0.0 < plan.kv_capacity_bytes / w.kv_bytes - 1 < 0.06


def test_a_log_without_memory_lines_is_refused_by_name(tmp_path: Path) -> None:
    p = tmp_path / "server.log"
    p.write_text("INFO starting\nINFO ready\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"server\.log: no vLLM memory-profiling lines"):
        read_vllm_memory_profile(p)
