"""`roofsim plan` end to end: JSON and table output, HTML report, exit codes and clean errors for bad input."""

from __future__ import annotations

import json
import time

import pytest

from roofsim.app.cli import main

BASE = ["plan", "--model", "llama-3.1-8b", "--workload", "conversation", "--rate", "12", "--slo-ttft-p99", "1",
        "--slo-tpot-p99", "0.05", "--num-requests", "150", "--tolerance", "0.1", "--workers", "1"]


def test_json_plan_and_report(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "plan.html"
    code = main([*BASE, "--hardware", "h100,l40s", "--tp", "1,2", "--json", "--report", str(report),
                 "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr()
    assert code == 0
    d = json.loads(out.out)
    assert d["winner"]["candidate"]["label"] == d["outcomes"][0]["candidate"]["label"]
    assert d["winner"]["replicas"] * d["winner"]["capacity_per_s"] >= 12
    assert {o["candidate"]["hardware"] for o in d["outcomes"]} == {"h100-sxm", "l40s"}  # aliases resolved
    assert d["winner_metrics"]["requests_completed"] == 150
    assert "planning" not in out.err  # no progress bar with --json
    page = report.read_text()
    assert "Pareto front" in page and d["winner"]["candidate"]["label"] in page and "<table>" in page


def test_table_output_and_repeat_from_cache(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*BASE, "--hardware", "h100", "--tp", "1", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "WINNER: " in first and "h100-sxm tp1 bf16 vllm: sarathi b1024" in first  # the default engine, vLLM V1
    assert "150 requests per point (--num-requests)" in first and "requests  steady" in first
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "0 simulations" in second and "cached" in second


def test_impossible_slo_exits_1_with_closest(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*BASE[:7], "--slo-ttft-p99", "0.02", *BASE[9:], "--hardware", "h100", "--tp", "1,2", "--no-cache"])
    out = capsys.readouterr().out
    assert code == 1
    assert "NO CANDIDATE MEETS THE SLOs" in out and "closest candidates" in out and "TTFT" in out


def test_unknown_hardware_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--hardware", "h100,h1000", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "unknown hardware 'h1000'" in err and "closest" in err and "Traceback" not in err


def test_unreachable_dask_scheduler_is_a_clean_error_not_a_hang(capsys: pytest.CaptureFixture[str]) -> None:
    t = time.perf_counter()
    assert main([*BASE[:-2], "--hardware", "h100", "--dask-scheduler", "tcp://127.0.0.1:9", "--no-cache"]) == 2
    assert time.perf_counter() - t < 20
    assert "cannot connect to the Dask scheduler" in capsys.readouterr().err


def test_workload_xor_trace(capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for a in BASE if a not in ("--workload", "conversation")]
    assert main(args) == 2
    assert "exactly one of --workload" in capsys.readouterr().err


def test_set_writes_plan_spec_fields_and_names_bad_ones(capsys: pytest.CaptureFixture[str]) -> None:
    """--set PATH=VALUE edits the PlanSpec before validation (lists as TOML arrays); a wrong path lists the fields."""
    from roofsim.app.cli import build_parser
    from roofsim.app.cmd_plan import spec_from_args

    args = build_parser().parse_args([*BASE, "--set", "chunk_size=1024", "--set", 'schedulers=["vllm", "sarathi"]',
                                      "--set", "max_batched_tokens=4096", "--set", "workload.rate_per_s=3"])
    spec = spec_from_args(args)
    assert (spec.chunk_size, spec.schedulers, spec.max_batched_tokens) == (1024, ("vllm", "sarathi"), 4096)
    assert spec.workload.rate_per_s == 3.0 and spec.rate_per_s == 12 and spec.tolerance == 0.1
    assert main([*BASE, "--set", "chunksize=1", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "the top level has no key 'chunksize'" in err and "chunk_size" in err
    assert main([*BASE, "--set", "schedulers=[\"fifo\"]", "--no-cache"]) == 2
    assert "scheduler 'fifo' is not one of static, vllm, orca, sarathi, sjf" in capsys.readouterr().err


def test_plan_weights_default_to_the_checkpoint_format() -> None:
    from roofsim.simulator.planning import PlanSpec, candidates
    from roofsim.simulator.planning.search import resolve

    q = {"workload": {"kind": "named", "name": "conversation"}, "rate_per_s": 1, "slo_ttft_s": 1, "slo_tpot_s": 0.1,
         "hardware": ["h100-sxm", "a100-sxm-80gb"], "tp": [1]}
    fp8 = PlanSpec.model_validate({**q, "model": "Qwen/Qwen3-32B-FP8"})
    assert fp8.weight_dtypes == ("checkpoint",)
    h100, a100 = candidates(fp8)
    assert h100.label == "h100-sxm tp1 checkpoint vllm: sarathi b1024"
    assert (h100.quant(fp8).activation_dtype, h100.quant(fp8).group_size) == ("fp8", 128 * 128)
    assert a100.quant(fp8).activation_dtype == "bf16"  # weight-only where the GPU has no fp8
    resolved, _ = resolve(fp8)  # the token budget plan() sizes from the workload
    assert h100.group(resolved)["quant"] == h100.quant(fp8).model_dump()
    # an unquantised checkpoint: 'checkpoint' is bf16, and the labels stay bf16
    assert PlanSpec.model_validate({**q, "model": "llama-3.1-8b"}).weight_dtypes == ("bf16",)
    assert PlanSpec.model_validate({**q, "model": "llama-3.1-8b",
                                    "weight_dtypes": ["checkpoint", "bf16", "fp8"]}).weight_dtypes == ("bf16", "fp8")


def test_engine_flag_plans_with_the_engines_scheduler(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--hardware", "h100", "--tp", "1", "--engine", "vllm==0.10", "--json", "--no-cache"]) == 0
    d = json.loads(capsys.readouterr().out)
    c = d["winner"]["candidate"]
    assert (c["engine"], c["scheduler"], c["max_batch"], c["max_batched_tokens"]) == ("vllm==0.10", "sarathi", 1024,
                                                                                     8192)
    assert d["spec"]["engine"] == "vllm==0.10"
    assert main([*BASE, "--engine", "vllm==7", "--no-cache"]) == 2
    assert "unknown engine version 'vllm==7'" in capsys.readouterr().err


def test_disaggregated_plan_json_and_table(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*BASE, "--tp", "1", "--disaggregated", "--max-pool-replicas", "2", "--no-cache"]
    assert main([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    # cheapest first: one prefill + one decode H100 ($2.99/h each) serves 12 req/s of `conversation` in the SLOs
    assert d["disaggregated"] and d["winner"]["label"] == "1P x h100-sxm tp1 + 1D x h100-sxm tp1"
    assert d["winner"]["usd_per_hour"] == pytest.approx(2 * 2.99) and d["winner"]["gpus"] == 2
    assert d["outcomes"][0] == d["winner"] and d["simulations"] == len(d["outcomes"]) <= d["deployments"] == 4
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "KV over the network link" in out and "winner: 1P x h100-sxm tp1 + 1D x h100-sxm tp1, $5.98/h" in out
    assert main([*args, "--report", str(tmp_path / "r.html")]) == 2
    assert "--report and --slo-confidence are not available with --disaggregated" in capsys.readouterr().err
    assert main([*args, "--slo-confidence", "0.9"]) == 2


def test_attn_dp_flag_plans_moe_layouts_only(capsys: pytest.CaptureFixture[str]) -> None:
    moe = ["--model", "qwen3-30b-a3b", *BASE[3:], "--hardware", "h100", "--tp", "1", "--max-gpus", "4", "--no-cache"]
    assert main(["plan", *moe, "--attn-dp", "1,4", "--json"]) == 0
    labels = [o["candidate"]["label"] for o in json.loads(capsys.readouterr().out)["outcomes"]]
    assert sorted(labels) == ["h100-sxm dp4 x tp1 bf16 vllm: sarathi b1024", "h100-sxm tp1 bf16 vllm: sarathi b1024"]
    dense = [*BASE, "--hardware", "h100", "--tp", "1", "--max-gpus", "4", "--no-cache", "--attn-dp", "1,4", "--json"]
    assert main(dense) == 0
    assert [o["candidate"]["label"] for o in json.loads(capsys.readouterr().out)["outcomes"]] == [
        "h100-sxm tp1 bf16 vllm: sarathi b1024"]
