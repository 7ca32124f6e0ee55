"""Every dashboard page driven headless with streamlit.testing AppTest: set widgets, run, check the shown numbers
against the cost model computed independently (app.cmd_estimate.estimate), and check bad input shows st.error."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.cmd_estimate import estimate
from app.common import Deployment, quant_from_args
from app.dashboard_state import parse_metric
from hardware_specs.catalog import load_hardware
from model.loader import load_model
from model.spec import ParallelSpec

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
    dep = Deployment(load_model(model), load_hardware(hw), quant_from_args(ns), ParallelSpec(tp=tp), None)
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
    assert len(step.get("plotly_chart")) >= 3  # roofline, kernel times, memory


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
    ("weight_dtype", "fp4", "has no fp4"),
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


def test_validation_upload_of_a_generic_kernel_csv_is_predicted() -> None:
    at = _app("3_Validation.py")
    at.selectbox(key="source").set_value("Upload a file").run()
    csv = (b"op,dtype,hardware,measured_s,m,n,k\n"
           b"gemm,bf16,h100-sxm,0.0002,4096,4096,4096\n"
           b"gemm,bf16,h100-sxm,0.0001,1,4096,4096\n"
           b"rmsnorm,bf16,h100-sxm,0.00001,,,\n")
    at.file_uploader(key="upload").set_value(("mine.csv", csv, "text/csv")).run()
    _no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    assert _metric(at, "Rows compared") == 2
    from app.dashboard_state import predict_gemm_s

    hw = load_hardware("h100-sxm")
    errs = [abs(predict_gemm_s(4096, 4096, 4096, "bf16", hw) - 2e-4) / 2e-4,
            abs(predict_gemm_s(1, 4096, 4096, "bf16", hw) - 1e-4) / 1e-4]
    assert _metric(at, "MAPE") == pytest.approx(100 * sum(errs) / 2, abs=0.05)


@pytest.mark.parametrize("kind, name, data, needle", [
    ("Kernel table", "broken.csv", b"\x00\xff garbage without a header\n1,2\n", "cannot detect the kernel table format"),
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
    assert _metric(at, "Rows compared") == 4000  # 35,280 measured GEMMs evenly subsampled to the default 4,000
    assert 0 < _metric(at, "MAPE") < 100


# ------------------------------------------------------------------------------------------ home, placeholder


def test_home_and_capacity_placeholder_render() -> None:
    home = _app("Home.py")
    assert "what-if dashboard" in home.title[0].value
    cap = _app("4_Capacity_planning.py")
    assert cap.info and "Coming with the capacity-planning issue" in cap.info[0].value


# ------------------------------------------------------------------------------------------ serving what-if

SERVING_N = 300


def _serving_reference(count: int = 1) -> dict:
    """The same run straight through the simulator, config written by hand (not via the dashboard's helpers)."""
    from simulator.config import SimConfig
    from simulator.run import simulate

    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "rate_per_s": 4.0, "num_requests": SERVING_N},
        "replicas": [{"model": "Llama-3.1-8B", "hardware": "h100-sxm", "count": count,
                      "quant": {"weight_dtype": "bf16", "activation_dtype": "bf16", "kv_dtype": "bf16"}}],
        "slo": {"ttft_s": 1.0, "tpot_s": 0.1}, "seed": 0})
    return simulate(cfg).summary


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


def test_scenario_toml_restores_the_widgets() -> None:
    from app.dashboard_state import ServingForm, sim_config

    toml = sim_config(ServingForm(model="Qwen3-8B", hardware="a100-sxm-80gb", scheduler="sarathi", chunk_size=256,
                                  count=3, rate_per_s=2.5, num_requests=200)).to_toml()
    at = _app("2_Serving_what-if.py")
    at.file_uploader(key="restore").set_value(("s.toml", toml.encode(), "application/toml")).run()
    _no_traceback(at)
    assert at.selectbox(key="sv_model").value == "Qwen3-8B"
    assert at.selectbox(key="sv_scheduler").value == "sarathi"
    assert at.number_input(key="sv_chunk_size").value == 256
    assert at.number_input(key="sv_count").value == 3
    assert at.number_input(key="sv_rate_per_s").value == 2.5
    # the download offers the same TOML back
    assert "chunk_size = 256" in at.code[0].value and 'model = "Qwen3-8B"' in at.code[0].value


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
