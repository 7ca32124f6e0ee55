"""The local calibrate -> measure -> replay loop, reduced (quick grid, tiny model, a few requests), plus its bad
input: a model that does not fit in memory, an interrupted calibration, hardware TOML round trip."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roofsim.app.cli import main
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.cost import Calibration
from roofsim.validation.local import FP32, calibration_path_for, dumps_hardware, local_model_config
from roofsim.validation.local.calibrate import QUICK_TILE_M_CANDIDATES
from roofsim.validation.profiles import read_calibration, read_profile_meta

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One reduced loop: calibrate --local --quick on the tiny model, measure 4 requests, replay."""
    from roofsim.validation.replay import replay_log

    work = tmp_path_factory.mktemp("local-loop")
    hw_path = work / "cpu.toml"
    code = main(["calibrate", "--local", "--quick", "--local-model", "local-llama-tiny", "--out", str(hw_path),
                 "--folds", "3"])
    assert code == 0
    log = work / "run.json"
    code = main(["measure", "--model", "local-llama-tiny", "--num-requests", "4", "--input-len", "16:48",
                 "--output-len", "8", "--max-batch", "4", "--out", str(log), "--json"])
    assert code == 0
    from roofsim.simulator.config import VLLMScheduler

    cal = read_calibration(calibration_path_for(hw_path))
    rep = replay_log(log, str(work / "run.config.json"), str(hw_path),
                     scheduler=VLLMScheduler(max_num_seqs=4, max_batched_tokens=4 * 48), quant=FP32,
                     calibration=cal)
    return {"work": work, "hw": hw_path, "log": log, "cal": cal, "replay": rep}


def test_loop_writes_hardware_and_profile(loop: dict) -> None:
    hw = load_hardware(str(loop["hw"]))
    assert hw.kind == "cpu" and hw.id == "local-cpu"
    # a real CPU core does between 1 and 1000 GFLOP/s in fp32 and moves 0.5-500 GB/s
    assert 1e9 < hw.peak("fp32") < 1e12
    assert 5e8 < hw.memory.bandwidth_bytes_per_s < 5e11
    cal = loop["cal"]
    assert cal.hardware == "local-cpu" and cal.gemm_tile_m in QUICK_TILE_M_CANDIDATES
    assert cal.step_overhead_s >= 0 and cal.step_overhead_per_seq_s >= 0
    meta_text = calibration_path_for(loop["hw"]).read_text()
    assert "held_out_overall" in meta_text and "peak_fp32_flops_per_s" in meta_text
    # kernel level, held-out shapes, pooled per class: bounds wide enough for a loaded shared 2-core VM (the
    # real figures, 6-10% on a quiet machine, are in docs/validation-local.md)
    pooled = read_profile_meta(calibration_path_for(loop["hw"]))["held_out_pooled_median_abs_pct"]
    assert set(pooled) == {"gemm", "memory_bound", "attention"}
    assert pooled["gemm"] < 35 and pooled["memory_bound"] < 50, pooled
    # the CPU-only terms were fitted: GEMV streams faster than packed sgemm; the cache regime is a speed-up
    assert cal.gemm_gemv_mem_eff > cal.gemm_mem_eff and cal.elementwise_cache_gain >= 1


def test_loop_log_has_steps_and_requests(loop: dict) -> None:
    d = json.loads(loop["log"].read_text())
    assert d["completed"] == 4 and len(d["ttfts"]) == 4 and d["output_lens"] == [8] * 4
    kinds = {s["kind"] for s in d["steps"]}
    assert kinds == {"prefill", "decode"}
    # every request produces 8 tokens: 1 from its prefill step + 7 decode steps
    assert sum(s["batch_size"] for s in d["steps"] if s["kind"] == "decode") == 4 * 7


