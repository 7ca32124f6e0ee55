"""`roofsim validate benchmarks`, `roofsim validate run` and `roofsim convert` end to end on small files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from roofsim.app.cli import main
from roofsim.validation.bench_table import BenchRow, read_bench_table, write_bench_table

ROW = BenchRow(model="meta-llama/Llama-3.1-8B-Instruct", hardware="h100-sxm", num_gpus=1, tp=1, pp=1, ep=1,
               weight_dtype="bf16", kv_dtype="bf16", framework="sglang", mode="closed_loop", isl=128, osl=8,
               concurrency=2, ttft_ms=20.0, tpot_ms=8.0)
STATS = {"n", "median_abs_pct_err", "mape", "bias_pct"}


def test_validate_benchmarks_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = write_bench_table([ROW, replace(ROW, model="nope/nope"), replace(ROW, tpot_ms=None)], tmp_path / "t.csv")
    out_csv = tmp_path / "pred.csv"
    rc = main(["validate", "benchmarks", str(t), "--json", "--out", str(out_csv), "--report",
               str(tmp_path / "r.html"), "--calibration", str(Path(__file__).resolve().parents[2] /
                                                             "validation/profiles/h100-sxm.toml")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"by_metric", "rows", "problems"} <= set(out)
    assert set(out["by_metric"]) == {"ttft_ms", "tpot_ms"}
    assert all(set(v) == STATS for v in out["by_metric"].values())
    assert out["by_metric"]["ttft_ms"]["n"] == 2 and out["by_metric"]["tpot_ms"]["n"] == 1  # blank cell unscored
    assert out["rows"] == 3 and out["rows_predicted"] == 2
    assert len(out["problems"]) == 1 and "nope/nope" in out["problems"][0] and "row 2" in out["problems"][0]
    assert "pred_ttft_ms" in out_csv.read_text().splitlines()[0]
    assert "Plotly" in (tmp_path / "r.html").read_text()
    # --out refuses to overwrite
    assert main(["validate", "benchmarks", str(t), "--json", "--out", str(out_csv)]) == 2
    assert "--force" in capsys.readouterr().err


def test_validate_benchmarks_clients_switch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 8 closed-loop clients of one row: lock-step ("ideal") vs the row's harness (aiperf by default); the harness
    # clients' gaps between a response and the next request change the prediction, and the switch is noted
    t = write_bench_table([replace(ROW, concurrency=8, osl=32)], tmp_path / "t.csv")
    for clients in ("ideal", "harness"):
        assert main(["validate", "benchmarks", str(t), "--json", "--clients", clients,
                     "--out", str(tmp_path / f"{clients}.csv")]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (any("--clients ideal" in n for n in out["notes"])) == (clients == "ideal")
    assert (tmp_path / "ideal.csv").read_text() != (tmp_path / "harness.csv").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["validate", "benchmarks", str(t), "--clients", "lockstep"])
    assert exc.value.code == 2 and "invalid choice: 'lockstep'" in capsys.readouterr().err


def test_validate_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "l.json"
    log.write_text(json.dumps({"request_rate": 1.0, "input_lens": [64, 32], "output_lens": [3, 2],
                               "ttfts": [0.02, 0.02], "itls": [[0.008, 0.008], [0.008]], "send_times": [0.0, 0.3]}))
    assert main(["validate", "run", str(log), "--model", "meta-llama/Llama-3.1-8B-Instruct", "--hardware",
                 "h100-sxm", "--json", "--report", str(tmp_path / "r.html")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["comparison"]) == {"ttft_s", "tpot_s", "itl_s", "e2e_s"}
    assert set(out["comparison"]["ttft_s"]) == {"mean", "p50", "p90", "p99"}
    assert set(out["totals"]) == {"duration_s", "output_tokens_per_s", "requests_per_s"}
    assert out["requests"] == 2 and "CDF" in (tmp_path / "r.html").read_text()
    # a log that is not the format it claims: clean error, exit 2
    assert main(["validate", "run", str(log), "--format", "llmperf", "--model", "meta-llama/Llama-3.1-8B-Instruct",
                 "--hardware", "h100-sxm"]) == 2
    assert "not an LLMPerf" in capsys.readouterr().err


SILICON = """id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,\
moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,silicon_ttft_ms,silicon_tpot_ms
a,x,trtllm,1.0,meta-llama/Llama-3.1-8B-Instruct,h100_sxm,bf16,agg,1024,128,,,8,1,1,1,1,1,100.5,7.5
b,x,trtllm,1.0,meta-llama/Llama-3.1-8B-Instruct,h100_sxm,bf16,disagg,1024,128,,,8,1,1,1,1,1,100.5,7.5
"""


def test_convert_aiconfigurator_silicon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "s.csv"
    src.write_text(SILICON)
    out = tmp_path / "t.csv"
    assert main(["convert", "aiconfigurator-silicon", str(src), "--out", str(out), "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["rows"] == 1 and len(j["problems"]) == 1 and "disagg" in j["problems"][0]
    rows = read_bench_table(out).rows
    assert (rows[0].mode, rows[0].concurrency, rows[0].ttft_ms) == ("closed_loop", 8, 100.5)
    assert main(["convert", "aiconfigurator-silicon", str(src), "--out", str(out)]) == 2  # no overwrite
    assert "--force" in capsys.readouterr().err


def test_replay_quant_keeps_fp32_end_to_end_and_auto_follows_the_hardware() -> None:
    from roofsim.app.common import replay_quant

    q = replay_quant("fp32", "h100-sxm")
    assert (q.weight_dtype, q.activation_dtype, q.kv_dtype) == ("fp32", "fp32", "fp32")
    assert replay_quant("auto", "cpu-generic").kv_dtype == "fp32"  # a CPU without bf16: the numpy engine's fp32
    assert replay_quant("auto", "h100-sxm").weight_dtype == "bf16"
    q8 = replay_quant("fp8", "h100-sxm")
    assert (q8.activation_dtype, q8.kv_dtype) == ("fp8", "bf16")
