"""GEMMs through PyTorch's CPU kernels in `roofsim calibrate --local` (the optional torch extra): counted like the
numpy GEMMs, fitted into their own profile, bf16 peak in the HardwareSpec. Skipped when torch is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from roofsim.app.cli import main
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.validation.local import torch_gemm
from roofsim.validation.local.calibrate import torch_calibration_path_for
from roofsim.validation.profiles import read_calibration, read_profile_meta

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not torch_gemm.torch_available(), reason="the optional torch extra is not installed")]


def test_torch_gemms_count_flops_and_bytes_and_run() -> None:
    prep = torch_gemm.prepare_torch_gemms([(4, 64, 32)], ("fp32", "bf16"), 1, np.random.default_rng(0))
    assert [r.dtype for _, r in prep] == ["fp32", "bf16"]
    for fn, rec in prep:
        assert rec.flops == 2 * 4 * 64 * 32
        size = 4 if rec.dtype == "fp32" else 2
        assert rec.bytes == (4 * 32 + 32 * 64 + 4 * 64) * size
        assert tuple(fn().shape) == (4, 64)


def test_fp16_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="scalar fallback"):
        torch_gemm.prepare_torch_gemms([(4, 64, 32)], ("fp16",), 1, np.random.default_rng(0))


def test_calibrate_local_writes_a_torch_profile_and_bf16_peak(tmp_path: Path, capsys: pytest.CaptureFixture
                                                                ) -> None:
    hw_path = tmp_path / "cpu.toml"
    code = main(["calibrate", "--local", "--quick", "--local-model", "local-llama-tiny", "--out", str(hw_path),
                 "--folds", "3", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    t = out["torch"]
    assert t["version"] == torch_gemm.torch_version()
    assert set(t["held_out_median_abs_pct_err"]) == {"gemm/fp32/torch", "gemm/bf16/torch"}
    hw = load_hardware(str(hw_path))
    # above zero, below any CPU's bf16 rate (load only lowers it), and the figure the run reported
    assert 0 < hw.peak("bf16") < 1e13 and hw.peak("bf16") == pytest.approx(t["peak_flops_per_s"]["bf16"])
    path = torch_calibration_path_for(hw_path)
    assert Path(t["calibration_file"]) == path
    cal = read_calibration(path)
    assert cal.gemm_tile_m == t["gemm_tile_m"] and "torch" in cal.source
    assert read_profile_meta(path)["rows"] > 0
    # --no-torch: no torch rows, no bf16 peak, no torch profile
    other = tmp_path / "cpu2.toml"
    assert main(["calibrate", "--local", "--quick", "--local-model", "local-llama-tiny", "--out", str(other),
                 "--folds", "3", "--no-torch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["torch"] is None
    assert not torch_calibration_path_for(other).exists()
    assert "bf16" not in load_hardware(str(other)).peak_flops_per_s
