"""Every dashboard page driven headless with streamlit.testing AppTest: set widgets, run, check the shown numbers
against the cost model computed independently (app.cmd_estimate.estimate), and check bad input shows st.error."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from roofsim.app.cmd_estimate import estimate
from roofsim.app.common import Deployment, quant_from_args
from roofsim.app.dashboard.state.common import config_toml, parse_metric
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec
from roofsim.validation.profiles import resolve_calibration, resolve_config_calibrations

PAGES = Path(__file__).resolve().parents[2] / "app" / "dashboard"
TIMEOUT_S = 60


def _app(page: str) -> AppTest:
    path = PAGES / page if page == "Home.py" else PAGES / "pages" / page
    at = AppTest.from_file(str(path), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metric(at: AppTest, label: str) -> float:
    hits = [m for m in at.metric if m.label == label]
    assert hits, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return parse_metric(hits[0].value)


def _reference(model: str, hw: str, batch: int, inp: int, out: int, tp: int = 1, wd: str = "bf16") -> dict:
    ns = argparse.Namespace(weight_dtype=wd, activation_dtype="auto", kv_dtype="auto", group_size=128)
    spec = load_hardware(hw)  # the one calibration rule: the GPU's shipped (or transferred) profile
    dep = Deployment(load_model(model), spec, quant_from_args(ns), ParallelSpec(tp=tp), resolve_calibration(None, spec)[0])
    return estimate(dep, batch, inp, out)


def _no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ------------------------------------------------------------------------------------------ step explorer


@pytest.fixture(scope="module")
def step() -> AppTest:
    return _app("1_Step_explorer.py")


def test_step_explorer_default_numbers_equal_the_cli_estimate(step: AppTest) -> None:
    ref = _reference("Llama-3.1-8B", "h100-sxm", 16, 1024, 256)
    assert _metric(step, "TPOT") == pytest.approx(ref["tpot_s"] * 1e3, abs=5e-4)
    assert _metric(step, "TTFT") == pytest.approx(ref["ttft_s"] * 1e3, abs=5e-4)
    assert _metric(step, "Output throughput") == pytest.approx(ref["output_tokens_per_s"], abs=0.05)
    assert _metric(step, "Max batch at context") == ref["max_batch_at_context"]
    # one view drawn at a time (drawing all four charts per rerun made knob changes slow): each view has its chart
    assert [e.key for e in step.get("plotly_chart")] == ["roofline_A"]
    step.segmented_control(key="step_view").set_value("Kernel times").run()
    assert [e.key for e in step.get("plotly_chart")] == ["kernels_A"] and len(step.dataframe) == 1
    step.segmented_control(key="step_view").set_value("Memory").run()
    assert [e.key for e in step.get("plotly_chart")] == ["memory"]
    step.segmented_control(key="step_view").set_value("Roofline").run()


def test_larger_batch_raises_tpot_and_throughput(step: AppTest) -> None:
    tpot16, thr16 = _metric(step, "TPOT"), _metric(step, "Output throughput")
    step.number_input(key="batch").set_value(64).run()
    _no_traceback(step)
    ref = _reference("Llama-3.1-8B", "h100-sxm", 64, 1024, 256)
    tpot64, thr64 = _metric(step, "TPOT"), _metric(step, "Output throughput")
    assert tpot64 == pytest.approx(ref["tpot_s"] * 1e3, abs=5e-4)
    assert tpot64 > tpot16 and thr64 > 2 * thr16  # decode is memory-bound: 4x batch, far less than 4x time
    step.number_input(key="batch").set_value(16).run()


def test_changing_hardware_and_tp_follows_the_model(step: AppTest) -> None:
    step.selectbox(key="hardware").set_value("a100-sxm-80gb")
    step.number_input(key="tp").set_value(2).run()
    _no_traceback(step)
    ref = _reference("Llama-3.1-8B", "a100-sxm-80gb", 16, 1024, 256, tp=2)
    assert _metric(step, "TPOT") == pytest.approx(ref["tpot_s"] * 1e3, abs=5e-4)
    step.selectbox(key="hardware").set_value("h100-sxm")
    step.number_input(key="tp").set_value(1).run()


@pytest.mark.parametrize("widget, value, needle", [
    ("tp", 3, "tp=3 must divide num_heads=32"),
    ("model", "Llama-3.1-405B", "does not fit on 1 x h100-sxm"),
    ("input_len", 200_000, "exceeds the context"),
])
def test_bad_configuration_shows_error_not_traceback(step: AppTest, widget: str, value: object, needle: str) -> None:
    w = step.number_input(key=widget) if widget in ("tp", "input_len") else step.selectbox(key=widget)
    old = w.value
    w.set_value(value).run()
    _no_traceback(step)
    assert any(needle in e.value for e in step.error), [e.value for e in step.error]
    assert not step.metric  # nothing half-computed is shown
    (step.number_input(key=widget) if widget in ("tp", "input_len") else step.selectbox(key=widget)).set_value(
        old).run()
    assert not step.error


def test_side_by_side_comparison_shows_b_with_its_own_numbers(step: AppTest) -> None:
    step.toggle(key="compare").set_value(True).run()
    _no_traceback(step)
    step.selectbox(key="b_hardware").set_value("a100-sxm-80gb")
    step.selectbox(key="b_weight_dtype").set_value("int8").run()
    _no_traceback(step)
    ref_b = _reference("Llama-3.1-8B", "a100-sxm-80gb", 16, 1024, 256, wd="int8")
    assert _metric(step, "TPOT (B)") == pytest.approx(ref_b["tpot_s"] * 1e3, abs=5e-4)
    assert _metric(step, "TPOT") == pytest.approx(_reference("Llama-3.1-8B", "h100-sxm", 16, 1024, 256)["tpot_s"]
                                                  * 1e3, abs=5e-4)
    step.toggle(key="compare").set_value(False).run()


# ------------------------------------------------------------------------------------------ validation


KERNEL_CSV = (b"op,dtype,hardware,measured_s,m,n,k,tokens,hidden,message_bytes,num_gpus\n"
              b"gemm,bf16,h100-sxm,0.0002,4096,4096,4096,,,,\n"
              b"gemm,bf16,h100-sxm,0.0001,1,4096,4096,,,,\n"
              b"rmsnorm,bf16,h100-sxm,0.00001,,,,4096,4096,,\n"
              b"allreduce,bf16,h100-sxm,0.00005,,,,,,16777216,8\n")


def _frame(at: AppTest, key: str):  # noqa: ANN202
    hits = [d.value for d in at.dataframe if d.key == key] if hasattr(at.dataframe[0], "key") else []
    return hits[0] if hits else next(d.value for d in at.dataframe if "MAPE %" in d.value.columns)


def test_validation_kernel_upload_equals_validation_predict_and_metrics_err(tmp_path: Path) -> None:
    """GEMM, RMSNorm and all-reduce rows are all predicted (validation.predict), and the error table shown equals
    validation.metrics_err.grouped_stats of predict_rows on the same rows with the same calibration."""
    from roofsim.validation.kernel_tables import read_kernel_tables
    from roofsim.validation.metrics_err import error_stats, grouped_stats
    from roofsim.validation.predict import predict_rows
    from roofsim.validation.profiles import profile_for

    at = _app("3_Validation.py")
    at.selectbox(key="source").set_value("Upload a file").run()
    at.file_uploader(key="upload").set_value(("mine.csv", KERNEL_CSV, "text/csv")).run()
    _no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    (tmp_path / "mine.csv").write_bytes(KERNEL_CSV)
    ref = predict_rows(read_kernel_tables(tmp_path / "mine.csv").rows, profile_for)
    assert len(ref.rows) == 4 and _metric(at, "Rows compared") == 4
    overall = error_stats(ref.predicted_s, ref.measured_s)
    assert _metric(at, "MAPE") == pytest.approx(overall.mape, abs=0.05)
    assert _metric(at, "Median APE") == pytest.approx(overall.median_abs_pct_err, abs=0.05)
    table = _frame(at, "error_table")
    expect = grouped_stats(ref.rows, ref.predicted_s, ref.measured_s)
    assert list(table["group"]) == list(expect) == ["allreduce/bf16", "gemm/bf16", "rmsnorm/bf16"]
    for (_, row), st in zip(table.iterrows(), expect.values(), strict=True):
        assert row["rows"] == st.n
        assert row["MAPE %"] == pytest.approx(st.mape) and row["bias %"] == pytest.approx(st.bias_pct)
        assert row["P90 APE %"] == pytest.approx(st.p90_abs_pct_err)


def test_validation_benchmark_rows_equal_predict_table(tmp_path: Path) -> None:
    """Benchmark rows are simulated by validation.e2e.predict_table; the table shown is e2e_error_stats."""
    from roofsim.validation.bench_table import read_bench_table
    from roofsim.validation.e2e import e2e_error_stats, predict_table, shipped_calibration

    csv = (b"model,hardware,num_gpus,tp,pp,ep,weight_dtype,kv_dtype,framework,mode,isl,osl,concurrency,qps,"
           b"num_requests,ttft_ms,tpot_ms,itl_ms,e2e_ms,output_tokens_per_s,requests_per_s\n"
           b"Llama-3.1-8B,h100-sxm,1,1,1,1,bf16,bf16,vllm,closed_loop,512,64,2,,,40,8,,,,\n"
           b"Llama-3.1-8B,h100-sxm,1,1,1,1,bf16,bf16,vllm,closed_loop,1024,64,4,,,60,9,,,,\n")
    at = _app("3_Validation.py")
    at.radio(key="kind").set_value("Benchmark table").run()
    at.selectbox(key="source").set_value("Upload a file").run()
    at.file_uploader(key="upload").set_value(("bench.csv", csv, "text/csv")).run()
    _no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    (tmp_path / "bench.csv").write_bytes(csv)
    preds = predict_table(read_bench_table(tmp_path / "bench.csv").rows, shipped_calibration, workers=1).predictions
    stats = e2e_error_stats(preds, key=lambda r: f"{r.model} {r.framework}")["Llama-3.1-8B vllm"]
    assert _metric(at, "Cells compared") == 4
    table = _frame(at, "error_table")
    assert list(table["metric"]) == ["ttft_ms", "tpot_ms"]
    assert list(table["MAPE %"]) == pytest.approx([stats["ttft_ms"]["mape"], stats["tpot_ms"]["mape"]])
    assert list(table["bias %"]) == pytest.approx([stats["ttft_ms"]["bias_pct"], stats["tpot_ms"]["bias_pct"]])


def test_validation_log_replay_equals_replay_log(tmp_path: Path) -> None:
    """A serving log is replayed by validation.replay.replay_log; the numbers shown are its comparison."""
    import json

    from roofsim.validation.profiles import profile_for
    from roofsim.validation.replay import make_scheduler_config, replay_log

    log = {"request_rate": 2.0, "duration": 3.0, "input_lens": [100, 200, 50, 300], "output_lens": [5, 3, 8, 2],
           "ttfts": [0.05, 0.04, 0.06, 0.05], "itls": [[0.01] * 4, [0.01] * 2, [0.01] * 7, [0.01]],
           "errors": [""] * 4, "send_times": [0.0, 1.25, 0.5, 2.0]}
    data = json.dumps(log).encode()
    at = _app("3_Validation.py")
    at.radio(key="kind").set_value("Serving log").run()
    at.selectbox(key="source").set_value("Upload a file").run()
    at.file_uploader(key="upload").set_value(("log.json", data, "application/json")).run()
    _no_traceback(at)
    at.button(key="replay").click().run()
    _no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    (tmp_path / "log.json").write_bytes(data)
    ref = replay_log(tmp_path / "log.json", "Llama-3.1-8B", "h100-sxm",
                     scheduler=make_scheduler_config("vllm-v1", "h100-sxm")[0],
                     calibration=profile_for("h100-sxm", "vllm"))
    pred_ttft = ref.comparison["ttft_s"]["mean"]["predicted"] * 1e3
    assert _metric(at, "mean TTFT predicted") == pytest.approx(pred_ttft, abs=0.005)
    table = next(d.value for d in at.dataframe if "stat" in d.value.columns)
    row = table[(table["metric"] == "TPOT") & (table["stat"] == "p90")].iloc[0]
    assert row["measured"] == pytest.approx(10.0)  # every inter-token gap of the log is 10 ms
    assert row["predicted"] == pytest.approx(ref.comparison["tpot_s"]["p90"]["predicted"] * 1e3)
    assert len(at.get("plotly_chart")) >= 3  # predicted-vs-measured CDFs (validation.e2e_report.cdf_figure)


def test_validation_replays_a_local_run_with_its_own_model_hardware_and_calibration(tmp_path: Path) -> None:
    """The #8 loop in the dashboard: a `roofsim measure` log with its config.json, a HardwareSpec TOML and a
    calibration profile uploaded; fp32 (auto, the hardware has no bf16) and the log's own max batch."""
    from roofsim.app.cmd_measure import resolve_local_model
    from roofsim.app.common import replay_quant
    from roofsim.hardware_specs.catalog import load_hardware
    from roofsim.model.cost import Calibration
    from roofsim.validation.local import dumps_hardware, write_model_config
    from roofsim.validation.local.serve import run_serving, write_vllm_log
    from roofsim.validation.profiles import write_calibration
    from roofsim.validation.replay import make_scheduler_config, replay_log

    spec = resolve_local_model("local-llama-tiny")
    log = write_vllm_log(run_serving(spec, "continuous", 4, float("inf"), (16, 48), 6, 3, 0), tmp_path / "run.json")
    cfg = write_model_config(spec, tmp_path / "run.config.json")
    hw = tmp_path / "cpu.toml"
    hw.write_text(dumps_hardware(load_hardware("cpu-generic")))
    cal_path = write_calibration(Calibration(name="mine", hardware="cpu-generic", step_overhead_s=2e-3),
                                 tmp_path / "cpu.calibration.toml")
    at = _app("3_Validation.py")
    at.radio(key="kind").set_value("Serving log").run()
    at.selectbox(key="source").set_value("Upload a file").run()
    at.file_uploader(key="upload").set_value(("run.json", log.read_bytes(), "application/json")).run()
    for key, f in (("rp_model_file", cfg), ("rp_hardware_file", hw), ("rp_calibration_file", cal_path)):
        at.file_uploader(key=key).set_value((f.name, f.read_bytes(), "application/octet-stream")).run()
    at.selectbox(key="rp_scheduler").set_value("vllm").run()
    assert at.number_input(key="rp_max_batch").value == 3  # the log's steps reach batch 3
    at.button(key="replay").click().run()
    _no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    ref = replay_log(log, str(cfg), str(hw), scheduler=make_scheduler_config("vllm", str(hw), 3)[0],
                     quant=replay_quant("fp32", str(hw)), calibration=Calibration(name="mine", hardware="cpu-generic",
                                                                                  step_overhead_s=2e-3))
    assert _metric(at, "mean TPOT predicted") == pytest.approx(ref.comparison["tpot_s"]["mean"]["predicted"] * 1e3,
                                                               abs=0.005)
    assert any("steps" in str(d.value.columns.tolist()) or "batch_size" in d.value.columns for d in at.dataframe)


