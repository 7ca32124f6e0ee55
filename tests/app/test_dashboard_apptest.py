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