def test_loop_errors_within_noisy_machine_bounds(loop: dict) -> None:
    """Predicted means within a factor of 3 of measured on a shared noisy machine; docs/validation-local.md
    carries the real figures from scripts/validate_local.py."""
    rep = loop["replay"]
    for metric in ("tpot_s", "e2e_s"):
        c = rep.comparison[metric]["mean"]
        ratio = c["predicted"] / c["measured"]
        assert 1 / 3 < ratio < 3, (metric, c)
    # TTFT of a 4-request burst is one prefill step (a single timing) on the tiny model: the noisiest figure on a
    # loaded 2-core VM (seen 10x off under load average 7), so only an order of magnitude is asserted here.
    c = rep.comparison["ttft_s"]["mean"]
    assert 1 / 12 < c["predicted"] / c["measured"] < 12, c
    assert rep.steps, "per-step comparison missing"
    for s in rep.steps:
        assert 1 / 4 < s["predicted_s"] / s["measured_s"] < 4, s


def test_measure_refuses_a_model_too_big_before_allocating(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run.json"
    start = time.perf_counter()
    code = main(["measure", "--model", "llama-3.1-70b", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs" in err and "GiB" in err and "Llama-3.1-70B" in err
    assert not out.exists()
    assert time.perf_counter() - start < 10  # refused from the estimate, not after allocating 263 GiB


def test_calibrate_local_rejects_tables_and_hardware(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["calibrate", "--local", "--hardware", "h100", "--out", str(tmp_path / "x.toml")]) == 2
    assert "--local measures this machine" in capsys.readouterr().err
    assert main(["calibrate", "--hardware", "h100", "--out", str(tmp_path / "x.toml")]) == 2
    assert "needs SOURCES" in capsys.readouterr().err


def test_interrupted_calibration_leaves_no_profile(tmp_path: Path) -> None:
    """SIGINT in the middle of measuring: no hardware file, no calibration file, no temp file left."""
    out = tmp_path / "cpu.toml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "roofsim.app.cli", "calibrate", "--local", "--quick", "--local-model",
                             "local-llama-tiny", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        line = ""
        while time.time() < deadline and "timing" not in line:  # measuring has started
            line = proc.stderr.readline() if proc.stderr else ""
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_hardware_toml_round_trips(tmp_path: Path) -> None:
    hw = load_hardware("cpu-generic")
    path = tmp_path / "x.toml"
    path.write_text(dumps_hardware(hw))
    assert load_hardware(str(path)) == hw


def test_model_config_round_trips(tmp_path: Path) -> None:
    from roofsim.model.loader import load_model
    from roofsim.validation.local.transformer import small_llama_spec

    spec = small_llama_spec()
    path = tmp_path / "m.config.json"
    path.write_text(json.dumps(local_model_config(spec)))
    back = load_model(str(path))
    for f in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
              "vocab_size", "tie_word_embeddings", "activation"):
        assert getattr(back, f) == getattr(spec, f), f


def test_step_overhead_fit_recovers_known_overheads() -> None:
    """Synthetic steps = kernel prediction + 2 ms + 0.3 ms/seq -> the fit returns those two numbers."""
    from roofsim.model.cost import CostModel
    from roofsim.validation.local import fit_step_overheads
    from roofsim.validation.local.transformer import small_llama_spec
    from roofsim.validation.replay import step_shape

    spec = small_llama_spec(num_layers=2)
    hw = load_hardware("cpu-generic")
    cal = Calibration(step_overhead_s=0.0, step_overhead_per_seq_s=0.0)
    cost = CostModel(spec, hw, FP32, calibration=cal)
    steps = []
    for kind, b, tok, ctx in (("decode", 1, 1, 16), ("decode", 4, 4, 64), ("decode", 8, 8, 128),
                              ("prefill", 1, 16, 16), ("prefill", 8, 128, 128)):
        t = cost.step_seconds(step_shape(kind, b, tok, ctx)) + 2e-3 + 3e-4 * b
        steps.append({"kind": kind, "batch_size": b, "tokens": tok, "ctx_sum": ctx, "seconds": t})
    a, per_seq, resid = fit_step_overheads(steps, spec, hw, cal)
    assert math.isclose(a, 2e-3, rel_tol=1e-6) and math.isclose(per_seq, 3e-4, rel_tol=1e-6)
    assert resid < 1e-6