@pytest.mark.parametrize("kind, name, data, needle", [
    ("Kernel table", "broken.csv", b"\x00\xff garbage without a header\n1,2\n", "looks like UTF-16 text"),
    ("Serving log", "log.json", b"{not json", "log.json"),
    ("Benchmark table", "bench.csv", b"model,hardware\nx,y\n", "bench.csv"),
])
def test_validation_unparseable_upload_shows_error(kind: str, name: str, data: bytes, needle: str) -> None:
    at = _app("3_Validation.py")
    at.radio(key="kind").set_value(kind).run()
    at.selectbox(key="source").set_value("Upload a file").run()
    at.file_uploader(key="upload").set_value((name, data, "application/octet-stream")).run()
    _no_traceback(at)
    assert at.error and needle in at.error[0].value, [e.value for e in at.error]


def test_validation_example_gemm_table(shared_data: Path) -> None:
    at = _app("3_Validation.py")
    assert not at.error
    assert _metric(at, "Rows compared") == 2000  # 35,280 measured GEMMs evenly subsampled to the default 2,000
    assert 0 < _metric(at, "MAPE") < 200


# ------------------------------------------------------------------------------------------ home, capacity planning


def test_home_renders() -> None:
    home = _app("Home.py")
    assert "what-if dashboard" in home.title[0].value


