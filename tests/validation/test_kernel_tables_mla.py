"""AIConfigurator MLA, MLA-BMM and quantize tables: the reader's mapping of every column (hand-checked rows on
synthetic parquet files of the collectors' schemas), refusal of unknown values by name, and the kernels predict
builds for them (DeepSeek-V3 MLA geometry, FLOPs and bytes computed by hand)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.cost import Calibration, gemm_quant_bytes, kernel_cost
from roofsim.validation.calibrate import engine_base
from roofsim.validation.kernel_tables import read_aiconfigurator_table
from roofsim.validation.predict import features, row_kernels, why_unpredictable

AIC = Path("kernels/aiconfigurator")


def _write(tmp_path: Path, rel: str, cols: dict) -> Path:
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), p)
    return p


def _mla_cols(op: str, n: int = 1, **over) -> dict:
    cols = {"framework": ["TRTLLM"] * n, "version": ["1.3.0rc20"] * n, "device": ["NVIDIA H100 80GB HBM3"] * n,
            "op_name": [op] * n, "kernel_source": ["default"] * n, "mla_dtype": ["bfloat16"] * n,
            "kv_cache_dtype": ["fp8"] * n, "num_heads": [16] * n, "batch_size": [4] * n, "isl": [1024] * n,
            "tp_size": [8] * n, "step": [0] * n, "latency": [0.25] * n}
    cols.update(over)
    return cols


def test_context_mla_row_and_kernels(tmp_path: Path) -> None:
    p = _write(tmp_path, "h100_sxm/mla/trtllm/1.3.0rc20/context_mla_perf.parquet", _mla_cols("mla_context"))
    t = read_aiconfigurator_table(p)
    assert t.problems == ()
    (r,) = t.rows
    assert (r.hardware, r.framework, r.op, r.dtype, r.kv_dtype) == ("h100-sxm", "trtllm", "mla_context", "bf16", "fp8")
    assert (r.batch, r.seq_len, r.ctx_len, r.num_heads, r.tp) == (4, 1024, 0, 16, 8)
    assert r.measured_s == pytest.approx(0.25e-3)
    rope, attn = row_kernels(r)
    assert (rope.name, attn.name) == ("rope", "attn_prefill")
    # TensorRT-LLM's context kernel: expanded heads, qk = 128 + 64, v = 128; causal pairs s(s+1)/2 per sequence
    pairs = 4 * 1024 * 1025 / 2
    assert attn.flops == pytest.approx(2 * pairs * 16 * (192 + 128))
    assert attn.kv_write_bytes == pytest.approx(4 * 1024 * 576 * 1.0)  # the fp8 latent + RoPE key cache write
    assert rope.flops == pytest.approx(6 * 4 * 1024 * 16 * 64)  # RoPE of 64 dims per head per new token


def test_sglang_context_runs_the_latent_form(tmp_path: Path) -> None:
    """collector/sglang/collect_mla.py feeds FA3/Triton 576-wide queries against one latent KV head (v = 512)."""
    p = _write(tmp_path, "l40s/mla/sglang/0.5.14/context_mla_perf.parquet",
               _mla_cols("mla_context", framework=["SGLang"], device=["NVIDIA L40S"], kernel_source=["triton"],
                         kv_cache_dtype=["bfloat16"], batch_size=[1], isl=[16]))
    (r,) = read_aiconfigurator_table(p).rows
    _, attn = row_kernels(r)
    assert attn.flops == pytest.approx(2 * (16 * 17 / 2) * 16 * (576 + 512))
    assert attn.k == 1  # one KV head


def test_sglang_fa3_casts_the_whole_fp8_pool_to_bf16(tmp_path: Path) -> None:
    """SGLang's FA3 MLA path reads `get_key_buffer(layer).to(bf16)`: with an fp8 cache one cast pass over every
    pool slot (the collector's pool: tokens rounded up to 64-token pages plus one padding page), then the bf16
    kernel; a bf16 cache, or another backend, casts nothing."""
    cols = _mla_cols("mla_generation", n=2, framework=["SGLang"] * 2, kernel_source=["flash_attention"] * 2,
                     kv_cache_dtype=["fp8", "bfloat16"], batch_size=[3] * 2, isl=[1] * 2, step=[99] * 2)
    fp8, bf16 = read_aiconfigurator_table(_write(tmp_path, "h100_sxm/mla/sglang/0.5.14/generation_mla_perf.parquet",
                                                 cols)).rows
    ks = {k.name: k for k in row_kernels(fp8)}
    assert set(ks) == {"rope", "kv_pool_cast", "attn_decode"}
    pool = 5 * 64 + 64  # 3 x 100 tokens -> 5 pages, plus the padding page
    assert (ks["kv_pool_cast"].act_read_bytes, ks["kv_pool_cast"].act_write_bytes) == (pool * 576, pool * 576 * 2)
    # the kernel then reads the bf16 copy: the bf16 row's attention kernel exactly
    assert ks["attn_decode"] == {k.name: k for k in row_kernels(bf16)}["attn_decode"]
    assert ks["attn_decode"].kv_read_bytes == pytest.approx(3 * 100 * 576 * 2)
    assert "kv_pool_cast" not in {k.name for k in row_kernels(bf16)}
    trt = read_aiconfigurator_table(_write(tmp_path, "h100_sxm/mla/trtllm/1.3.0rc20/generation_mla_perf.parquet",
                                           _mla_cols("mla_generation", isl=[1], step=[99]))).rows[0]
    assert "kv_pool_cast" not in {k.name for k in row_kernels(trt)}


def test_generation_and_module_rows(tmp_path: Path) -> None:
    gen = _write(tmp_path, "h100_sxm/mla/trtllm/1.3.0rc20/generation_mla_perf.parquet",
                 _mla_cols("mla_generation", isl=[1], step=[4095], batch_size=[8]))
    (g,) = read_aiconfigurator_table(gen).rows
    assert (g.op, g.seq_len, g.ctx_len, g.batch) == ("mla_generation", 1, 4095, 8)
    _, dec = row_kernels(g)
    # absorbed decode: one token per sequence over its 4095 cached entries and its own (576-wide scores over the
    # latent + RoPE key, 512-wide values), the fp8 cache read once per sequence
    assert dec.flops == pytest.approx(2 * 8 * 4096 * 16 * (576 + 512))
    assert dec.kv_read_bytes == pytest.approx(8 * 4096 * 576)
    # the absorbed decode runs on tensor cores: attn_prefill_eff, not a CUDA-core attn_decode_eff (TRT-LLM's GQA
    # fit), in the scalar cost and in the vectorised table the fits use
    assert dec.latent
    hw = load_hardware("h100-sxm")
    cal = Calibration(attn_decode_eff=0.025, attn_prefill_eff=0.4, attn_decode_overhead_s=0.0)
    cost = kernel_cost(dec, hw, cal)
    assert cost.compute_s == pytest.approx(dec.flops / (hw.peak("bf16") * 0.4))
    assert features([dec], [hw], cal).seconds(cal)[0] == pytest.approx(cost.seconds, rel=1e-12)
    # H100 has warpgroup MMA: TensorRT-LLM's MLA kernel splits the KV there, the no-split knob changes nothing
    trt = engine_base(cal, "trtllm")
    assert trt.attn_decode_latent_token_cycles == 190.0
    assert kernel_cost(dec, hw, trt).seconds == cost.seconds

    mod = _write(tmp_path, "h100_sxm/mla/vllm/0.24.0/mla_generation_module_perf.parquet",
                 _mla_cols("mla_generation_module", n=2, framework=["vLLM"] * 2, kernel_source=["FLASHMLA"] * 2,
                           model=["deepseek-ai/DeepSeek-V3", "moonshotai/Kimi-K2"], architecture=["x"] * 2,
                           gemm_type=["fp8_block"] * 2, isl=[1] * 2, step=[2048] * 2, tp_size=[1] * 2))
    t = read_aiconfigurator_table(mod)
    (m,) = t.rows
    assert "field 'model'='moonshotai/Kimi-K2' is not one of ['deepseek-ai/DeepSeek-V3']" in t.problems[0]
    assert (m.op, m.dtype, m.ctx_len) == ("mla_generation_module", "fp8", 2048)
    ks = {k.name: k for k in row_kernels(m)}
    # vLLM's own launches: the cache write, the absorbed W_UK / W_UV batched GEMMs (16-bit, in place of
    # kv_b_proj) and the query concatenation
    assert set(ks) == {"qkv_a_proj", "q_b_proj", "q_a_norm", "kv_a_norm", "rope", "o_proj",
                       "attn_decode", "kv_cache_write", "mla_gen_pre", "mla_gen_post", "q_concat"}
    assert ks["kv_cache_write"].act_write_bytes == 4 * 576 * 2
    assert ks["q_concat"].act_write_bytes == 4 * 16 * 576 * 2
    # the latent RMSNorms: one pass over the 1536-wide query and 512-wide KV latents of the 4 tokens
    assert (ks["q_a_norm"].act_read_bytes, ks["kv_a_norm"].act_read_bytes) == (4 * 1536 * 2, 4 * 512 * 2)
    # DeepSeek-V3 projections for 4 tokens and 16 heads on one GPU, fp8 block-scaled
    # the query and KV down-projections as one GEMM (fused_qkv_a_proj): 1536 + 512 + 64 outputs
    assert (ks["qkv_a_proj"].n, ks["qkv_a_proj"].k) == (1536 + 576, 7168)
    assert (ks["q_b_proj"].n, ks["q_b_proj"].k) == (16 * 192, 1536)
    assert (ks["mla_gen_pre"].n, ks["mla_gen_pre"].k, ks["mla_gen_pre"].flops) == (512, 128, 2 * 4 * 16 * 512 * 128)
    assert (ks["mla_gen_post"].n, ks["mla_gen_post"].k, ks["mla_gen_post"].dtype) == (128, 512, "bf16")
    assert (ks["o_proj"].n, ks["o_proj"].k, ks["o_proj"].m) == (7168, 16 * 128, 4)
    assert ks["o_proj"].dtype == "fp8_block"


def test_wideep_rows_run_the_checkpoint_fp8_with_a_bf16_cache_and_the_length_in_isl(tmp_path: Path) -> None:
    """SGLang's wide-EP MLA module logs fp8_block/fp8 for every run: its projections run DeepSeek-V3's fp8 block
    recipe (the checkpoint's quantization_config), its cache bf16; generation rows carry the KV length in isl."""
    p = _write(tmp_path, "h100_sxm/mla/sglang/0.5.6.post2/wideep_generation_mla_perf.parquet",
               _mla_cols("mla_generation", framework=["SGLang"], kernel_source=["fa3"], mla_dtype=["fp8_block"],
                         isl=[512], step=[0], tp_size=[1]))
    (r,) = read_aiconfigurator_table(p).rows
    assert (r.op, r.dtype, r.kv_dtype, r.seq_len, r.ctx_len) == ("mla_generation_module", "fp8", "bf16", 1, 512)
    assert "logged kv_cache_dtype=fp8" in r.variant and "gemm_dtype=fp8_block" in r.variant
    assert {k.dtype for k in row_kernels(r) if k.op == "gemm"} == {"fp8_block"}


def test_unknown_values_are_refused_by_name(tmp_path: Path) -> None:
    p = _write(tmp_path, "h100_sxm/mla/trtllm/1.3.0rc20/context_mla_perf.parquet",
               _mla_cols("mla_context", n=3, op_name=["mla_context", "mla_ctx", "mla_context"],
                         kv_cache_dtype=["fp8", "fp8", "int4"]))
    t = read_aiconfigurator_table(p)
    assert len(t.rows) == 1
    assert "row 1: field 'op_name'='mla_ctx' is not one of ['mla_context']" in t.problems[0]
    assert "row 2: field 'kv_cache_dtype'='int4' is not one of ['bfloat16', 'fp8']" in t.problems[1]


def test_mla_bmm_rows(tmp_path: Path) -> None:
    p = _write(tmp_path, "rtx_pro_6000_server/mla_bmm/sglang/0.5.14/mla_bmm_perf.parquet",
               {"framework": ["SGLang"] * 3, "version": ["0.5.14"] * 3,
                "device": ["NVIDIA RTX PRO 6000 Blackwell Server Edition"] * 3,
                "op_name": ["mla_gen_pre", "mla_gen_post", "mla_gen_mid"], "kernel_source": ["x"] * 3,
                "bmm_dtype": ["bfloat16", "fp8", "bfloat16"], "num_tokens": [64, 64, 64], "num_heads": [16] * 3,
                "latency": [0.01, 0.02, 0.03]})
    t = read_aiconfigurator_table(p)
    assert "field 'op_name'='mla_gen_mid' is not one of ['mla_gen_pre', 'mla_gen_post']" in t.problems[0]
    pre, post = t.rows
    assert (pre.hardware, pre.op, pre.dtype, pre.m, pre.n, pre.k, pre.num_heads) == (
        "rtx-pro-6000", "mla_bmm", "bf16", 64, 512, 128, 16)
    (g,) = row_kernels(pre)
    # 16 heads x [64, 128] x [128, 512], one weight matrix per head
    assert g.flops == pytest.approx(2 * 16 * 64 * 128 * 512)
    assert g.weight_bytes == pytest.approx(16 * 128 * 512 * 2)
    (g8,) = row_kernels(post)
    assert (post.n, post.k) == (128, 512)
    assert g8.dtype == "fp8_block"
    # the block-scaled call quantises its bf16 latent input first: read 2 bytes, write 1 per element
    assert gemm_quant_bytes(g8) == pytest.approx(64 * 16 * 512 * 3)
    # the collector replays one call on the same tensors: 2-4 MB fit in the 128 MiB L2, read from there
    assert g.l2_warm and g8.l2_warm
    big = dataclasses.replace(pre, m=20480, tokens=20480, num_heads=128)
    (gb,) = row_kernels(big)  # 20480 x 128 heads x (128 in + 512 out) bf16 = 3.4 GB: DRAM
    assert gb.bytes > 3e9 and not gb.l2_warm


def test_quantize_rows(tmp_path: Path) -> None:
    cols = {"framework": ["vLLM"] * 2, "version": ["0.24.0"] * 2, "device": ["NVIDIA L40S"] * 2,
            "kernel_source": ["x"] * 2, "m": [256, 256], "k": [4096, 4096], "quant_dtype": ["fp8", "fp8"]}
    sm = _write(tmp_path, "l40s/quantize/vllm/0.24.0/scale_matrix_perf.parquet",
                {**cols, "op_name": ["scale_matrix"] * 2, "latency": [0.004, 0.0]})
    t = read_aiconfigurator_table(sm)
    (r,) = t.rows
    assert "row 1: field 'latency'=0.0 must be a positive finite time" in t.problems[0]
    (k,) = row_kernels(r)
    assert (k.act_read_bytes, k.act_write_bytes) == (256 * 4096 * 2, 256 * 4096 * 1)  # bf16 in, fp8 out
    cs = _write(tmp_path, "l40s/quantize/vllm/0.24.0/computescale_perf.parquet",
                {**cols, "op_name": ["compute_scale", "scale_matrix"], "latency": [0.002, 0.002]})
    t = read_aiconfigurator_table(cs)
    assert "field 'op_name'='scale_matrix' is not one of ['compute_scale']" in t.problems[0]
    (k,) = row_kernels(t.rows[0])
    assert (k.name, k.act_read_bytes) == ("fp8_amax", 256 * 4096 * 2)


def test_measured_tables_read_whole(shared_data: Path) -> None:
    """Every MLA / MLA-BMM table in the data reads without a problem; a row of each is predicted."""
    root = shared_data / AIC
    if not root.is_dir():
        pytest.skip(f"{root} is absent (read at test time, not vendored)")
    files = sorted(p for fam in ("mla", "mla_bmm") for p in root.glob(f"*/{fam}/*/*/*.parquet"))
    assert len(files) >= 40
    for p in files:
        t = read_aiconfigurator_table(p, select=lambda tb: range(0, tb.num_rows, 97))
        assert t.problems == (), (p, t.problems[:2])
        assert all(why_unpredictable(r) is None for r in t.rows), p


@pytest.mark.parametrize(("gpu", "batch"), [("a100-sxm-80gb", 2), ("a100-sxm-80gb", 200), ("l40s", 16)])
def test_trtllm_latent_decode_without_split_kv(tmp_path: Path, gpu: str, batch: int) -> None:
    """TensorRT-LLM on GPUs without warpgroup MMA: one unit per sequence, 190 cycles per cached token each
    (model.cost.ENGINE_MLA) while at most half as many sequences as SMs run; the vectorised table the fits use
    gives the same seconds."""
    dev = {"a100-sxm-80gb": "NVIDIA A100-SXM4-80GB", "l40s": "NVIDIA L40S"}[gpu]
    p = _write(tmp_path, f"{gpu}/mla/trtllm/1.0.0/generation_mla_perf.parquet",
               _mla_cols("mla_generation", device=[dev], isl=[1], step=[131071], batch_size=[batch],
                         version=["1.0.0"]))
    (g,) = read_aiconfigurator_table(p).rows
    _, dec = row_kernels(g)
    hw = load_hardware(gpu)
    cal = engine_base(Calibration(attn_decode_overhead_s=0.0, attn_decode_unit_s=0.0), "trtllm")
    cost = kernel_cost(dec, hw, cal)
    waves = max(1.0, batch / (hw.compute.num_units * 0.5))  # A100: 108 SMs, L40S: 142
    assert waves == pytest.approx(200 / 54 if batch == 200 else 1.0)
    # 131072 cached tokens (131071 + the new one) x 190 cycles at the SM clock (A100 1.41 GHz: 17.7 ms a wave)
    assert cost.seconds == pytest.approx(max(waves * 131072 * 190 / hw.compute.clock_hz, cost.memory_s))
    assert cost.seconds > 3 * kernel_cost(dec, hw, Calibration(attn_decode_overhead_s=0.0,
                                                                attn_decode_unit_s=0.0)).seconds
    assert features([dec], [hw], cal).seconds(cal)[0] == pytest.approx(cost.seconds, rel=1e-12)


def test_sglang_triton_latent_decode_units_and_rate(tmp_path: Path) -> None:
    """SGLang's Triton MLA decode (L40S / RTX PRO 6000 kernel_source `triton`): 2.54e5 SM cycles of fixed work per
    (sequence, 16-head block) spread over the SMs, its math at 140 FLOPs per SM clock; the vectorised table the
    fits use gives the same seconds; a FlashMLA-style row (kernel_source flash_attention) pays neither."""
    hw = load_hardware("l40s")
    sm_clocks = hw.compute.num_units * hw.compute.clock_hz
    cal = Calibration(attn_decode_overhead_s=0.0)

    def decode(source: str, batch: int, heads: int, step: int):
        p = _write(tmp_path, f"l40s/mla/sglang/{source}{batch}-{heads}-{step}/generation_mla_perf.parquet",
                   _mla_cols("mla_generation", framework=["SGLang"], device=["NVIDIA L40S"], kernel_source=[source],
                             kv_cache_dtype=["bfloat16"], batch_size=[batch], num_heads=[heads], isl=[1],
                             step=[step], tp_size=[1]))
        (r,) = read_aiconfigurator_table(p).rows
        return row_kernels(r)[-1]

    short = decode("triton", 128, 32, 1)  # 128 sequences x 2 head blocks, 2 cached tokens: the fixed work binds
    assert short.triton and short.latent
    cost = kernel_cost(short, hw, cal)
    assert cost.seconds == pytest.approx(128 * 2 * 2.54e5 / sm_clocks)  # 0.36 ms (measured: 0.19 ms)
    assert features([short], [hw], cal).seconds(cal)[0] == pytest.approx(cost.seconds, rel=1e-12)
    long = decode("triton", 16, 128, 131071)  # the math binds: 2 x 16 x 131072 x 128 x (576 + 512) FLOPs
    assert kernel_cost(long, hw, cal).compute_s == pytest.approx(long.flops / (140 * sm_clocks))
    assert long.flops == pytest.approx(2 * 16 * 131072 * 128 * (576 + 512))
    assert features([long], [hw], cal).seconds(cal)[0] == pytest.approx(kernel_cost(long, hw, cal).seconds, rel=1e-12)
    native = decode("flash_attention", 128, 32, 1)
    assert not native.triton
    assert kernel_cost(native, hw, cal).seconds < cost.seconds / 10
