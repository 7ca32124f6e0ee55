"""`roofsim validate kernels` and `roofsim calibrate` end to end on small generic CSVs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roofsim.app.cli import main
from roofsim.validation.profiles import read_calibration, read_profile_meta

CSV = """op,dtype,hardware,measured_s,m,n,k,message_bytes,num_gpus,framework
gemm,bf16,h100-sxm,0.00021,4096,4096,4096,0,0,trtllm
gemm,bf16,h100-sxm,0.00002,16,4096,4096,0,0,trtllm
allreduce,bf16,h100-sxm,2.1e-5,0,0,0,1048576,8,nccl
gemm,bf16,mi210,0.00021,4096,4096,4096,0,0,trtllm
"""
STATS = {"n", "median_abs_pct_err", "mape", "p90_abs_pct_err", "bias_pct"}


def test_validate_kernels_json_structure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "k.csv"
    f.write_text(CSV)
    assert main(["validate", "kernels", str(f), "--json", "--report", str(tmp_path / "r.html")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"by_op", "overall", "by_hardware", "problems", "notes", "rows_read", "rows_predicted",
                        "calibration"}
    assert set(out["by_op"]) == {"gemm/bf16/trtllm", "allreduce/bf16/nccl"}
    assert all(set(v) == STATS for v in out["by_op"].values())
    assert out["by_op"]["gemm/bf16/trtllm"]["n"] == 2 and out["overall"]["n"] == 3
    assert set(out["by_hardware"]) == {"h100-sxm"}
    assert (out["rows_read"], out["rows_predicted"]) == (4, 3)
    assert out["calibration"] == "shipped (each row's GPU: shipped or transferred profile)"
    assert len(out["problems"]) == 1 and "mi210" in out["problems"][0] and "line 5" in out["problems"][0]
    html = (tmp_path / "r.html").read_text()
    assert "<script src=" not in html and "Plotly" in html and "y = x" in html  # JS inlined: works offline


def test_validate_kernels_hardware_filter_and_max_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "k.csv"
    f.write_text(CSV)
    assert main(["validate", "kernels", str(f), "--json", "--hardware", "h100", "--max-rows", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["notes"] and "2 of 4" in out["notes"][0]
    assert out["rows_predicted"] + sum(int(p.split(" row")[0]) for p in out["problems"]) == 2


def test_validate_kernels_text_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "k.csv"
    f.write_text(CSV)
    assert main(["validate", "kernels", str(f)]) == 0
    text = capsys.readouterr().out
    assert "h100-sxm  gemm/bf16/trtllm" in text and "3 of 4 rows predicted" in text


def test_missing_column_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("op,dtype,measured_s\ngemm,bf16,1e-3\n")
    assert main(["validate", "kernels", str(f), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roofsim: error: ") and "missing required column(s) ['hardware']" in err


def test_unknown_hardware_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "k.csv"
    f.write_text(CSV)
    assert main(["validate", "kernels", str(f), "--hardware", "h900"]) == 2
    assert "roofsim: error: unknown hardware 'h900'" in capsys.readouterr().err
    assert main(["calibrate", "--hardware", "tpu9", str(f), "--out", str(tmp_path / "p.toml")]) == 2
    assert "unknown hardware 'tpu9'" in capsys.readouterr().err
    assert not (tmp_path / "p.toml").exists()


def test_calibrate_writes_profile_with_fit_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["op,dtype,hardware,measured_s,m,n,k,framework"]
    for n, k in ((1024, 1024), (4096, 4096), (2048, 8192), (8192, 2048), (512, 512), (3072, 1024)):
        for m in (1, 64, 512, 4096):
            t = 2 * m * n * k / (989.4e12 * 0.6) + 5e-6
            lines.append(f"gemm,bf16,h100-sxm,{t},{m},{n},{k},x")
    f = tmp_path / "g.csv"
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "prof.toml"
    assert main(["calibrate", "--hardware", "h100-sxm", str(f), "--out", str(out), "--folds", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"profile", "calibration", "fit", "problems"}
    assert set(res["fit"]["held_out"]) == {"gemm/bf16/x"}
    cal = read_calibration(out)
    assert cal.name == "prof" and cal.hardware == "h100-sxm"
    meta = read_profile_meta(out)
    assert meta["rows"] == 24 and meta["folds"] == 3 and "held_out" in meta and "in_sample" in meta
    # the profile is usable by validate
    assert main(["validate", "kernels", str(f), "--calibration", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration"] == str(out)