@pytest.fixture(scope="module")
def capacity() -> AppTest:
    at = _app("4_Capacity_planning.py")
    assert at.info and "Run plan" in at.info[0].value  # nothing runs until asked
    at.button(key="run_plan").click().run()
    _no_traceback(at)
    return at


def test_capacity_winner_equals_the_planner(capacity: AppTest) -> None:
    """The page's winner is simulator.planning.plan's for the same small sweep (spec written by hand here)."""
    from roofsim.simulator.planning import PlanSpec, SerialExecutor, plan
    from roofsim.simulator.workload import NamedWorkload
    from roofsim.validation.profiles import resolve_plan_calibrations

    spec = PlanSpec(model="Llama-3.1-8B", workload=NamedWorkload(name="conversation"), rate_per_s=8.0,
                    slo_ttft_s=1.0, slo_tpot_s=0.1, hardware=("h100-sxm", "a100-sxm-80gb"), tp=(1, 2),
                    num_requests=200, tolerance=0.1)
    ref = plan(resolve_plan_calibrations(spec)[0], SerialExecutor())  # the page's calibration rule
    w = ref.winner
    assert w is not None
    assert any(w.candidate.label in h.value for h in capacity.subheader), [h.value for h in capacity.subheader]
    assert _metric(capacity, "Replicas") == w.replicas and _metric(capacity, "GPUs") == w.gpus
    assert _metric(capacity, "$ / hour") == pytest.approx(w.usd_per_hour, abs=0.005)
    assert _metric(capacity, "P99 TTFT at load") == pytest.approx(w.p99_ttft_s * 1e3, abs=0.05)
    table = next(d.value for d in capacity.dataframe if "configuration" in d.value.columns)
    assert list(table["configuration"]) == [o.candidate.label for o in ref.outcomes]
    assert len(capacity.get("plotly_chart")) == 1  # the Pareto figure
    assert any("Why the runners-up lost" in m.value for m in capacity.markdown)


