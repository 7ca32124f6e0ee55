"""Calibration: recovers known parameters from synthetic data, honest held-out error, profile files, transfer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import Calibration, kernel_cost
from roofsim.validation.calibrate import (
    FROZEN_GPU_FIELDS,
    HOST_FIELDS,
    calibrate,
    cross_validate,
    fit_calibration,
    fit_loss,
    fitted_fields,
    prepare,
    shape_family,
)
from roofsim.validation.kernel_tables import KernelMeasurement, read_aiconfigurator
from roofsim.validation.predict import row_kernel
from roofsim.validation.profiles import profile_for, read_calibration, read_profile_meta, write_calibration

TRUE = Calibration(gemm_eff=0.62, gemm_k_half=300.0, gemm_mem_eff=0.7, attn_prefill_eff=0.4,
                   attn_prefill_s_half=200.0, attn_prefill_tile=128.0, attn_softmax_flops=200.0,
                   attn_prefill_mem_eff=0.45, attn_prefill_fill_half=0.5, attn_prefill_cta_s=1e-6,
                   attn_decode_mem_eff=0.55, attn_decode_unit_s=1.5e-6, attn_decode_unit_bytes_per_s=3e11,
                   attn_decode_units_per_sm=1.0,
                   kernel_overhead_s=6e-6, gemm_overhead_s=3e-6, attn_prefill_overhead_s=1.2e-5,
                   attn_decode_overhead_s=9e-6, comm_bw_eff=0.15, comm_latency_s=1.5e-5)


def _synthetic_rows() -> list[KernelMeasurement]:
    from roofsim.hardware_specs.catalog import load_hardware

    hw = load_hardware("h100-sxm")
    rows = []
    for m in (1, 8, 64, 256, 1024, 4096, 16384):
        for n, k in ((4096, 4096), (1024, 8192), (14336, 4096), (4096, 14336), (512, 64), (8192, 256)):
            rows.append(KernelMeasurement("synth", "h100-sxm", "f", "gemm", "bf16", "", 1.0, m=m, n=n, k=k))
    for b in (1, 4, 16):
        for s in (64, 512, 2048, 8192):
            for h, kv in ((32, 8), (16, 16), (64, 8)):
                for d in (64, 128):  # two head dims separate the per-score softmax work from the efficiency
                    rows.append(KernelMeasurement("synth", "h100-sxm", "f", "attn_prefill", "bf16", "", 1.0,
                                                  batch=b, seq_len=s, num_heads=h, num_kv_heads=kv, head_dim=d))
                rows.append(KernelMeasurement("synth", "h100-sxm", "f", "attn_decode", "bf16", "", 1.0,
                                              batch=b * 16, seq_len=1, ctx_len=s, num_heads=h, num_kv_heads=kv,
                                              head_dim=128))
    for b in (1, 4, 16):  # chunked prefill over a long cached context: KV reads bind (attn_prefill_mem_eff)
        for s, c in ((16, 16384), (64, 32768), (32, 65536)):
            rows.append(KernelMeasurement("synth", "h100-sxm", "f", "attn_prefill", "bf16", "", 1.0, batch=b,
                                          seq_len=s, ctx_len=c, num_heads=8, num_kv_heads=8, head_dim=128))
    for b in (1, 4):  # sliding-window rows: the window's edge tiles identify attn_prefill_tile (for full causal
        for s in (512, 2048, 8192):  # attention its T/s share has the same form as attn_prefill_s_half)
            for w in (128, 1024):
                rows.append(KernelMeasurement("synth", "h100-sxm", "f", "attn_prefill", "bf16", "", 1.0, batch=b,
                                              seq_len=s, num_heads=32, num_kv_heads=8, head_dim=128, window=w))
    for g in (2, 4, 8):
        for e in range(10, 30, 2):
            rows.append(KernelMeasurement("synth", "h100-sxm", "f", "allreduce", "bf16", "", 1.0,
                                          message_bytes=float(2**e), num_gpus=g))
    # "measured" = the model under TRUE, so a correct fit recovers TRUE
    out = []
    for r in rows:
        t = kernel_cost(row_kernel(r), hw, TRUE).seconds
        out.append(KernelMeasurement(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "measured_s": t}))
    return out


def test_fit_recovers_known_parameters() -> None:
    data, problems = prepare(_synthetic_rows(), Calibration())
    assert problems == ()
    # every knob, the frozen GPU ones too: the fitter recovers them when the rows pin them (synthetic data does)
    # the decode work-unit shape knobs need several GPUs' tables to pin (36 H100 rows here): held at TRUE's values
    held = {"attn_decode_eff", "attn_decode_unit_bytes_per_s", "attn_decode_units_per_sm", "attn_decode_split_tokens",
            "attn_decode_split_s", "attn_decode_l2_gain", "attn_decode_l2_frac", "attn_decode_cuda_group",
            "attn_decode_cuda_eff"}
    fields = tuple(f for f in fitted_fields(data, extra=FROZEN_GPU_FIELDS) if f not in held)
    cal = fit_calibration(data, TRUE.model_copy(update={f: getattr(Calibration(), f) for f in fields}), fields=fields)
    for f in ("gemm_eff", "gemm_mem_eff", "attn_prefill_eff", "attn_prefill_mem_eff", "attn_decode_mem_eff", "gemm_overhead_s",
              "attn_prefill_overhead_s", "attn_decode_overhead_s", "comm_bw_eff", "comm_latency_s"):
        assert getattr(cal, f) == pytest.approx(getattr(TRUE, f), rel=0.03), f
    for f in ("gemm_k_half", "attn_prefill_s_half", "attn_decode_unit_s", "attn_prefill_tile",
              "attn_softmax_flops", "attn_prefill_fill_half", "attn_prefill_cta_s"):
        assert getattr(cal, f) == pytest.approx(getattr(TRUE, f), rel=0.10), f


def test_frozen_gpu_knob_keeps_its_base_value_when_its_parent_is_fitted() -> None:
    """gemm_overhead_s is frozen on GPU rows; kernel_overhead_s (its inheritance parent) is fitted on elementwise rows.
    The profile must keep the value the GEMM fit held (the base), not copy the elementwise fixed cost."""
    hw_rows = [r for r in _synthetic_rows() if r.op == "gemm"]
    elem = [KernelMeasurement("synth", "h100-sxm", "f", "rmsnorm", "fp16", "", 5e-5, tokens=t, hidden=4096)
            for t in (1, 64, 512, 4096)]
    base = Calibration()
    data, problems = prepare(hw_rows + elem, base)
    assert problems == ()
    fields = fitted_fields(data)
    assert "kernel_overhead_s" in fields and "gemm_overhead_s" not in fields
    cal = fit_calibration(data, base, fields=fields)
    assert cal.kernel_overhead_s != base.kernel_overhead_s
    assert cal.gemm_overhead_s == base.gemm_overhead_s


def test_block_scaled_fixed_cost_eager_floor_and_efficiency_are_recovered() -> None:
    """Graphed fp8_block rows (TRT-LLM) pin gemm_overhead_s_fp8_block, eager ones (vLLM) gemm_eager_floor_s; the
    block-scaled recipe's own efficiency gemm_eff_fp8_block is fitted apart from per-tensor fp8's."""
    from dataclasses import replace

    from roofsim.hardware_specs.catalog import load_hardware

    hw = load_hardware("h100-sxm")
    truth = Calibration(gemm_eff_fp8=0.55, gemm_eff_fp8_block=0.45, gemm_overhead_s_fp8=1.2e-5,
                        gemm_overhead_s_fp8_block=4.5e-6, gemm_eager_floor_s=9e-5)
    rows = []
    for m in (1, 16, 128, 1024, 4096, 16384):
        for n, k in ((4096, 4096), (7168, 2048), (1536, 7168), (24576, 1536)):
            for fw, dt, var in (("trtllm", "fp8", "torch_flow; gemm_dtype=fp8; v"),
                                ("trtllm", "fp8", "torch_flow; gemm_dtype=fp8_block; v"),
                                ("vllm", "fp8", "DeepGemm; gemm_dtype=fp8_block; v")):
                r = KernelMeasurement("aiconfigurator", "h100-sxm", fw, "gemm", dt, var, 1.0, m=m, n=n, k=k)
                rows.append(replace(r, measured_s=kernel_cost(row_kernel(r), hw, truth).seconds))
    data, problems = prepare(rows, Calibration())
    assert problems == ()
    fields = fitted_fields(data)
    assert {"gemm_eff_fp8", "gemm_eff_fp8_block", "gemm_overhead_s_fp8", "gemm_overhead_s_fp8_block",
            "gemm_eager_floor_s"} <= set(fields)
    cal = fit_calibration(data, Calibration(gemm_eff=0.75), fields=fields)
    assert cal.gemm_eff_fp8 == pytest.approx(0.55, rel=1e-3)
    assert cal.gemm_eff_fp8_block == pytest.approx(0.45, rel=1e-3)
    assert cal.gemm_overhead_s_fp8_block == pytest.approx(4.5e-6, rel=1e-3)
    assert cal.gemm_eager_floor_s == pytest.approx(9e-5, rel=1e-3)
    # without eager rows the floor is not fitted; with only eager fp8_block rows their fixed cost is not either
    graphed = [r for r in rows if r.framework == "trtllm"]
    assert "gemm_eager_floor_s" not in fitted_fields(prepare(graphed, Calibration())[0])
    eager = [r for r in rows if r.framework == "vllm"]
    assert "gemm_overhead_s_fp8_block" not in fitted_fields(prepare(eager, Calibration())[0])


def test_calibrate_reports_in_sample_and_held_out_on_synthetic_data() -> None:
    res = calibrate(_synthetic_rows(), "h100-sxm", folds=3, extra=FROZEN_GPU_FIELDS)
    assert res.held_out_overall.median_abs_pct_err < 1.0  # the model family contains the truth
    assert set(res.held_out) == set(res.in_sample) == {"gemm/bf16/f", "attn_prefill/bf16/f",
                                                       "attn_decode/bf16/f", "allreduce/bf16/f"}


def test_shape_families_hold_out_whole_weight_shapes() -> None:
    a = KernelMeasurement("s", "h", "f", "gemm", "bf16", "", 1.0, m=1, n=4096, k=512)
    b = KernelMeasurement("s", "h", "f", "gemm", "bf16", "", 1.0, m=8192, n=4096, k=512)
    c = KernelMeasurement("s", "h", "f", "gemm", "bf16", "", 1.0, m=1, n=4096, k=1024)
    assert shape_family(a) == shape_family(b) != shape_family(c)


def test_held_out_error_not_below_in_sample_on_real_gemms(shared_data: Path) -> None:
    root = shared_data / "kernels" / "aiconfigurator"
    rows = read_aiconfigurator(root, systems=["a100_sxm"], families=["gemm"], frameworks=["vllm"]).rows
    rows = [r for r in rows if r.dtype == "bf16"][::4]
    base = Calibration(hardware="a100-sxm-80gb")
    data, _ = prepare(rows, base)
    assert len(data.measured) == len(rows) > 1000
    # every row enters the final fit (cap > rows), so in-sample is the minimum of the fitted objective
    cal = fit_calibration(data, base, max_rows_per_key=10_000)
    in_sample = data.features.seconds(cal)
    held_out = cross_validate(data, base, folds=4, max_rows_per_key=10_000)
    assert fit_loss(held_out, data.measured) > fit_loss(in_sample, data.measured)
    # and the shape-family folds really hold out: the out-of-fold predictions differ from the in-sample ones
    assert not np.allclose(held_out, in_sample, rtol=1e-6)


def test_profile_round_trip(tmp_path: Path) -> None:
    cal = Calibration(name="x", hardware="h100-sxm", gemm_eff=0.71234, kernel_overhead_s=3.3e-6, source='a "q"')
    meta = {"sources": ["a/b.parquet"], "rows": 12, "held_out": {"gemm/bf16/trtllm": {"n": 3, "mape": 4.5}}}
    p = write_calibration(cal, tmp_path / "p.toml", meta)
    assert read_calibration(p) == cal
    assert read_profile_meta(p)["held_out"]["gemm/bf16/trtllm"] == {"n": 3, "mape": 4.5}


def test_profile_schema_version_written_old_read_newer_refused(tmp_path: Path) -> None:
    from roofsim.validation.profiles import PROFILE_SCHEMA_VERSION

    p = write_calibration(Calibration(gemm_eff=0.6), tmp_path / "p.toml")
    assert p.read_text().count(f"schema_version = {PROFILE_SCHEMA_VERSION}\n") == 1
    old = tmp_path / "old.toml"  # version 1: no schema_version field, same [calibration] table
    old.write_text("[calibration]\ngemm_eff = 0.6\n")
    assert read_calibration(old).gemm_eff == 0.6
    for bad in (PROFILE_SCHEMA_VERSION + 1, 0, '"2"'):
        new = tmp_path / "new.toml"
        new.write_text(f"schema_version = {bad}\n[calibration]\ngemm_eff = 0.6\n")
        with pytest.raises(InputError, match=r"new\.toml: schema_version=.*rebuild it with scripts/build_profiles"):
            read_calibration(new)
    # the message names the version found
    new.write_text(f"schema_version = {PROFILE_SCHEMA_VERSION + 1}\n[calibration]\n")
    with pytest.raises(InputError, match=rf"schema_version={PROFILE_SCHEMA_VERSION + 1} is not"):
        read_calibration(new)
    # every shipped profile is of the current version (scripts/build_profiles.py writes it; version 4 adds the
    # optional [e2e] table, which scripts/validate_e2e.py --store-e2e-term fills)
    from roofsim.validation.profiles import shipped_profiles

    assert shipped_profiles()
    for stem, path in shipped_profiles().items():
        text = path.read_text()
        assert f"\nschema_version = {PROFILE_SCHEMA_VERSION}\n" in text, stem


def test_schema4_profile_is_migrated(tmp_path: Path) -> None:
    """Schema 5 prices per-tensor fp8 on Hopper against the architecture's ceiling (FP8_ARCH_PEAK_FRACTION) and
    the prefill attention fixed cost in cycles: a version-4 profile is re-expressed so its own GPU's kernels cost the
    same; other GPUs' fp8 reads unchanged; a value above the ceiling is refused, naming the file."""
    from roofsim.model.cost import FP8_ARCH_PEAK_FRACTION

    frac = FP8_ARCH_PEAK_FRACTION["hopper"]
    assert frac == pytest.approx(1550.0 / 1978.9)
    old = tmp_path / "h100.toml"
    old.write_text('schema_version = 4\n[calibration]\nhardware = "h100-sxm"\ngemm_eff_fp8 = 0.49\n')
    assert read_calibration(old).gemm_eff_fp8 == pytest.approx(0.49 / frac)
    a100 = tmp_path / "a100.toml"
    a100.write_text('schema_version = 4\n[calibration]\nhardware = "a100-sxm-80gb"\ngemm_eff_fp8 = 0.49\n')
    assert read_calibration(a100).gemm_eff_fp8 == 0.49
    # the prefill attention fixed cost was seconds, is cycles at COMM_REF_CLOCK_HZ: the A100's 1.41 GHz boost
    a100.write_text('schema_version = 4\n[calibration]\nhardware = "a100-sxm-80gb"\nattn_prefill_overhead_s = 3e-6\n')
    assert read_calibration(a100).attn_prefill_overhead_s == pytest.approx(3e-6 * 1.41e9 / 1.83e9)
    new = tmp_path / "h100-new.toml"
    new.write_text('schema_version = 5\n[calibration]\nhardware = "h100-sxm"\ngemm_eff_fp8 = 0.49\n')
    assert read_calibration(new).gemm_eff_fp8 == 0.49
    old.write_text('schema_version = 4\n[calibration]\nhardware = "h100-sxm"\ngemm_eff_fp8 = 0.9\n')
    with pytest.raises(InputError, match=r"h100\.toml: schema_version 4 profile of h100-sxm: its gemm_eff_fp8"):
        read_calibration(old)


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        write_calibration(Calibration(), tmp_path / "p.toml", {"rows": 1})
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_old_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write_calibration(Calibration(gemm_eff=0.5), tmp_path / "p.toml")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_calibration(Calibration(gemm_eff=0.9), p)
    assert read_calibration(p).gemm_eff == 0.5
    assert [x.name for x in tmp_path.iterdir()] == ["p.toml"]


