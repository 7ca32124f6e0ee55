"""`validate benchmarks` on disaggregated rows: the row's pools become prefill and decode replica groups, and the
row is simulated and scored like any other."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from roofsim.validation.bench_table import BenchRow
from roofsim.validation.converters import convert_aiconfigurator_silicon
from roofsim.validation.e2e import e2e_error_stats, predict_row, row_config

ROW = BenchRow(model="meta-llama/Llama-3.1-8B-Instruct", hardware="h100-sxm", num_gpus=3, tp=2, pp=1, ep=1,
               weight_dtype="bf16", kv_dtype="bf16", framework="vllm", mode="closed_loop", isl=1024, osl=64,
               concurrency=4, ttft_ms=60.0, tpot_ms=8.0, prefill_replicas=1, prefill_tp=1, prefill_pp=1,
               prefill_ep=1, decode_replicas=1, decode_tp=2, decode_pp=1, decode_ep=1)


def test_row_config_builds_the_two_pools() -> None:
    cfg, notes = row_config(ROW)
    assert cfg.disaggregated
    assert [(g.role, g.count, g.tp) for g in cfg.replicas] == [("prefill", 1, 1), ("decode", 1, 2)]
    assert cfg.replicas[0].scheduler == cfg.replicas[1].scheduler  # the engine's settings on both pools
    assert "disaggregated: 1 prefill x tp1 pp1 ep1 (max_num_seqs" in notes[-1]
    assert "+ 1 decode x tp2 pp1 ep1 (max_num_seqs" in notes[-1]
    colocated, _ = row_config(replace(ROW, num_gpus=2, prefill_replicas=None, prefill_tp=None, prefill_pp=None,
                                      prefill_ep=None, decode_replicas=None, decode_tp=None, decode_pp=None,
                                      decode_ep=None))
    assert not colocated.disaggregated and len(colocated.replicas) == 1


def test_a_disaggregated_row_is_predicted_and_scored() -> None:
    p = predict_row(0, ROW)
    assert p.problem is None
    # 4 clients x 12 requests of 1024 + 64 tokens: a 1024-token prefill on one H100 plus a 134 MB handover at
    # 50 GB/s (2.7 ms) is tens of ms; decode steps of 4 sequences on tp2 a few ms
    assert 10.0 < p.predicted["ttft_ms"] < 200.0 and 2.0 < p.predicted["tpot_ms"] < 20.0
    stats = e2e_error_stats([p])["all"]
    assert stats["ttft_ms"]["n"] == 1 and stats["tpot_ms"]["n"] == 1


def test_pool_limits_set_each_pools_scheduler() -> None:
    """A pool's own limits (an attention-DP prefill worker: 16 ranks of 1 prompt, each up to isl + 1500 tokens)
    go to that pool's scheduler only; a pool without limits keeps the engine's settings."""
    row = replace(ROW, prefill_max_batch_size=16, prefill_max_num_tokens=16 * 2524)
    cfg, notes = row_config(row)
    base, _ = row_config(ROW)
    pre, dec = cfg.replicas
    assert (pre.scheduler.max_num_seqs, pre.scheduler.max_batched_tokens) == (16, 16 * 2524)
    assert dec.scheduler == base.replicas[1].scheduler
    assert f"1 prefill x tp1 pp1 ep1 (max_num_seqs 16, {16 * 2524} tokens)" in notes[-1]
    cfg, notes = row_config(replace(ROW, decode_max_batch_size=3, prefill_max_num_tokens=100))
    # a token limit under the prompt is raised to the prompt (a whole prompt must fit one iteration), and said so
    assert cfg.replicas[1].scheduler.max_num_seqs == 3 and cfg.replicas[0].scheduler.max_batched_tokens == 1024
    assert any("prefill_max_num_tokens=100 is below the prompt's 1024 tokens" in n for n in notes)


_HDR = ("id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,"
        "moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,prefill_batch_size,"
        "prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,prefill_moe_tp_size,"
        "prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,decode_pp_size,"
        "decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,silicon_tpot_ms")
_HEAD = "trtllm,0.8.1.post3,deepseek-ai/DeepSeek-V3,h100_sxm,fp8,disagg,1024,1024,fp8,fp8,,,,,,,"


def test_silicon_disagg_rows_convert_with_pool_limits_or_say_why_not(tmp_path: Path) -> None:
    """The four disagg cases of the silicon sample: a whole layout (an attention-DP prefill worker), a blank-layout
    row repeating it (its last digit differs, as the dumps do), a blank-layout row of its own, and a row without the
    client concurrency."""
    src = tmp_path / "s.csv"
    src.write_text("\n".join([
        _HDR,
        f"full,silicon_concurrency=6,{_HEAD}1,1,1,1,16,1,16,2,3,16,1,1,1,16,12345.082130733257,14.0142279275463",
        f"same,silicon_concurrency=6,{_HEAD},,16,1,1,1,16,,,16,1,1,1,16,12345.082130733255,14.0142279275463",
        f"other,silicon_concurrency=6,{_HEAD},,16,1,1,1,16,,,16,1,1,1,16,6909.486535,7.659669",
        f"noconc,x,{_HEAD}1,1,1,1,16,1,16,2,3,16,1,1,1,16,100.0,10.0"]) + "\n")
    t = convert_aiconfigurator_silicon(src)
    (row,) = t.rows
    assert (row.prefill_replicas, row.prefill_tp, row.prefill_attn_dp, row.prefill_ep, row.decode_replicas,
            row.decode_tp, row.num_gpus, row.concurrency) == (1, 1, 16, 16, 3, 16, 64, 6)
    # 16 attention-DP ranks of one prompt each, every rank's isl + 1500 tokens; decode workers of 2 requests
    assert (row.prefill_max_batch_size, row.prefill_max_num_tokens, row.decode_max_batch_size,
            row.decode_max_num_tokens) == (16, 16 * 2524, 2, None)
    assert row.e2e_ms == pytest.approx(12345.082130733257 + 1023 * 14.0142279275463)
    assert len(t.problems) == 3
    assert "line 3" in t.problems[0] and "the same measurement" in t.problems[0] and "as row full" in t.problems[0]
    assert "line 4" in t.problems[1] and "no rule gives them" in t.problems[1]
    assert "line 5" in t.problems[2] and "no silicon_concurrency" in t.problems[2]
    cfg, _ = row_config(row)
    pre, dec = cfg.replicas
    assert (pre.scheduler.max_num_seqs, pre.scheduler.max_batched_tokens, dec.scheduler.max_num_seqs) == (
        16, 16 * 2524, 2)
    # the prefill worker is one replica of 16 attention ranks of tp 1 (no attention all-reduce), experts on all 16
    assert (pre.attn_dp, pre.tp, pre.ep, dec.attn_dp, dec.tp) == (16, 1, 16, 1, 16)