def test_capacity_impossible_slo_lists_closest_candidates(capacity: AppTest) -> None:
    capacity.number_input(key="pl_slo_ttft").set_value(0.001).run()
    capacity.button(key="run_plan").click().run()
    _no_traceback(capacity)
    assert capacity.error, "expected an error message"
    msg = capacity.error[0].value
    assert "No candidate meets" in msg and "Closest candidates" in msg and "h100-sxm tp2" in msg
    assert not capacity.metric
    capacity.number_input(key="pl_slo_ttft").set_value(1.0).run()  # back to the cached answer, no click
    assert not capacity.error and _metric(capacity, "Replicas") >= 1


def test_capacity_bad_question_shows_error(capacity: AppTest) -> None:
    capacity.multiselect(key="pl_hardware").set_value([]).run()
    _no_traceback(capacity)
    assert capacity.error and "pick at least one value for hardware" in capacity.error[0].value
    capacity.multiselect(key="pl_hardware").set_value(["h100-sxm", "a100-sxm-80gb"]).run()


def _trace_csv(n: int = 80) -> bytes:
    import numpy as np

    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(0.25, n))
    rows = [f"{a:.4f},{int(i)},{int(o)}" for a, i, o in zip(t, rng.integers(100, 1500, n), rng.integers(20, 300, n),
                                                            strict=True)]
    return ("arrival_s,input_tokens,output_tokens\n" + "\n".join(rows) + "\n").encode()


