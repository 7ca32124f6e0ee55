"""Tests for the benchmark table reader/writer and the converters (on the real shared data)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from roofsim.hardware_specs.errors import InputError
from roofsim.validation.bench_table import COLUMNS, BenchRow, read_bench_table, write_bench_table
from roofsim.validation.converters import convert_aiconfigurator_silicon, convert_argonne, convert_splitwise

ROW = BenchRow(model="meta-llama/Llama-3.1-8B-Instruct", hardware="h100-sxm", num_gpus=1, tp=1, pp=1, ep=1,
               weight_dtype="bf16", kv_dtype="bf16", framework="vllm", mode="poisson", isl=1024, osl=128,
               qps=4.0, num_requests=200, ttft_ms=50.0, tpot_ms=10.0)


def test_roundtrip(tmp_path: Path) -> None:
    p = write_bench_table([ROW], tmp_path / "b.csv")
    t = read_bench_table(p)
    assert t.rows == (ROW,) and t.problems == ()


def test_missing_column_and_bad_cells(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    write_bench_table([ROW], p)
    text = p.read_text().splitlines()
    p.write_text("\n".join([text[0].replace("qps,", "")] + [text[1]]) + "\n")
    with pytest.raises(InputError, match=r"missing required column\(s\) \['qps'\]"):
        read_bench_table(p)
    hdr = ",".join((*COLUMNS, "notes"))
    good = text[1]
    bad_num = good.replace(",50.0,", ",fast,")
    no_qps = good.replace(",4.0,200,", ",,200,")
    bad_mode = good.replace(",poisson,", ",burst,")
    p.write_text("\n".join([hdr, good, bad_num, no_qps, bad_mode]) + "\n")
    t = read_bench_table(p)
    assert len(t.rows) == 1 and len(t.problems) == 3
    assert "line 3: column 'ttft_ms'='fast' is not a number" in t.problems[0]
    assert "line 4: mode 'poisson' needs column 'qps'" in t.problems[1]
    assert "line 5: column 'mode'='burst'" in t.problems[2]


def test_convert_aiconfigurator_silicon(shared_data: Path, tmp_path: Path) -> None:
    t = convert_aiconfigurator_silicon(shared_data / "serving/aiconfigurator_silicon/silicon_sample_h100.csv")
    # 917 rows = 810 agg + 107 disagg; 8 disagg rows record both pools and the client concurrency; of the 92
    # without worker counts, 13 repeat one of those 8 measurements (same TTFT/TPOT) and say which
    assert len(t.rows) == 818 and len(t.problems) == 99
    assert sum("no rule gives them" in p for p in t.problems) == 79
    assert sum("the same measurement" in p for p in t.problems) == 13
    assert sum("as row dsr1_h100_trtllm_fp8_disagg_1024x1024_c30_cfg494," in p for p in t.problems) == 2
    assert sum("no silicon_concurrency" in p for p in t.problems) == 7
    llama = [r for r in t.rows if r.model == "meta-llama/Llama-3.1-8B-Instruct"]
    assert len(llama) == 177 and all(r.mode == "closed_loop" and r.concurrency for r in llama)
    # AIConfigurator's generator limits of an agg deployment (rule_plugin/benchmark/*.rule): max_batch_size =
    # batch_size; TRT-LLM/vLLM max_num_tokens = batch_size + isl + 1500, SGLang max_prefill_tokens = isl + 1500
    assert all(r.max_batch_size == r.concurrency and r.max_num_tokens == r.concurrency + r.isl + 1500
               for r in llama)
    sg = [r for r in t.rows if r.framework == "sglang" and not r.disaggregated]
    assert sg and all(r.max_num_tokens == r.isl + 1500 for r in sg)
    assert all(r.max_batch_size is None and r.max_num_tokens is None for r in t.rows if r.disaggregated)
    assert {r.weight_dtype for r in t.rows} == {"bf16", "fp8", "fp4"}
    # the KV dtype is not a column: fp8 beside fp8 GEMMs on TRT-LLM (AIConfigurator's fp8 quant configs set
    # kvcache_quant_mode fp8), bf16 otherwise; 180 Qwen3-32B + 127 Qwen3-235B + 5 gpt-oss + 8 DeepSeek-V3 rows
    kv8 = [r for r in t.rows if r.kv_dtype == "fp8"]
    assert len(kv8) == 320 and {(r.framework, r.weight_dtype) for r in kv8} == {("trtllm", "fp8")}
    assert all(r.kv_dtype == "bf16" for r in t.rows if r.framework != "trtllm" or r.weight_dtype != "fp8")
    assert kv8[0].notes.startswith("kv_dtype not recorded: fp8 with fp8 GEMMs")
    dis = [r for r in t.rows if r.disaggregated]
    assert len(dis) == 8 and {r.model for r in dis} == {"deepseek-ai/DeepSeek-V3"}
    # dsr1_h100_trtllm_fp8_disagg_8192x1024_c6_cfg494: 1 prefill worker (tp1 x attention-dp16, ep16),
    # 3 decode workers (tp16, ep16), silicon_concurrency=6
    c6 = next(r for r in dis if r.isl == 8192 and r.concurrency == 6)
    assert (c6.prefill_replicas, c6.prefill_tp, c6.prefill_attn_dp, c6.prefill_ep, c6.decode_replicas, c6.decode_tp,
            c6.decode_attn_dp, c6.decode_ep, c6.num_gpus, c6.tp, c6.ep) == (1, 1, 16, 16, 3, 16, None, 16, 64, 16, 16)
    assert "prefill attention_dp_size=16 x tp 1: 16 attention ranks" in c6.notes
    # the 15 MiniMax-M2.5 rows of 4 attention-DP ranks x tp 4 (ep 16): batch_size is one rank's, the client runs
    # silicon_concurrency = 4 x batch_size
    adp = [r for r in t.rows if r.attn_dp]
    assert len(adp) == 15 and {(r.model, r.tp, r.attn_dp, r.ep, r.num_gpus) for r in adp} == {
        ("MiniMaxAI/MiniMax-M2.5", 4, 4, 16, 16)}
    assert all(r.concurrency == r.max_batch_size and r.concurrency % 4 == 0 for r in adp)
    # the 16 attention-DP ranks' batches of 1 as one prefill batch of 16, each rank's isl + 1500 tokens; decode
    # max_batch_size 2 per worker (2 x 3 workers = the 6 clients)
    assert (c6.prefill_max_batch_size, c6.prefill_max_num_tokens, c6.decode_max_batch_size,
            c6.decode_max_num_tokens) == (16, 16 * (8192 + 1500), 2, None)
    assert c6.e2e_ms == pytest.approx(13693.258112009305 + 1023 * 14.657867551218844)
    back = read_bench_table(write_bench_table(t.rows, tmp_path / "s.csv"))
    assert back.rows == t.rows and back.problems == ()


def test_disaggregated_rows_need_every_pool_column_and_consistent_gpus(tmp_path: Path) -> None:
    dis = replace(ROW, num_gpus=6, tp=2, prefill_replicas=2, prefill_tp=1, prefill_pp=1, prefill_ep=1,
                  decode_replicas=2, decode_tp=2, decode_pp=1, decode_ep=1)
    p = write_bench_table([ROW, dis], tmp_path / "d.csv")
    assert read_bench_table(p).rows == (ROW, dis)
    assert "prefill_replicas" not in write_bench_table([ROW], tmp_path / "c.csv").read_text()  # colocated only
    lines = p.read_text().splitlines()
    bad_gpus = lines[2].replace("meta-llama/Llama-3.1-8B-Instruct,h100-sxm,6,", "meta-llama/Llama-3.1-8B-Instruct,h100-sxm,5,")
    no_pool = lines[2][: lines[2].rindex(",")] + ","
    p.write_text("\n".join([lines[0], bad_gpus, no_pool]) + "\n")
    t = read_bench_table(p)
    assert t.rows == ()
    assert "num_gpus=5 differs from the pools' prefill_replicas*prefill_tp*prefill_pp" in t.problems[0]
    assert "needs every pool column; ['decode_ep'] blank" in t.problems[1]


def test_convert_splitwise(shared_data: Path, tmp_path: Path) -> None:
    t = convert_splitwise(shared_data / "serving/splitwise/perf_model.csv")
    assert len(t.rows) == 1260 and t.problems == ()
    r = t.rows[0]  # llama2-70b,a100-80gb,512,1,128,...,196.2532191537321,54.87951193752838,7168.98...,2
    assert (r.hardware, r.tp, r.isl, r.osl, r.concurrency) == ("a100-sxm-80gb", 2, 512, 128, 1)
    assert r.ttft_ms == pytest.approx(196.2532191537321) and r.tpot_ms == pytest.approx(54.87951193752838)
    assert sum("POWER-CAPPED" in x.notes for x in t.rows) == 420
    assert {x.hardware for x in t.rows if "POWER-CAPPED" in x.notes} == {"h100-sxm@490w"}
    # e2e_time off prompt_time + (token_size-1) x token_time by > 10 %: not scored (e.g. a100-80gb tp2 512/1024 b1:
    # 10,153 ms against 195 + 1023 x 59.6 ms)
    dropped = [x for x in t.rows if x.e2e_ms is None]
    assert len(dropped) == 267 and all(x.output_tokens_per_s is None and "e2e not scored" in x.notes for x in dropped)
    assert read_bench_table(write_bench_table(t.rows, tmp_path / "s.csv")).rows == t.rows
    # a row that times no phase is a problem naming the columns, not a crash
    lines = (shared_data / "serving/splitwise/perf_model.csv").read_text().splitlines()
    cols = lines[0].split(",")
    bad = lines[1].split(",")
    bad[cols.index("prompt_time")] = bad[cols.index("token_time")] = "0"
    (tmp_path / "bad.csv").write_text("\n".join([lines[0], ",".join(bad)]) + "\n")
    t = convert_splitwise(tmp_path / "bad.csv")
    assert not t.rows and len(t.problems) == 1 and "time no phase" in t.problems[0]


def test_convert_argonne(shared_data: Path, tmp_path: Path) -> None:
    t = convert_argonne(shared_data / "serving/argonne_llm_inference_bench/Plots/All_results.csv")
    assert len(t.rows) + len(t.problems) == 4772
    # A100 + H100 rows (878 + 908) less the 346 of models with no config of their architecture (ARGONNE_NO_CONFIG:
    # Qwen2-7B 239, DeciLM-7B 65, Qwen2-72B 40, Qwen1.5-7B 1, Aquila-7B 1); other accelerators are problems
    assert len(t.rows) == 878 + 908 - 346
    no_config = [p for p in t.problems if "no config.json of its architecture" in p]
    assert len(no_config) == 346
    assert all("has no roofsim hardware id" in p for p in t.problems if p not in no_config)
    a100 = next(r for r in t.rows if r.hardware == "a100-sxm-40gb" and r.framework != "llamacpp")
    assert a100.e2e_ms > 0 and a100.max_num_tokens is None and a100.output_tokens_per_s == pytest.approx(
        a100.concurrency * a100.osl / (a100.e2e_ms / 1e3))
    # llama-bench rows: one sequence, Batch Size = the prompt chunk (-b), GPUs = layer-split pipeline stages.
    # CSV row: Nvidia A100 GPU,2,llama.cpp,meta-llama/Llama-2-7b-hf,128,16,2.398466...,106.734884...
    lc = next(r for r in t.rows if r.framework == "llamacpp" and r.model == "meta-llama/Llama-2-7b-hf"
              and r.hardware == "a100-sxm-40gb" and r.num_gpus == 2 and r.isl == 128 and r.max_num_tokens == 16)
    assert (lc.concurrency, lc.num_requests, lc.tp, lc.pp) == (1, 1, 1, 2)
    assert lc.output_tokens_per_s == pytest.approx(128 / 2.398466, rel=1e-5) and "Throughput" not in lc.notes
    assert read_bench_table(write_bench_table(t.rows, tmp_path / "a.csv")).problems == ()
