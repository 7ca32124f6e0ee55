"""Serving-log formats beyond the vLLM 0.8 layout: hand-written fixtures in tests/validation/data/ that follow each
tool's published schema, read into the expected ServingLog values; summary-only exports; multi-benchmark replay.

Schemas: GuideLLM 0.6 vllm-project/guidellm src/guidellm/benchmark/schemas/generative/{report,benchmark}.py,
schemas/request_stats.py, schemas/info.py, scheduler/strategies.py; vLLM vllm/benchmarks/serve.py `main_async`
result_json; SGLang python/sglang/bench_serving.py `benchmark` (result | result_details, one JSON line per run);
AIPerf docs/tutorials/working-with-profile-exports.md (profile_export.jsonl, profile_export_aiperf.json);
genai-perf tests/test_llm_profile_data_parser.py fixtures (Perf Analyzer profile_export.json).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from roofsim.app.cli import main
from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import Calibration
from roofsim.validation.logs import read_log, read_logs, read_stats
from roofsim.validation.replay import replay_all

DATA = Path(__file__).parent / "data"
MODEL, HW = "meta-llama/Llama-3.1-8B-Instruct", "h100-sxm"


def test_guidellm_0_6_sweep_every_benchmark() -> None:
    logs = read_logs(DATA / "guidellm_0_6_sweep.json")
    assert [lg.label for lg in logs] == ["benchmarks[0] concurrent@2", "benchmarks[1] poisson@4"]
    a, b = logs
    assert a.source_format == "guidellm" and list(a.input_tokens) == [128, 256, 64]
    assert list(a.output_tokens) == [5, 1, 3]
    assert np.allclose(a.ttft_s, [0.10, 0.12, 0.11]) and np.allclose(a.e2e_s, [0.182, 0.122, 0.172])
    assert np.allclose(a.send_s, [0.0, 0.0, 0.2])
    # 1-token output: last_token_iteration and inter_token_latency_ms are null -> no gap, no crash
    assert a.itl_s[1].shape == (0,) and np.allclose(a.itl_s[0], [0.02] * 4)
    assert any("1 requests have a single output token" in n for n in a.notes)
    assert a.concurrency == 2 and a.request_rate_per_s is None and a.duration_s == pytest.approx(1.0)
    assert b.request_rate_per_s == 4.0 and b.seed == 42 and b.concurrency is None
    assert np.allclose(b.send_s, [0.0, 0.5]) and np.allclose(b.itl_s[0], [0.04] * 3)
    one = read_log(DATA / "guidellm_0_6_sweep.json", index=1)
    assert one.label == b.label and any("file holds 2 benchmarks" in n for n in one.notes)


def test_vllm_bench_serve_detailed() -> None:
    lg = read_log(DATA / "vllm_bench_serve_detailed.json")
    assert lg.source_format == "vllm" and list(lg.input_tokens) == [100, 200] and list(lg.output_tokens) == [3, 2]
    assert np.allclose(lg.e2e_s, [0.075, 0.095])  # the per-request 'latencies', not ttft + sum(itls)
    assert np.allclose(lg.send_s, [0.0, 1.0]) and lg.concurrency == 8 and lg.request_rate_per_s == 2.0
    assert any("1 of 3 requests failed" in n for n in lg.notes)
    assert not any("keys not read" in n for n in lg.notes)  # every field of the layout is known


def test_vllm_append_result_and_ramp_up(tmp_path: Path) -> None:
    d = json.loads((DATA / "vllm_bench_serve_detailed.json").read_text())
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps(d) + "\n" + json.dumps({**d, "request_rate": "inf", "ramp_up_strategy": "linear",
                                                    "ramp_up_start_rps": 1, "ramp_up_end_rps": 8}) + "\n")
    a, b = read_logs(p)
    assert (a.label, b.label) == ("line 1", "line 2") and a.request_rate_per_s == 2.0
    assert b.request_rate_per_s is None and any("ramp_up_strategy='linear'" in n for n in b.notes)


def test_sglang_jsonl_runs() -> None:
    a, b = read_logs(DATA / "sglang_bench_serving.jsonl")
    assert a.source_format == "sglang" and a.request_rate_per_s == 1.0 and a.num_requests == 2
    assert np.allclose(a.e2e_s, [0.08, 0.08]) and a.send_s is None
    assert math.isinf(b.request_rate_per_s) and b.num_requests == 1 and np.allclose(b.ttft_s, [0.08])
    assert any("SGLang bench_serving records neither send times" in n for n in a.notes)


def test_aiperf_profile_export_jsonl() -> None:
    lg = read_log(DATA / "aiperf_profile_export.jsonl")
    assert lg.source_format == "aiperf" and list(lg.input_tokens) == [550, 550] and list(lg.output_tokens) == [3, 2]
    assert np.allclose(lg.ttft_s, [0.04, 0.045]) and np.allclose(lg.e2e_s, [0.06, 0.057])
    assert np.allclose(lg.send_s, [0.0, 0.5]) and np.allclose(lg.itl_s[0], [0.01, 0.01])
    assert any("1 of 3 records have an error" in n for n in lg.notes)


def test_genai_perf_profile_export_and_summary() -> None:
    (lg,) = read_logs(DATA / "genai_perf" / "profile_export.json")
    assert lg.source_format == "genai-perf" and lg.label == "experiments[0] concurrency=4" and lg.concurrency == 4
    assert list(lg.input_tokens) == [128, 128] and list(lg.output_tokens) == [3, 1]  # role / [DONE] chunks skipped
    assert np.allclose(lg.ttft_s, [0.1, 0.1]) and np.allclose(lg.itl_s[0], [0.01, 0.015])
    assert np.allclose(lg.e2e_s, [0.13, 0.12]) and np.allclose(lg.send_s, [0.0, 0.2])
    summary = DATA / "genai_perf" / "profile_export_genai_perf.json"
    (st,) = read_stats(summary)
    assert st.source_format == "genai-perf" and st.concurrency == 4
    assert st.stats["ttft_s"]["mean"] == pytest.approx(0.12) and st.stats["ttft_s"]["p99"] == pytest.approx(0.2)
    assert st.stats["tpot_s"]["p50"] == pytest.approx(0.0115) and st.stats["e2e_s"]["p90"] == pytest.approx(0.99)
    with pytest.raises(InputError, match=r"profile_export_genai_perf.json: export summary statistics only.*"
                                         r"per-request replay is impossible"):
        read_log(summary)


def test_genai_perf_without_summary_names_the_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "profile_export.json"
    p.write_text((DATA / "genai_perf" / "profile_export.json").read_text())
    with pytest.raises(InputError, match=r"profile_export.json: genai-perf's profile_export.json holds prompt text"):
        read_log(p)


def test_vllm_summary_only(tmp_path: Path) -> None:
    d = json.loads((DATA / "vllm_bench_serve_detailed.json").read_text())
    for k in ("input_lens", "output_lens", "start_times", "ttfts", "itls", "generated_texts", "errors"):
        del d[k]  # what vllm bench serve writes without --save-detailed
    p = tmp_path / "s.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"s.json: vllm summary statistics only.*--save-detailed"):
        read_log(p)
    (st,) = read_stats(p)
    assert st.stats["ttft_s"]["mean"] == pytest.approx(0.06) and st.stats["tpot_s"]["p99"] == pytest.approx(0.0199)
    assert st.num_requests == 2 and st.request_rate_per_s == 2.0 and st.concurrency == 8


@pytest.mark.parametrize("text, match", [
    ('{"hello": 1}', r"x.json: cannot detect the log format; tried vLLM .*GuideLLM.*SGLang.*AIPerf.*genai-perf"),
    ('{"benchmarks": [', r"x.json: not valid JSON"),
    ('[]', r"x.json: cannot detect the log format"),
    ('{"metadata": {}, "metrics": {"time_to_first_token": {"value": 1, "unit": "ms"}}, "error": null}',
     r"x.json: line 1.metrics has no 'input_sequence_length'"),
    ('{"metadata": {}, "metrics": {"input_sequence_length": {"value": 1}, "output_sequence_length": {"value": 2},'
     ' "time_to_first_token": {"value": 1, "unit": "hours"}}, "error": null}', r"x.json: .*unit='hours'"),
    ('{"benchmarks": [{"config": {"strategy": {"type_": "poisson", "rate": 0}}, "requests": {"successful": []}}]}',
     r"x.json: field 'benchmarks\[0\].strategy.rate'=0 must be > 0"),
])
def test_malformed_files_name_the_file(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "x.json"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        read_logs(p)


def test_replay_all_reports_each_benchmark() -> None:
    res = replay_all(DATA / "guidellm_0_6_sweep.json", MODEL, HW, calibration=Calibration())
    assert [r.log.label for r in res] == ["benchmarks[0] concurrent@2", "benchmarks[1] poisson@4"]
    assert [r.log.num_requests for r in res] == [3, 2]
    assert all(r.sim.summary["requests_completed"] == r.log.num_requests for r in res)


def test_cli_validate_run_multi_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    log = DATA / "guidellm_0_6_sweep.json"
    assert main(["validate", "run", str(log), "--model", MODEL, "--hardware", HW, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [b["benchmark"] for b in out["benchmarks"]] == ["benchmarks[0] concurrent@2", "benchmarks[1] poisson@4"]
    assert [b["requests"] for b in out["benchmarks"]] == [3, 2] and out["benchmarks"][1]["request_rate_per_s"] == 4
    assert main(["validate", "run", str(log), "--model", MODEL, "--hardware", HW, "--benchmark", "1", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["benchmark"] == "benchmarks[1] poisson@4" and one["requests"] == 2
    assert main(["validate", "run", str(log), "--model", MODEL, "--hardware", HW]) == 0
    text = capsys.readouterr().out
    assert "== benchmarks[0] concurrent@2: 3 requests" in text and "== benchmarks[1] poisson@4" in text