def test_capacity_plans_for_an_uploaded_trace_like_the_planner(tmp_path: Path) -> None:
    """An uploaded trace replaces the built-in workload; the winner equals simulator.planning.plan's on that file."""
    from roofsim.simulator.planning import PlanSpec, SerialExecutor, plan
    from roofsim.simulator.workload import TraceWorkload
    from roofsim.validation.profiles import resolve_plan_calibrations

    data = _trace_csv()
    at = _app("4_Capacity_planning.py")
    at.radio(key="pl_source").set_value("upload a trace").run()
    assert at.info and "Upload a trace" in at.info[0].value
    at.file_uploader(key="pl_trace_upload").set_value(("mine.csv", data, "text/csv")).run()
    at.multiselect(key="pl_hardware").set_value(["h100-sxm"]).run()
    at.multiselect(key="pl_tp").set_value([1]).run()
    at.number_input(key="pl_requests").set_value(60).run()
    at.button(key="run_plan").click().run()
    _no_traceback(at)
    path = tmp_path / "mine.csv"
    path.write_bytes(data)
    spec = PlanSpec(model="Llama-3.1-8B", workload=TraceWorkload(path=str(path)), rate_per_s=8.0, slo_ttft_s=1.0,
                    slo_tpot_s=0.1, hardware=("h100-sxm",), tp=(1,), num_requests=60, tolerance=0.1)
    ref = plan(resolve_plan_calibrations(spec)[0], SerialExecutor())  # each GPU's shipped profile, as `roofsim plan`
    assert ref.winner is not None
    assert _metric(at, "Replicas") == ref.winner.replicas
    assert _metric(at, "Capacity / replica") == pytest.approx(ref.winner.capacity_per_s, rel=5e-3)  # 3 digits shown


def test_capacity_unparseable_trace_shows_error() -> None:
    at = _app("4_Capacity_planning.py")
    at.radio(key="pl_source").set_value("upload a trace").run()
    at.file_uploader(key="pl_trace_upload").set_value(("t.csv", b"arrival_s,input_tokens,output_tokens\n0,abc,5\n",
                                                       "text/csv")).run()
    at.button(key="run_plan").click().run()
    _no_traceback(at)
    assert at.error and "t.csv:2: field 'input_tokens'" in at.error[0].value, [e.value for e in at.error]


# ------------------------------------------------------------------------------------------ serving what-if

SERVING_N = 300


def _serving_reference(count: int = 1) -> dict:
    """The same run straight through the simulator, config written by hand (not via the dashboard's helpers)."""
    from roofsim.simulator.config import SimConfig
    from roofsim.simulator.run import simulate

    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "rate_per_s": 4.0, "num_requests": SERVING_N},
        "replicas": [{"model": "Llama-3.1-8B", "hardware": "h100-sxm", "count": count, "engine": "vllm",
                      "quant": {"weight_dtype": "bf16", "activation_dtype": "bf16", "kv_dtype": "bf16"}}],
        "slo": {"ttft_s": 1.0, "tpot_s": 0.1}, "seed": 0})
    return simulate(resolve_config_calibrations(cfg)[0]).summary  # the page applies the one calibration rule


@pytest.fixture(scope="module")
def serving() -> AppTest:
    at = _app("2_Serving_what-if.py")
    assert at.info and "Run simulation" in at.info[0].value  # nothing runs until asked (or cached)
    at.number_input(key="sv_num_requests").set_value(SERVING_N)
    at.button(key="run").click().run()
    _no_traceback(at)
    return at


def test_serving_kpis_equal_the_simulator(serving: AppTest) -> None:
    ref = _serving_reference()
    assert _metric(serving, "P50 TTFT") == pytest.approx(ref["ttft_s"]["p50"] * 1e3, abs=0.05)
    assert _metric(serving, "P99 TTFT") == pytest.approx(ref["ttft_s"]["p99"] * 1e3, abs=0.05)
    assert _metric(serving, "P50 TPOT") == pytest.approx(ref["tpot_s"]["p50"] * 1e3, abs=0.05)
    assert _metric(serving, "Throughput") == pytest.approx(ref["output_tokens_per_s"], abs=0.5)
    assert _metric(serving, "$ / 1M tokens") == pytest.approx(ref["cost_per_million_output_tokens_usd"], abs=5e-4)
    assert len(serving.get("plotly_chart")) >= 7  # 3 CDFs + 4 time series


