"""Figure builders and the dashboard's pure helpers: roofs, ridge points, kernel points, bars, CDFs, errors."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from roofsim.app.cmd_estimate import estimate
from roofsim.app.common import Deployment, quant_from_args
from roofsim.app.dashboard.state.common import parse_metric
from roofsim.app.dashboard.state.step import StepConfig, roofs, step_metrics, step_view
from roofsim.app.figures import (
    ecdf,
    kernel_time_figure,
    latency_cdf_figure,
    marker_sizes,
    memory_figure,
    predicted_vs_measured_figure,
    roofline_figure,
)
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec
from roofsim.validation.profiles import resolve_calibration


@pytest.fixture(scope="module")
def view() -> dict:
    return step_view(StepConfig(hardware="h100-sxm", model="Llama-3.1-8B", batch=16, input_len=1024, output_len=256))


def test_h100_roofs_and_ridge_points_are_datasheet_ratios() -> None:
    r = {x["dtype"]: x for x in roofs(load_hardware("h100-sxm"))}
    # H100 SXM datasheet: 989.4 TFLOP/s dense bf16, 1978.9 fp8, 3.35 TB/s HBM3 -> ridges 295.3 and 590.7 FLOP/B (1978.9e12 / 3.35e12 = 590.716)
    assert set(r) == {"fp32", "tf32", "bf16", "fp16", "fp8", "int8"}  # no int4/fp4 on Hopper
    assert r["bf16"]["ridge_flops_per_byte"] == pytest.approx(989.4e12 / 3.35e12)
    assert r["bf16"]["ridge_flops_per_byte"] == pytest.approx(295.34, abs=0.01)
    assert r["fp8"]["ridge_flops_per_byte"] == pytest.approx(590.72, abs=0.01)


def test_roofline_figure_has_one_roof_per_dtype_and_every_flop_kernel(view: dict) -> None:
    fig = roofline_figure(view["roofs"], view["bandwidth_bytes_per_s"], view["kernels"])
    names = [t.name for t in fig.data]
    assert [n for n in names if n.endswith(" roof")] == [f"{d} roof" for d in ("fp32", "tf32", "bf16", "fp16",
                                                                               "fp8", "int8")]
    bf16 = next(t for t in fig.data if t.name == "bf16 roof")
    # the roof's knee is at the ridge point, flat at the peak afterwards, slope = bandwidth before
    assert bf16.x[1] == pytest.approx(989.4e12 / 3.35e12) and bf16.y[1] == bf16.y[2] == 989.4e12
    assert bf16.y[0] == pytest.approx(3.35e12 * bf16.x[0])
    ridge = next(t for t in fig.data if t.name == "bf16 ridge")
    assert ridge.x[0] == pytest.approx(295.34, abs=0.01)
    pts = [t for t in fig.data if t.name.endswith("kernels")]
    n_points = sum(len(t.x) for t in pts)
    assert n_points == sum(1 for k in view["kernels"] if k["flops"] > 0)
    assert {t.name for t in pts} == {"prefill kernels", "decode kernels"}
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_every_kernel_sits_under_its_roof(view: dict) -> None:
    """achieved = flops / time can never exceed min(peak(dtype), bandwidth x AI): a cost-model invariant."""
    hw = load_hardware("h100-sxm")
    bw = hw.memory.bandwidth_bytes_per_s
    for k in view["kernels"]:
        if k["flops"] <= 0 or k["kind"] in ("comm", "pp_comm"):
            continue
        peak = hw.peak(k["dtype"]) if k["kind"] in ("gemm", "attn_prefill", "attn_decode") else hw.peak("fp32")
        assert k["achieved_flops_per_s"] <= min(peak, bw * k["arithmetic_intensity"]) * (1 + 1e-9), k["name"]


def test_decode_gemms_are_memory_bound_and_prefill_gemms_compute_bound(view: dict) -> None:
    dec = [k for k in view["kernels"] if k["phase"] == "decode" and k["kind"] == "gemm" and k["name"] != "lm_head"]
    pre = [k for k in view["kernels"] if k["phase"] == "prefill" and k["kind"] == "gemm" and k["name"] != "lm_head"]
    assert dec and all(k["bound"] == "memory" for k in dec)
    assert pre and all(k["bound"] == "compute" for k in pre)
    # batch 16 decode: AI of a bf16 GEMM ~ 2*16*n*k / (2*n*k) = 16 FLOP/byte, far left of the 295 ridge
    assert all(10 < k["arithmetic_intensity"] < 20 for k in dec)


def test_marker_area_proportional_to_time() -> None:
    s = marker_sizes([1.0, 4.0, 0.0], smallest=0.0, largest=10.0)
    assert s == pytest.approx([5.0, 10.0, 0.0])  # sqrt(1)/sqrt(4) of the diameter -> 1/4 of the area
    assert marker_sizes([]) == []


def test_kernel_time_bars_add_up_to_the_step_minus_overhead(view: dict) -> None:
    fig = kernel_time_figure(view["kernels"])
    for phase in ("prefill", "decode"):
        bar = next(t for t in fig.data if t.name == phase)
        step = view[phase]
        assert sum(bar.x) * 1e-6 == pytest.approx(step["seconds"] - step["overhead_s"], rel=1e-9)


def test_memory_figure_stacks_to_the_device_capacity(view: dict) -> None:
    fig = memory_figure({"A": view["memory"]})
    total_gb = sum(t.x[0] for t in fig.data)
    # H100 SXM: the 81,559 MiB nvidia-smi reports (hardware_specs/gpus/h100-sxm.toml), in GB of 1e9 bytes
    assert total_gb == pytest.approx(81559 * 2**20 / 1e9)
    kv = next(t for t in fig.data if t.name == "KV cache")
    assert kv.x[0] == pytest.approx(view["memory"]["kv_capacity_bytes"] / 1e9)


def test_step_metrics_match_the_cli_estimate(view: dict) -> None:
    ns = argparse.Namespace(weight_dtype="bf16", activation_dtype="auto", kv_dtype="auto", group_size=128)
    hw = load_hardware("h100-sxm")
    cal, _ = resolve_calibration(None, hw)  # the dashboard and the CLI both use the GPU's shipped profile
    dep = Deployment(load_model("Llama-3.1-8B"), hw, quant_from_args(ns), ParallelSpec(), cal)
    ref = estimate(dep, 16, 1024, 256)
    shown = step_metrics(view)
    assert parse_metric(shown["TPOT"]) == pytest.approx(ref["tpot_s"] * 1e3, abs=5e-4)
    assert parse_metric(shown["TTFT"]) == pytest.approx(ref["ttft_s"] * 1e3, abs=5e-4)
    assert parse_metric(shown["Output throughput"]) == pytest.approx(16 / ref["tpot_s"], abs=0.05)
    # $/1M output tokens = price/h / 3600 / (tokens/s) * 1e6
    price = load_hardware("h100-sxm").price_usd_per_hour
    assert parse_metric(shown["$ / 1M output tokens"]) == pytest.approx(price / 3600 / (16 / ref["tpot_s"]) * 1e6,
                                                                        abs=5e-4)


@pytest.mark.parametrize("cfg, needle", [
    (StepConfig(tp=3), "tp=3 must divide"),
    (StepConfig(model="Llama-3.1-405B"), "does not fit"),
    (StepConfig(hardware="a100-sxm-80gb", weight_dtype="fp8", activation_dtype="fp8"), "no fp8"),
    (StepConfig(weight_dtype="fp4", activation_dtype="fp4"), "has no fp4"),
])
def test_impossible_configs_raise_user_errors(cfg: StepConfig, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        step_view(cfg)


def test_step_view_runs_the_checkpoint_format_and_says_so() -> None:
    fp8 = step_view(StepConfig(model="Qwen3-32B-FP8"))  # weights "checkpoint", the default
    assert (fp8["weight_dtype"], fp8["activation_dtype"]) == ("fp8", "fp8")
    assert fp8["quantisation"][0].startswith("FP8 block 128x128 from the checkpoint")
    # fp8 weights on a GPU without fp8 run weight-only (as the CLI), noted rather than refused
    a100 = step_view(StepConfig(hardware="a100-sxm-80gb", weight_dtype="fp8"))
    assert a100["activation_dtype"] == "bf16" and "no fp8 tensor cores" in a100["quantisation"][-1]
    assert step_view(StepConfig())["quantisation"] == []  # an unquantised checkpoint: bf16, nothing to say


def test_ecdf_and_cdf_figure() -> None:
    x, y = ecdf([3.0, 1.0, math.nan, 2.0])
    assert list(x) == [1.0, 2.0, 3.0] and list(y) == pytest.approx([1 / 3, 2 / 3, 1.0])
    fig = latency_cdf_figure({"a": np.arange(10_000, dtype=float)}, max_points=100)
    assert len(fig.data[0].x) <= 100 and fig.data[0].y[-1] == 1.0 and fig.data[0].x[-1] == 9999.0


def test_predicted_vs_measured_and_error_tables_are_metrics_err() -> None:
    from roofsim.app.dashboard.state.validation import overall_stats, stats_rows
    from roofsim.validation.metrics_err import error_stats

    with pytest.raises(ValueError, match="same length"):
        predicted_vs_measured_figure([1.0, 2.0], [1.0])
    recs = [{"group": "g", "measured_s": 1.0, "predicted_s": 1.0 + e, "rel_error": e} for e in (0.1, -0.3, 0.5, 0.0)]
    st = overall_stats(recs)
    # |errors| 10, 30, 50, 0 % -> MAPE 22.5, median 20; signed median (0 + 10) / 2 = 5
    assert st.n == 4 and st.mape == pytest.approx(22.5) and st.median_abs_pct_err == pytest.approx(20.0)
    assert st.bias_pct == pytest.approx(5.0)
    row = stats_rows({"g": error_stats([1.1, 0.7, 1.5, 1.0], [1.0] * 4)})[0]
    assert row == {"group": "g", "rows": 4, "median APE %": pytest.approx(20.0), "MAPE %": pytest.approx(22.5),
                   "P90 APE %": pytest.approx(44.0), "bias %": pytest.approx(5.0)}
    fig = predicted_vs_measured_figure([1e-3, 2e-3], [1.1e-3, 2e-3], groups=["a", "b"])
    assert {t.name for t in fig.data} >= {"y = x", "a", "b"}


def test_kernel_comparison_is_validation_predict(tmp_path) -> None:
    """The page's kernel predictions are validation.predict's: a GEMM, an RMSNorm and an all-reduce row, each equal
    to model.cost.kernel_cost of predict.row_kernel; the GEMM is no faster than its roofline bound 2 m n k / peak."""
    from roofsim.app.dashboard.state.validation import kernel_comparison
    from roofsim.model.cost import DEFAULT_CALIBRATION, kernel_cost
    from roofsim.validation.kernel_tables import read_kernel_tables
    from roofsim.validation.predict import row_kernel

    p = tmp_path / "k.csv"
    p.write_text("op,dtype,hardware,measured_s,m,n,k,tokens,hidden,message_bytes,num_gpus\n"
                 "gemm,bf16,h100-sxm,0.0002,4096,4096,4096,,,,\n"
                 "rmsnorm,bf16,h100-sxm,0.00001,,,,4096,4096,,\n"
                 "allreduce,bf16,h100-sxm,0.00005,,,,,,16777216,8\n"
                 "gemm,bf16,no-such-gpu,0.0002,64,64,64,,,,\n")
    rows = read_kernel_tables(p).rows
    pred, records, notes = kernel_comparison(rows, calibration="model defaults")
    hw = load_hardware("h100-sxm")
    assert [r["op"] for r in records] == ["gemm", "rmsnorm", "allreduce"]
    for rec, row in zip(records, rows[:3], strict=True):
        assert rec["predicted_s"] == pytest.approx(kernel_cost(row_kernel(row), hw, DEFAULT_CALIBRATION).seconds,
                                                   rel=1e-9)
    assert records[0]["predicted_s"] >= 2 * 4096**3 / 989.4e12
    assert len(notes) == 1 and "no-such-gpu" in notes[0]  # the unknown-hardware row is reported, not dropped


def test_serving_widgets_round_trip_techniques_through_toml(tmp_path) -> None:
    """Widget values -> SimConfig -> TOML (tomli-w) -> SimConfig -> widget values -> the same SimConfig."""
    from roofsim.app.dashboard.state.common import config_toml
    from roofsim.app.dashboard.state.serving import ARRIVAL_MODES, restore_scenario, sim_config
    from roofsim.simulator.config import SimConfig

    forms = [
        dict(sv_spec_drafter="eagle", sv_spec_k=3, sv_spec_acceptance="positional", sv_spec_rates="0.9, 0.8, 0.7",
             sv_spec_tree_width=2, sv_weight_dtype="fp8", sv_kv_dtype="fp8"),
        dict(sv_spec_drafter="draft_model", sv_spec_draft_model="Qwen3-0.6B", sv_model="Qwen3-8B",
             sv_spec_acceptance="beta", sv_spec_alpha=4.0, sv_spec_beta=2.0, sv_spec_adaptive_k=True, sv_spec_k_max=6),
        dict(sv_ee_kind="per_token", sv_ee_distribution="per_layer", sv_ee_probs="0.1, 0.2", sv_ee_batch_sync=False,
             sv_ee_kv_fill="recompute", sv_ee_exit_head="lm_head"),
        dict(sv_ee_kind="skipdecode", sv_ee_max_layers=30, sv_ee_min_layers=12, sv_ee_max_position=1024,
             sv_arrival_mode=ARRIVAL_MODES[1], sv_clients=12, sv_think_s=0.5, sv_ramp_first_token=True,
             sv_warmup_requests=2, sv_warmup_drain=False, sv_workload="code", sv_num_requests=300),
    ]
    for i, form in enumerate(forms):
        cfg = sim_config(form)
        path = tmp_path / f"s{i}.toml"
        path.write_text(config_toml(cfg))
        values, missing = restore_scenario(SimConfig.from_toml(path))
        assert missing == [] and sim_config(values) == cfg
    g = sim_config(forms[0]).replicas[0]
    assert g.speculative.acceptance.rates == (0.9, 0.8, 0.7) and g.speculative.tree_width == 2
    assert g.quant.weight_dtype == "fp8" and g.quant.kv_dtype == "fp8"
    wl = sim_config(forms[3]).workload
    assert wl.arrival.clients == 12 and wl.arrival.ramp_up_s == "first_token" and wl.arrival.warmup_requests == 2
    with pytest.raises(ValueError, match="exit weights"):
        sim_config(sv_ee_kind="per_token", sv_ee_weights="a, b")


def test_serving_config_is_the_hand_written_dict() -> None:
    """The default widgets build the config a user would write by hand (no quant table: the checkpoint's format,
    as the simulator resolves it)."""
    from roofsim.app.dashboard.state.serving import sim_config
    from roofsim.simulator.config import SimConfig

    assert sim_config() == SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "rate_per_s": 4.0, "num_requests": 1000},
        "replicas": [{"model": "Llama-3.1-8B", "hardware": "h100-sxm", "engine": "vllm"}],  # the default engine
        "slo": {"ttft_s": 1.0, "tpot_s": 0.1}, "seed": 0})
    trace = sim_config(sv_trace_path="t.csv", sv_rate_scale=2.0, sv_num_requests=50).workload
    assert (trace.kind, trace.path, trace.rate_scale, trace.max_requests) == ("trace", "t.csv", 2.0, 50)


def test_widget_option_lists_follow_the_config_unions() -> None:
    from roofsim.app.dashboard.state.serving import WIDGETS_BY_KEY

    assert WIDGETS_BY_KEY["sv_scheduler"].choices() == ["static", "vllm", "orca", "sarathi", "sjf"]
    assert WIDGETS_BY_KEY["sv_router"].choices() == ["round_robin", "least_outstanding", "least_kv", "power_of_two",
                                                     "prefix_aware", "sticky_session"]
    assert WIDGETS_BY_KEY["sv_spec_drafter"].choices() == ["off", "draft_model", "self", "layerskip", "medusa",
                                                           "eagle", "ngram"]
    assert WIDGETS_BY_KEY["sv_ee_kind"].choices() == ["off", "per_token", "skipdecode"]
    assert WIDGETS_BY_KEY["sv_trace_format"].choices()[0] == "auto"
    # a restored value outside the list is shown as itself, not replaced by the first option
    assert WIDGETS_BY_KEY["sv_model"].choices("meta-llama/Llama-3.1-8B")[-1] == "meta-llama/Llama-3.1-8B"


def test_plan_question_round_trips_and_equals_the_hand_written_spec() -> None:
    from roofsim.app.dashboard.state.capacity import plan_spec, restore_question
    from roofsim.simulator.planning import PlanSpec
    from roofsim.simulator.workload import NamedWorkload, TraceWorkload

    assert plan_spec() == PlanSpec(model="Llama-3.1-8B", workload=NamedWorkload(name="conversation"),
                                   rate_per_s=8.0, slo_ttft_s=1.0, slo_tpot_s=0.1,
                                   hardware=("h100-sxm", "a100-sxm-80gb"), tp=(1, 2), num_requests=200,
                                   tolerance=0.1)  # weights 'checkpoint' of an unquantised checkpoint = bf16
    spec = plan_spec(pl_source="upload a trace", pl_trace_path="t.csv", pl_max_gpus=4, pl_tp=[1, 16],
                     pl_objective="energy", pl_model="meta-llama/Llama-3.1-8B", pl_seed=2**40)
    assert spec.workload == TraceWorkload(path="t.csv") and spec.max_gpus == 4 and spec.tp == (1, 16)
    values, missing = restore_question(spec)
    # the trace itself has to be uploaded again: named, not dropped silently
    assert missing and all(m.startswith("workload.path") for m in missing)
    assert plan_spec(values, pl_trace_path="t.csv") == spec
    values, missing = restore_question(plan_spec(pl_max_gpus=0, pl_kv=["fp8", "auto"]))
    assert missing == [] and values["pl_max_gpus"] == 0 and values["pl_kv"] == ["fp8", "auto"]
    with pytest.raises(ValueError, match="pick at least one value for hardware"):
        plan_spec(pl_hardware=[])
