"""`roofsim estimate` / `roofsim list`: JSON keys and values, and clean errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from roofsim.app.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "estimate", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--hardware", "H100",
                       "--batch", "8", "--input-len", "1024", "--output-len", "256", "--json")
    assert code == 0
    r = json.loads(out)
    for key in ("ttft_s", "tpot_s", "output_tokens_per_s", "kernels", "memory"):
        assert key in r
    assert r["output_tokens_per_s"] == pytest.approx(8 / r["tpot_s"])
    assert 0.004 < r["tpot_s"] < 0.02
    assert r["memory"]["kv_bytes_per_token"] == 131072
    assert {"name", "flops", "bytes", "seconds", "bound"} <= set(r["kernels"][0])
    decode = [k for k in r["kernels"] if k["phase"] == "decode"]
    assert sum(k["seconds"] for k in decode) == pytest.approx(r["tpot_s"] - r["decode"]["overhead_s"])


def test_estimate_text_has_kernel_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "estimate", "--model", "qwen3-8b", "--hardware", "a100-80gb", "--batch", "4")
    assert code == 0
    assert "mlp_up_gate" in out and "attn_decode" in out and "largest batch" in out


def test_unknown_model_lists_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "estimate", "--model", "llama-3.1-8", "--hardware", "h100")
    assert code == 2
    assert "unknown model 'llama-3.1-8'" in err and "llama-3.1-8b" in err
    assert "Traceback" not in err


def test_model_that_does_not_fit_exits_nonzero_with_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "estimate", "--model", "llama-3.1-405b", "--hardware", "h100-sxm", "--tp", "8")
    assert code == 2
    assert "does not fit" in err and "weights" in err and "would fit" in err


def test_impossible_layout_and_missing_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "estimate", "--model", "llama-3.1-8b", "--hardware", "h100", "--tp", "3")
    assert code == 2 and "tp=3 must divide num_heads=32" in err
    code, _, err = run(capsys, "estimate", "--model", "llama-3.1-8b", "--hardware", "a100-80gb",
                       "--weight-dtype", "fp8", "--activation-dtype", "fp8")
    assert code == 2 and "no fp8 support" in err
    # fp8 weights alone on a GPU without fp8 run weight-only (vLLM's Marlin FP8), as an FP8 checkpoint does
    code, out, _ = run(capsys, "estimate", "--model", "llama-3.1-8b", "--hardware", "a100-80gb",
                       "--weight-dtype", "fp8")
    assert code == 0 and "weights fp8, activations bf16" in out
    assert "no fp8 tensor cores: fp8 weights run weight-only" in out


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "hardware")
    assert code == 0 and "h100-sxm" in out and "mi300x" in out
    code, out, _ = run(capsys, "list", "models", "--json")
    names = {m["name"] for m in json.loads(out)}
    assert {"Llama-3.1-8B", "DeepSeek-V3"} <= names