def test_more_replicas_lower_tail_ttft_and_going_back_is_cached(serving: AppTest) -> None:
    p99_one = _metric(serving, "P99 TTFT")
    serving.number_input(key="sv_count").set_value(2)
    serving.button(key="run").click().run()
    _no_traceback(serving)
    ref2 = _serving_reference(count=2)
    p99_two = _metric(serving, "P99 TTFT")
    assert p99_two == pytest.approx(ref2["ttft_s"]["p99"] * 1e3, abs=0.05)
    assert p99_two < p99_one  # round-robin over 2 replicas halves each one's load
    serving.number_input(key="sv_count").set_value(1).run()  # no click: the earlier result is served from cache
    _no_traceback(serving)
    assert _metric(serving, "P99 TTFT") == p99_one


def test_load_sweep_latency_grows_with_rate(serving: AppTest) -> None:
    serving.button(key="sweep").click().run()
    _no_traceback(serving)
    table = next(d.value for d in serving.dataframe if "rate_per_s" in d.value.columns)
    assert list(table["rate_per_s"]) == [1.0, 1.6818, 2.8284, 4.7568, 8.0]
    assert table["ttft_p99_s"].iloc[-1] > table["ttft_p99_s"].iloc[0]


def _restore(at: AppTest, cfg: object, name: str = "s.toml") -> None:
    at.file_uploader(key="restore").set_value((name, config_toml(cfg).encode(), "application/toml")).run()
    _no_traceback(at)


def _shown_config(at: AppTest) -> object:
    """The SimConfig the page runs: its Scenario TOML (the download) read back."""
    import tomllib

    from roofsim.simulator.config import SimConfig

    return SimConfig.model_validate(tomllib.loads(at.code[0].value))


def test_scenario_toml_restores_the_widgets() -> None:
    from roofsim.app.dashboard.state.serving import sim_config

    cfg = sim_config(sv_model="Qwen3-8B", sv_hardware="a100-sxm-80gb", sv_engine="custom", sv_scheduler="sarathi",
                     sv_chunk_size=256, sv_count=3, sv_rate_per_s=2.5, sv_num_requests=200)
    at = _app("2_Serving_what-if.py")
    _restore(at, cfg)
    assert at.selectbox(key="sv_model").value == "Qwen3-8B"
    assert at.selectbox(key="sv_scheduler").value == "sarathi"
    assert at.number_input(key="sv_chunk_size").value == 256
    assert at.number_input(key="sv_count").value == 3
    assert at.number_input(key="sv_rate_per_s").value == 2.5
    assert at.success and not at.warning
    # the download offers the same TOML back
    assert "chunk_size = 256" in at.code[0].value and 'model = "Qwen3-8B"' in at.code[0].value
    assert at.code[0].value.strip() == config_toml(cfg).strip()


def _scenario(workload: dict, top: dict | None = None, **group: object) -> object:
    from roofsim.simulator.config import SimConfig

    return SimConfig.model_validate({
        "workload": workload, "replicas": [{"model": "Llama-3.1-8B", "hardware": "h100-sxm", **group}],
        "slo": {"ttft_s": 0.5, "tpot_s": 0.05}, **(top or {})})