def test_read_calibration_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[calibration]\ngemm_eff = 1.5\n")
    with pytest.raises(InputError, match=r"bad\.toml.*field gemm_eff"):
        read_calibration(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[calibration]\ngemm_efff = 0.5\n")
    with pytest.raises(InputError, match="gemm_efff"):
        read_calibration(typo)
    with pytest.raises(InputError, match="not found"):
        read_calibration(tmp_path / "none.toml")
    (tmp_path / "empty.toml").write_text("x = 1\n")
    with pytest.raises(InputError, match=r"missing \[calibration\]"):
        read_calibration(tmp_path / "empty.toml")


def test_profile_for_transfers_architecture_family() -> None:
    h100 = profile_for("h100-sxm")
    assert h100.hardware == "h100-sxm" and h100.name == "h100-sxm"
    h200 = profile_for("h200-sxm")  # hopper, no measurements: the H100 efficiencies, relabelled
    assert h200.hardware == "h200-sxm" and "transferred from profile h100-sxm" in h200.source
    assert (h200.gemm_eff, h200.attn_decode_mem_eff) == (h100.gemm_eff, h100.attn_decode_mem_eff)
    l40s = profile_for("l40s")  # ada -> A100 profile
    assert l40s.gemm_eff == profile_for("a100-sxm-80gb").gemm_eff
    assert profile_for("cpu-generic").gemm_eff == Calibration().gemm_eff  # no GPU profile applies
    assert np.isfinite(profile_for("h100-sxm", framework="trtllm").gemm_eff)


def test_opt_in_fields_are_fitted_only_when_asked_and_recovered_on_synthetic_cpu_rows() -> None:
    from roofsim.hardware_specs.catalog import load_hardware
    from roofsim.validation.calibrate import OPT_IN_FIELDS, fitted_fields

    hw = load_hardware("cpu-generic")
    truth = Calibration(gemm_gemv_max_m=1, gemm_tile_m=1, gemm_tile_menu=(), gemm_eff=0.9, gemm_mem_eff=0.2, gemm_gemv_mem_eff=0.6,
                        gemm_overlap_loss=0.8, elementwise_mem_eff=0.5, kernel_overhead_s=2e-6,
                        elementwise_norm_passes=4.7, elementwise_act_passes=3.2, elementwise_cache_gain=2.5,
                        elementwise_cache_bytes=8e6, elementwise_norm_cache_gain=1.3, elementwise_act_cache_gain=1.8)
    rows = [KernelMeasurement("synth", "cpu-generic", "numpy", "gemm", "fp32", "", 1.0, m=m, n=n, k=k)
            for m in (1, 2, 4, 16, 64, 256) for n, k in ((768, 768), (2048, 768), (768, 2048))]
    rows += [KernelMeasurement("synth", "cpu-generic", "numpy", op, "fp32", "", 1.0, tokens=t, hidden=h)
             for t in (2 ** i for i in range(4, 15)) for op, h in (("rmsnorm", 768), ("silu_mul", 2048),
                                                                  ("add", 768))]
    rows = [KernelMeasurement(**{**{f: getattr(r, f) for f in r.__dataclass_fields__},
                                 "measured_s": kernel_cost(row_kernel(r), hw, truth).seconds}) for r in rows]
    base = truth.model_copy(update={"gemm_mem_eff": 0.8, "gemm_gemv_mem_eff": 0.8, "elementwise_norm_passes": 3.5,
                                    "elementwise_act_passes": 4.0, "elementwise_cache_gain": 2.0,
                                    "elementwise_cache_bytes": 4e6, "elementwise_norm_cache_gain": 2.0,
                                    "elementwise_act_cache_gain": 2.0})
    data, problems = prepare(rows, base)
    assert problems == ()
    assert not set(OPT_IN_FIELDS) & set(fitted_fields(data))  # GPU tables: never fitted unless asked
    fields = fitted_fields(data, extra=OPT_IN_FIELDS)
    rope = {"elementwise_rope_passes", "elementwise_rope_cache_gain"}  # no rope rows: not fitted
    assert set(OPT_IN_FIELDS) - rope <= set(fields) and not rope & set(fields) and "gemm_gemv_mem_eff" in fields
    cal = fit_calibration(data, base, fields=fields)
    for f in ("gemm_mem_eff", "gemm_gemv_mem_eff", "elementwise_norm_passes", "elementwise_act_passes",
              "elementwise_cache_gain", "elementwise_cache_bytes", "elementwise_norm_cache_gain",
              "elementwise_act_cache_gain"):
        assert getattr(cal, f) == pytest.approx(getattr(truth, f), rel=0.05), f


def test_host_floor_is_fitted_in_a_gpu_profile_from_eager_rows_only() -> None:
    """comm_floor_s (HOST_FIELDS) stays frozen in the GPU fit but `calibrate` fits it where eager engine
    all-reduce rows pin it (the flat part of the eager curve), and leaves it alone without eager rows."""
    assert "comm_floor_s" in HOST_FIELDS and "comm_floor_s" in FROZEN_GPU_FIELDS
    truth = Calibration(comm_floor_s=4.5e-5, comm_latency_s=4e-6, comm_bw_eff=0.25)
    hw = load_hardware("a100-sxm-80gb")
    rows = []
    for variant in ("custom_graph; vllm_graph", "custom_eager; vllm_eager"):
        for g in (2, 4, 8):
            for e in range(10, 25, 2):
                r = KernelMeasurement("synth", hw.id, "vllm", "allreduce", "bf16", variant, 1.0,
                                      message_bytes=float(2**e), num_gpus=g)
                rows.append(KernelMeasurement(**{**{f: getattr(r, f) for f in r.__dataclass_fields__},
                                                 "measured_s": kernel_cost(row_kernel(r), hw, truth).seconds}))
    base = Calibration(comm_floor_s=3e-5)
    res = calibrate(rows, hw.id, base=base, folds=0)
    assert "comm_floor_s" in res.fields
    assert res.calibration.comm_floor_s == pytest.approx(4.5e-5, rel=0.02)
    graphed = [r for r in rows if "graph" in r.variant]
    res = calibrate(graphed, hw.id, base=base, folds=0)
    assert "comm_floor_s" not in res.fields and res.calibration.comm_floor_s == 3e-5


def test_weight_only_gemm_rows_are_predicted_but_not_fitted() -> None:
    """W4A16 rows (engine dequantising kernels, slower than the model's) must not drag the 16-bit knobs: they form
    family gemm_wo, which no fit stage moves; a table of only such rows fits no GEMM knob."""
    from dataclasses import replace

    from roofsim.hardware_specs.catalog import load_hardware

    hw = load_hardware("a100-sxm-80gb")
    truth = Calibration(gemm_eff=0.6)
    rows = []
    for m in (16, 256, 4096):
        for var, dt, slow in (("x; gemm_dtype=bfloat16; v", "bf16", 1.0), ("x; gemm_dtype=int4_wo; v", "int4", 3.0)):
            r = KernelMeasurement("aiconfigurator", hw.id, "trtllm", "gemm", dt, var, 1.0, m=m, n=4096, k=4096)
            rows.append(replace(r, measured_s=slow * kernel_cost(row_kernel(r), hw, truth).seconds))
    data, problems = prepare(rows, Calibration())
    assert problems == ()
    assert sorted(set(data.family.tolist())) == ["gemm", "gemm_wo"]
    cal = fit_calibration(data, Calibration(), fields=("gemm_eff",))
    assert cal.gemm_eff == pytest.approx(0.6, rel=1e-3)  # the 3x slower int4_wo rows do not pull it down
    wo = [r for r in rows if r.dtype == "int4"]
    assert "gemm_eff" not in fitted_fields(prepare(wo, Calibration())[0])
