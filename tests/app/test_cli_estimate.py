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


def test_attention_dp_replicates_attention_weights(capsys: pytest.CaptureFixture[str]) -> None:
    # 4 attention ranks of tp 1 hold every non-expert weight each; tp 4 splits them four ways: same 4 GPUs, same
    # experts per GPU (ep 4), so the attention-DP layout holds 3/4 of the non-expert weights more per GPU
    base = ("estimate", "--model", "Qwen3-30B-A3B", "--hardware", "h100-sxm", "--ep", "4", "--batch", "16", "--json")
    code, out, _ = run(capsys, *base, "--attn-dp", "4")
    assert code == 0
    dp = json.loads(out)
    code, out, _ = run(capsys, *base, "--tp", "4")
    tp = json.loads(out)
    assert (dp["attn_dp"], dp["tp"], dp["num_gpus"]) == (4, 1, 4) and tp["num_gpus"] == 4
    # non-expert bf16 weights by hand from the config: 48 x (qkv 2048x(32+2x4)x128 + o 4096x2048 + router 2048x128
    # + norms 2x2048 + q/k norms 2x128) + embedding and lm_head 2 x 151936x2048 + final norm 2048 = 1,541,093,376
    non_expert = 4 * (dp["memory"]["weights_bytes"] - tp["memory"]["weights_bytes"]) / 3
    assert non_expert == pytest.approx(2 * 1_541_093_376)
    code, _, err = run(capsys, "estimate", "--model", "llama-3.1-8b", "--hardware", "h100", "--attn-dp", "2")
    assert code == 2 and "attn_dp=2 needs a mixture-of-experts model" in err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "hardware")
    assert code == 0 and "h100-sxm" in out and "mi300x" in out
    code, out, _ = run(capsys, "list", "models", "--json")
    names = {m["name"] for m in json.loads(out)}
    assert {"Llama-3.1-8B", "DeepSeek-V3"} <= names


# ---- quantisation from the checkpoint ------------------------------------------------------------------------


def test_fp8_checkpoint_runs_fp8_without_flags_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "estimate", "--model", "Qwen/Qwen3-32B-FP8", "--hardware", "h100-sxm", "--json")
    assert code == 0
    r = json.loads(out)
    assert (r["weight_dtype"], r["activation_dtype"], r["kv_dtype"]) == ("fp8", "fp8", "bf16")
    assert r["quantisation"] == ["FP8 block 128x128 from the checkpoint (model/presets/Qwen--Qwen3-32B-FP8_config.json)"
                                 ": weights fp8, activations fp8, KV bf16"]
    # the block-scaled recipe, not per-tensor fp8: the GEMMs run as fp8_block kernels
    assert {k["dtype"] for k in r["kernels"] if k["name"] == "o_proj"} == {"fp8_block"}
    code, text, _ = run(capsys, "estimate", "--model", "Qwen/Qwen3-32B-FP8", "--hardware", "h100-sxm")
    assert "weights fp8, activations fp8, KV bf16" in text.splitlines()[0]
    assert text.splitlines()[1] == "quantisation: " + r["quantisation"][0]


def test_dtype_flags_override_the_checkpoint_and_the_output_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "estimate", "--model", "Qwen/Qwen3-32B-FP8", "--hardware", "h100-sxm",
                       "--kv-dtype", "fp8", "--json")
    r = json.loads(out)
    assert code == 0 and (r["weight_dtype"], r["kv_dtype"]) == ("fp8", "fp8")
    assert r["quantisation"][1] == "--kv-dtype fp8 overrides the checkpoint's bf16"
    code, out, _ = run(capsys, "estimate", "--model", "Qwen/Qwen3-32B-FP8", "--hardware", "h100-sxm",
                       "--weight-dtype", "bf16")
    assert code == 0 and "weights bf16, activations bf16, KV bf16" in out
    assert ("quantisation: --weight-dtype bf16 overrides the checkpoint's FP8 block 128x128 "
            "(model/presets/Qwen--Qwen3-32B-FP8_config.json)") in out.splitlines()
    # the override costs what a bf16 checkpoint of the same architecture costs
    bf16 = json.loads(run(capsys, "estimate", "--model", "Qwen/Qwen3-32B-FP8", "--hardware", "h100-sxm",
                          "--weight-dtype", "bf16", "--json")[1])
    plain = json.loads(run(capsys, "estimate", "--model", "Qwen3-32B", "--hardware", "h100-sxm", "--json")[1])
    assert bf16["tpot_s"] == plain["tpot_s"] and bf16["ttft_s"] == plain["ttft_s"]


def test_unquantised_checkpoint_is_bf16_as_before_with_nothing_to_say(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", "4", "--json")
    default = json.loads(run(capsys, *argv)[1])
    explicit = json.loads(run(capsys, *argv, "--weight-dtype", "bf16", "--kv-dtype", "bf16")[1])
    assert default == explicit and default["quantisation"] == []
    assert (default["weight_dtype"], default["activation_dtype"], default["kv_dtype"]) == ("bf16",) * 3
    assert "quantisation:" not in run(capsys, *argv[:-1])[1]


# ---- list models ---------------------------------------------------------------------------------------------


def test_list_models_shows_a_hybrid_as_model_summary_describes_it(capsys: pytest.CaptureFixture[str]) -> None:
    from roofsim.model.loader import load_model, model_ids, model_summary

    code, out, _ = run(capsys, "list", "models", "--json", "--context", "32768")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert len(rows) == len(model_ids())
    nano = rows["NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"]
    s = model_summary(load_model("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"), 32768)
    assert nano["layers_by_kind"] == s.layers_by_kind == {
        "mamba: mamba2 state 128": 23, "mixer: none": 23, "attention: full": 6,
        "mlp: none": 29, "mlp: moe top-6 of 128 + 1 shared": 23}
    assert (nano["total_params"], nano["active_params"]) == (s.total_params, s.active_params)
    assert nano["kv_bytes_per_token"] == s.kv_bytes_per_token and nano["context_tokens"] == 32768
    assert nano["checkpoint_quant"] is None
    # its NVFP4 checkpoint states an fp8 KV cache: the attention KV and the conv window are counted in it, the SSM
    # state stays in the fp32 its config pins (mamba_ssm_cache_dtype)
    nvfp4 = rows["NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4"]
    assert nvfp4["checkpoint_quant"]["weight_dtype"] == "fp4" and nvfp4["checkpoint_quant"]["kv_dtype"] == "fp8"
    state = 23 * (64 * 64 * 128 * 4 + 3 * (4096 + 2048) * 1)
    assert nvfp4["kv_bytes_per_token"] == pytest.approx(6 * 2 * 128 * 2 * 1 + state / 32768)
    qwen = rows["Qwen3.5-27B"]
    assert qwen["layers_by_kind"] == {"linear attention: gated delta": 48, "attention: full": 16, "mlp: dense": 64}
    assert rows["Qwen3-32B-FP8"]["checkpoint_quant"]["label"] == "FP8 block 128x128"

    code, text, _ = run(capsys, "list", "models")
    line = next(x for x in text.splitlines() if x.startswith("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16 "))
    assert "23 mamba2/128 + 23 none + 6 full" in line and "29 none + 23 moe 6/128+1" in line
    assert "31.6 G" in line and "3.58 G" in line
    assert "KV/token@8192" in text.splitlines()[0]