ROUND_TRIPS = {
    # arrivals must end within MAX_DURATION_S = 1e7 s (simulator/limits.py): 9,000 at 0.001/s, 500,000 at 0.1/s
    "hf id, huge seed, tiny rate": lambda: _scenario(
        {"kind": "named", "name": "code", "rate_per_s": 0.001, "num_requests": 9_000},
        {"seed": 2**40}, model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", tp=2, count=7),
    "huge request count": lambda: _scenario(
        {"kind": "named", "name": "code", "rate_per_s": 0.1, "num_requests": 500_000}, hardware="h100"),
    "model path, speculative": lambda: _scenario(
        {"kind": "named", "name": "conversation", "rate_per_s": 12.5, "num_requests": 250},
        model="/data/models/my-llama/config.json", quant={"weight_dtype": "fp8", "activation_dtype": "fp8"},
        scheduler={"kind": "sjf", "predictor_sigma": 0.37, "max_num_seqs": 1000, "preemption": "swap"},
        speculative={"drafter": {"kind": "draft_model", "model": "Qwen3-0.6B"}, "k": 5, "adaptive_k": True,
                     "k_min": 2, "k_max": 7, "acceptance": {"kind": "positional",
                                                            "rates": [0.91, 0.8, 0.7, 0.6, 0.55, 0.5, 0.123456789]}}),
    "early exit, closed loop": lambda: _scenario(
        {"kind": "synthetic", **_named_lengths("code"), "num_requests": 300,
         "arrival": {"kind": "closed_loop", "clients": 12, "think_s": 0.25, "ramp_up_s": "first_token",
                     "warmup_requests": 2, "warmup_drain": False}},
        early_exit={"kind": "per_token", "distribution": {"kind": "histogram", "layers": [8, 20, 32],
                                                          "weights": [0.2, 0.3, 0.5]},
                    "batch_sync": False, "kv_fill": "recompute", "exit_head": "lm_head"}),
    "skipdecode, router, prefix caching": lambda: _scenario(
        {"kind": "named", "name": "conversation", "rate_per_s": 3.0, "num_requests": 1000},
        {"router": {"kind": "least_kv"}}, early_exit={"kind": "skipdecode", "max_layers": 30, "min_layers": 10, "max_position": 4096},
        prefix_caching=True, frontend_s_per_request=0.0025),
}


def _named_lengths(name: str) -> dict:
    from roofsim.simulator.workload import named_workload

    wl = named_workload(name).model_dump(mode="json")
    return {k: wl[k] for k in ("input", "output", "correlation")}


@pytest.mark.parametrize("case", list(ROUND_TRIPS))
def test_uploaded_scenario_round_trips_exactly(case: str) -> None:
    """Uploaded TOML -> restored widgets -> the config the page builds equals the uploaded one, including values
    outside the widgets' usual lists and ranges (an HF id or config path, 500,000 requests, seed 2**40)."""
    cfg = ROUND_TRIPS[case]()
    at = _app("2_Serving_what-if.py")
    _restore(at, cfg)
    assert not at.error and not at.warning, [e.value for e in (*at.error, *at.warning)]
    assert _shown_config(at) == cfg


def test_restore_names_every_field_it_cannot_show() -> None:
    """Fields without a widget (block size, a second replica group, no TTFT SLO) are listed, never dropped silently."""
    from roofsim.simulator.config import SimConfig

    base = _scenario({"kind": "named", "name": "conversation", "rate_per_s": 2.0, "num_requests": 100},
                     block_size=32, tp=2)
    dump = base.model_dump()
    dump["slo"] = {"tpot_s": 0.05}
    dump["replicas"] = [dump["replicas"][0], {**dump["replicas"][0], "hardware": "a100-sxm-80gb"}]
    at = _app("2_Serving_what-if.py")
    _restore(at, SimConfig.model_validate(dump))
    assert at.warning, "expected the fields not restored to be named"
    msg = at.warning[0].value
    assert "replicas = " in msg and "slo.ttft_s = None" in msg
    one = SimConfig.model_validate({**dump, "replicas": dump["replicas"][:1]})
    at = _app("2_Serving_what-if.py")
    _restore(at, one)
    msg = at.warning[0].value
    assert "replicas.0.block_size = 32 (shown as 16)" in msg and "slo.ttft_s" in msg and "replicas.0.tp " not in msg
    assert at.number_input(key="sv_tp").value == 2 and at.number_input(key="sv_rate_per_s").value == 2.0


@pytest.mark.parametrize("key, name, data, needle", [
    ("restore", "bad.toml", b"[workload\nkind=", "not valid TOML"),
    ("restore", "typo.toml", b'[workload]\nkind = "named"\nname = "conversation"\n[[replicas]]\nmodel = "x"\n'
                             b'hardware = "h100-sxm"\nbogus = 1\n', "bogus"),
])
def test_serving_bad_upload_shows_error(key: str, name: str, data: bytes, needle: str) -> None:
    at = _app("2_Serving_what-if.py")
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream")).run()
    _no_traceback(at)
    assert at.error and needle in at.error[0].value, [e.value for e in at.error]


def test_serving_unparseable_trace_shows_error() -> None:
    at = _app("2_Serving_what-if.py")
    at.file_uploader(key="trace_upload").set_value(("t.csv", b"arrival_s,input_tokens,output_tokens\n0,abc,5\n",
                                                    "text/csv")).run()
    at.button(key="run").click().run()
    _no_traceback(at)
    assert at.error and "t.csv:2: field 'input_tokens'" in at.error[0].value, [e.value for e in at.error]


def test_serving_impossible_deployment_shows_error() -> None:
    at = _app("2_Serving_what-if.py")
    at.selectbox(key="sv_model").set_value("Llama-3.1-405B")
    at.number_input(key="sv_num_requests").set_value(50)
    at.button(key="run").click().run()
    _no_traceback(at)
    assert at.error and "does not fit" in at.error[0].value


def _technique_reference(extra: dict, n: int) -> dict:
    from roofsim.simulator.config import SimConfig
    from roofsim.simulator.run import simulate

    group = {"model": "Llama-3.1-8B", "hardware": "h100-sxm", "engine": "vllm",  # the page's default engine
             "quant": {"weight_dtype": "bf16", "activation_dtype": "bf16", "kv_dtype": "bf16"}, **extra}
    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "rate_per_s": 4.0, "num_requests": n},
        "replicas": [group], "slo": {"ttft_s": 1.0, "tpot_s": 0.1}, "seed": 0})
    return simulate(resolve_config_calibrations(cfg)[0]).summary  # the page applies the one calibration rule


