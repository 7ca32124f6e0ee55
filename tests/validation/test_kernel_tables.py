"""Tests for the kernel-table importers: real shared data (counts, spot checks, units) and malformed input."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roofsim.hardware_specs.errors import InputError
from roofsim.validation.kernel_tables import (
    read_aiconfigurator,
    read_aiconfigurator_table,
    read_generic_csv,
    read_kernel_tables,
    read_llmcompass,
    read_vidur,
)

AIC = "kernels/aiconfigurator"


def test_aiconfigurator_gemm_a100_vllm(shared_data: Path) -> None:
    p = shared_data / AIC / "a100_sxm/gemm/vllm/0.14.0/gemm_perf.parquet"
    t = read_aiconfigurator_table(p)
    assert len(t.rows) == 9240 and t.problems == ()
    raw = pq.read_table(p, columns=["m", "n", "k", "latency", "gemm_dtype"]).slice(17, 1).to_pylist()[0]
    r = t.rows[17]
    assert (r.m, r.n, r.k, r.row) == (raw["m"], raw["n"], raw["k"], 17)
    assert r.measured_s == pytest.approx(raw["latency"] * 1e-3)  # ms -> s
    assert (r.hardware, r.framework, r.op, r.source) == ("a100-sxm-80gb", "vllm", "gemm", "aiconfigurator")
    assert r.dtype in {"bf16", "fp8", "int8", "int4"}


def test_aiconfigurator_collectives_elements_to_bytes(shared_data: Path) -> None:
    t = read_aiconfigurator(shared_data / AIC, systems=["a100_sxm"], families=["comm"])
    assert len(t.rows) == 504 + 138 + 138 + 69 + 138 and t.problems == ()
    nccl = [r for r in t.rows if "nccl_perf" in r.file]
    raw = pq.read_table(shared_data / AIC / "a100_sxm/comm/nccl/2.27.3/nccl_perf.parquet").to_pylist()
    for r in nccl[:50]:
        src = raw[r.row]
        per = {"half": 2, "int8": 1}[src["nccl_dtype"]]
        assert r.message_bytes == src["message_size"] * per
        assert r.num_gpus == src["num_gpus"]
    assert {r.op for r in nccl} == {"allreduce", "allgather", "reducescatter", "alltoall"}


def test_aiconfigurator_moe_a2a_is_microseconds(shared_data: Path) -> None:
    p = shared_data / AIC / "h100_sxm/comm/vllm/0.24.0/moe_a2a_perf.parquet"
    t = read_aiconfigurator_table(p)
    assert len(t.rows) == 648
    first = pq.read_table(p, columns=["latency", "phase"]).slice(0, 1).to_pylist()[0]
    assert t.rows[0].measured_s == pytest.approx(first["latency"] * 1e-6)
    assert t.rows[0].op == f"moe_{first['phase']}" and t.rows[0].dtype == ""


def test_aiconfigurator_decode_attention(shared_data: Path) -> None:
    t = read_aiconfigurator_table(shared_data / AIC / "a100_sxm/attention/vllm/0.14.0/generation_attention_perf.parquet")
    assert len(t.rows) == 5431
    assert all(r.op == "attn_decode" and r.seq_len == 1 for r in t.rows)
    assert max(r.ctx_len for r in t.rows) > 1000


def test_vidur_mlp_shapes(shared_data: Path) -> None:
    p = shared_data / "kernels/vidur/profiling/compute/a100/meta-llama/Llama-2-70b-hf/mlp.csv"
    t = read_vidur(p)
    assert len(t.rows) == 1044 * 10 and t.problems == ()
    with p.open() as f:
        first = next(csv.DictReader(f))
    tp = int(first["num_tensor_parallel_workers"])
    qkv = next(r for r in t.rows if r.row == 2 and r.variant.startswith("attn_pre_proj"))
    # Llama-2-70B: 64 q heads, 8 kv heads, head_dim 128, d 8192
    assert (qkv.m, qkv.n, qkv.k) == (int(first["num_tokens"]), (64 + 16) * 128 // tp, 8192)
    assert qkv.measured_s == pytest.approx(float(first["time_stats.attn_pre_proj.median"]) * 1e-3)
    up = next(r for r in t.rows if r.row == 2 and r.variant.startswith("mlp_up_proj"))
    assert up.n == 2 * 28672 // tp and up.hardware == "a100-sxm-80gb"


def test_vidur_network_and_legacy(shared_data: Path) -> None:
    t = read_vidur(shared_data / "kernels/vidur/profiling/network/h100_dgx/all_reduce.csv")
    assert len(t.rows) == 2982 and t.rows[0].message_bytes == 2048 * 2 and t.rows[0].hardware == "h100-sxm"
    assert t.rows[0].measured_s == pytest.approx(0.043e-3, rel=1) and t.rows[0].num_gpus in (2, 4, 8)
    a = read_vidur(shared_data / "kernels/vidur/legacy/acb95f6/a100_attention.csv")
    ops = {r.op for r in a.rows}
    assert {"attn_prefill", "attn_decode"} <= ops
    assert sum(r.op == "attn_prefill" for r in a.rows) == 4418
    assert sum(r.op == "attn_decode" for r in a.rows) == 10240
    c = read_vidur(shared_data / "kernels/vidur/legacy/57720ca/a100_cpu_overheads.csv")
    assert len(c.rows) == 78 * 9 and all(r.op.startswith("cpu_overhead_") for r in c.rows)


def test_llmcompass(shared_data: Path) -> None:
    t = read_llmcompass(shared_data / "kernels/llmcompass")
    assert t.problems == () and len(t.rows) == 194
    mm = next(r for r in t.rows if r.file.endswith("matmul_A100.csv") and r.row == 1)
    assert (mm.m, mm.n, mm.k) == (64, 12288, 12288) and mm.measured_s == pytest.approx(0.19e-3)
    sm = next(r for r in t.rows if r.file.endswith("softmax_A100.csv") and r.row == 1)
    assert sm.measured_s == pytest.approx(4096 * 32 / (9.99556025250909 * 1e9))
    layer = [r for r in t.rows if r.file.endswith("transformer_A100.csv")]
    assert len(layer) == 12 and layer[0].op == "gemm" and layer[0].measured_s == pytest.approx(0.013721823692321777)
    assert layer[-1].op == "allreduce" and layer[-1].num_gpus == 4
    assert {r.hardware for r in t.rows} == {"a100-sxm-80gb", "mi210"}


def test_directory_reports_unrecognised_tables(shared_data: Path) -> None:
    t = read_kernel_tables(shared_data / "kernels/llmcompass")
    assert len(t.rows) == 194
    assert len(t.problems) == 1 and "die_area.csv" in t.problems[0]


HEADER = "op,dtype,hardware,measured_s,m,n,k,message_bytes,num_gpus,variant\n"
GOOD = "gemm,bf16,h100-sxm,0.001,4096,4096,4096,0,0,x\nallreduce,fp16,h100-sxm,2e-5,0,0,0,1048576,8,\n"


def test_generic_csv_ok(tmp_path: Path) -> None:
    p = tmp_path / "k.csv"
    p.write_text(HEADER + GOOD)
    t = read_generic_csv(p)
    assert t.problems == () and len(t.rows) == 2
    assert (t.rows[0].m, t.rows[0].measured_s, t.rows[0].source, t.rows[0].row) == (4096, 0.001, "csv", 2)
    assert t.rows[1].message_bytes == 1048576.0 and t.rows[1].num_gpus == 8


def test_generic_csv_bad_cell_and_column(tmp_path: Path) -> None:
    p = tmp_path / "k.csv"
    p.write_text(HEADER + GOOD + "gemm,bf16,h100-sxm,-1,1,1,1,0,0,\ngemm,bogus,h100-sxm,1,1,1,1,0,0,\n")
    t = read_generic_csv(p)
    assert len(t.rows) == 2
    assert t.problems[0].startswith(f"{p} line 4:") and "'measured_s'" in t.problems[0]
    assert "line 5" in t.problems[1] and "'dtype'" in t.problems[1]
    p.write_text("op,dtype,hardware\ngemm,bf16,h100\n")
    with pytest.raises(InputError, match=r"k\.csv line 1: missing required column\(s\) \['measured_s'\]"):
        read_generic_csv(p)
    p.write_text("op,dtype,hardware,measured_s,mm\ngemm,bf16,h100,1,2\n")
    with pytest.raises(InputError, match="unknown column"):
        read_generic_csv(p)


def test_unknown_parquet_table(tmp_path: Path) -> None:
    p = tmp_path / "h100_sxm/gemm/vllm/1/weird_perf.parquet"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown AIConfigurator table 'weird_perf'"):
        read_aiconfigurator_table(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.integers(0, 2), col=st.integers(0, 9),
       junk=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8))
def test_generic_csv_corruption_never_crashes(tmp_path: Path, line: int, col: int, junk: str) -> None:
    lines = (HEADER + GOOD).splitlines()
    cells = lines[line].split(",")
    cells[col] = junk
    lines[line] = ",".join(cells)
    p = tmp_path / "c.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        t = read_generic_csv(p)
    except InputError:
        return
    if line > 0 and not set(junk) & set(',"\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029'):
        # the structure is intact: each of the 2 data lines is either a row or a problem naming its line
        assert len(t.rows) + len(t.problems) == 2
        assert all(f"line {line + 1}:" in pr for pr in t.problems)
    for r in t.rows:
        assert r.measured_s > 0