def test_speculative_and_early_exit_kpis_equal_the_simulator() -> None:
    n = 100
    at = _app("2_Serving_what-if.py")
    at.number_input(key="sv_num_requests").set_value(n)
    at.selectbox(key="sv_spec_drafter").set_value("eagle").run()
    at.slider(key="sv_spec_rate").set_value(0.8)
    at.number_input(key="sv_spec_k").set_value(3)
    at.button(key="run").click().run()
    _no_traceback(at)
    ref = _technique_reference({"speculative": {"drafter": {"kind": "eagle"}, "k": 3,
                                                "acceptance": {"kind": "iid", "rate": 0.8}}}, n)
    assert _metric(at, "Tokens / step") == pytest.approx(ref["spec_tokens_per_step"], abs=5e-4)
    assert _metric(at, "Acceptance rate") == pytest.approx(100 * ref["spec_acceptance_rate"], abs=0.05)
    assert _metric(at, "P99 TPOT") == pytest.approx(ref["tpot_s"]["p99"] * 1e3, abs=0.05)
    # Leviathan et al. eq. 1 at a = 0.8, k = 3: (1 - 0.8^4) / 0.2 = 2.952 tokens per step, within sampling noise
    assert _metric(at, "Tokens / step") == pytest.approx(2.952, rel=0.05)

    at.selectbox(key="sv_spec_drafter").set_value("off")
    at.selectbox(key="sv_ee_kind").set_value("skipdecode").run()
    at.number_input(key="sv_ee_min_layers").set_value(12)
    at.button(key="run").click().run()
    _no_traceback(at)
    assert not any(m.label == "Tokens / step" for m in at.metric)
    ref = _technique_reference({"early_exit": {"kind": "skipdecode", "max_layers": 32, "min_layers": 12}}, n)
    assert _metric(at, "Executed depth") == pytest.approx(ref["ee_mean_executed_depth"], abs=0.005)
    assert _metric(at, "Energy saved") == pytest.approx(100 * ref["ee_energy_saved_fraction"], abs=0.05)
    assert 12 < _metric(at, "Executed depth") < 32


def test_speculation_and_early_exit_together_is_an_error_not_a_traceback() -> None:
    at = _app("2_Serving_what-if.py")
    at.selectbox(key="sv_spec_drafter").set_value("medusa")
    at.selectbox(key="sv_ee_kind").set_value("skipdecode").run()
    _no_traceback(at)
    assert at.error and "speculative and early_exit cannot both be set" in at.error[0].value


def test_technique_toml_restores_the_widgets() -> None:
    from roofsim.app.dashboard.state.serving import ARRIVAL_MODES, sim_config

    cfg = sim_config(sv_spec_drafter="layerskip", sv_spec_exit_layer=10, sv_spec_k=5, sv_spec_tree_width=2,
                     sv_spec_acceptance="positional", sv_spec_rates="0.9, 0.8, 0.7, 0.6, 0.5",
                     sv_arrival_mode=ARRIVAL_MODES[1], sv_clients=24, sv_warmup_requests=1, sv_kv_dtype="fp8",
                     sv_num_requests=400)
    at = _app("2_Serving_what-if.py")
    _restore(at, cfg, "t.toml")
    assert at.selectbox(key="sv_spec_drafter").value == "layerskip"
    assert at.number_input(key="sv_spec_exit_layer").value == 10
    assert at.number_input(key="sv_spec_k").value == 5
    assert at.text_input(key="sv_spec_rates").value == "0.9, 0.8, 0.7, 0.6, 0.5"
    assert at.radio(key="sv_arrival_mode").value == ARRIVAL_MODES[1]
    assert at.number_input(key="sv_clients").value == 24
    assert at.selectbox(key="sv_kv_dtype").value == "fp8"
    assert at.code[0].value.strip() == config_toml(cfg).strip()  # the download: exactly the uploaded scenario


def test_engine_choice_sets_the_scheduler_like_simulate() -> None:
    """The Engine menu (simulator/engines.py) hides the scheduler widgets, says what the engine resolves to, and
    the page runs the replica group `roofsim simulate --engine` builds; a scenario with an engine restores it."""
    from roofsim.app.dashboard.state.serving import sim_config
    from roofsim.simulator.config import ReplicaGroup

    cfg = sim_config(sv_engine="vllm==0.8")
    g = cfg.replicas[0]
    assert g == ReplicaGroup(model="Llama-3.1-8B", hardware="h100-sxm", engine="vllm==0.8", quant=g.quant)
    assert (g.scheduler.kind, g.scheduler.max_batched_tokens, g.prefix_caching) == ("sarathi", 2048, True)
    at = _app("2_Serving_what-if.py")
    at.selectbox(key="sv_engine").set_value("vllm").run()
    _no_traceback(at)
    assert any("vllm>=0.9,<1.0" in c.value and "token budget 8192" in c.value for c in at.caption)
    assert not [s for s in at.selectbox if s.key == "sv_scheduler"]
    assert _shown_config(at).replicas[0].engine == "vllm"
    custom = _scenario({"kind": "named", "name": "conversation", "rate_per_s": 2.0, "num_requests": 100},
                       engine="sglang", quant={"weight_dtype": "bf16", "activation_dtype": "bf16", "kv_dtype": "bf16"})
    at = _app("2_Serving_what-if.py")
    _restore(at, custom)
    assert not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="sv_engine").value == "sglang" and _shown_config(at) == custom
