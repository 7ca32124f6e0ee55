"""The local calibrate -> measure -> replay loop, reduced (quick grid, tiny model, a few requests), plus its bad
input: a model that does not fit in memory, an interrupted calibration, hardware TOML round trip.

Measured times depend on the machine and its load, so nothing here asserts how fast or how accurate a run was
(docs/validation-local.md carries those figures): only what holds on any machine, idle or busy: physical
bounds, fitted fields within their fit bounds, files that round-trip, errors computed from the logged data."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roofsim.app.cli import main
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.cost import Calibration
from roofsim.validation.calibrate import BOUNDS
from roofsim.validation.local import FP32, dumps_hardware, local_model_config
from roofsim.validation.local.calibrate import QUICK_TILE_M_CANDIDATES, calibration_path_for
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


# Generous ceilings no CPU exceeds, however idle: every core at 6 GHz retiring 64 fp32 FLOP/cycle, and 5 TB/s of
# memory bandwidth (5x an HBM-equipped Xeon Max). Load only lowers measured rates, so these never flip.
CAP_FLOPS_PER_S = (os.cpu_count() or 1) * 6e9 * 64
CAP_BYTES_PER_S = 5e12


def test_loop_writes_hardware_and_profile(loop: dict) -> None:
    hw = load_hardware(str(loop["hw"]))
    assert hw.kind == "cpu" and hw.id == "local-cpu"
    assert 0 < hw.peak("fp32") < CAP_FLOPS_PER_S
    assert 0 < hw.memory.bandwidth_bytes_per_s < CAP_BYTES_PER_S
    meta = read_profile_meta(calibration_path_for(loop["hw"]))
    # the two files describe one measurement: the profile records the peak and bandwidth the hardware file holds
    assert meta["peak_fp32_flops_per_s"] == hw.peak("fp32")
    assert meta["bandwidth_bytes_per_s"] == hw.memory.bandwidth_bytes_per_s
    assert meta["hardware_file"] == loop["hw"].name
    cal = loop["cal"]
    assert cal.hardware == "local-cpu" and cal.gemm_tile_m in QUICK_TILE_M_CANDIDATES
    assert meta["gemm_tile_m"] == cal.gemm_tile_m
    assert {int(t) for t in meta["tile_m_held_out_median_abs_pct"]} == set(QUICK_TILE_M_CANDIDATES)
    assert math.isfinite(cal.step_overhead_s) and cal.step_overhead_s >= 0
    assert math.isfinite(cal.step_overhead_per_seq_s) and cal.step_overhead_per_seq_s >= 0
    # every fitted field (the CPU-only terms among them) is finite and inside the bounds the fit allows
    fitted = meta["fitted_fields"]
    assert {"gemm_gemv_mem_eff", "gemm_mem_eff", "elementwise_cache_gain"} <= set(fitted)
    for f in fitted:
        lo, hi, _ = BOUNDS[f]
        assert lo <= getattr(cal, f) <= hi, (f, getattr(cal, f))
    # held-out errors: every row predicted once by a fold that did not see it; per key and pooled per class
    rows, held = meta["rows"], meta["held_out"]
    assert meta["folds"] == 3 and rows > 0 and meta["held_out_overall"]["n"] == rows
    assert sum(v["n"] for v in held.values()) == rows
    assert all(math.isfinite(v["median_abs_pct_err"]) and v["median_abs_pct_err"] >= 0 for v in held.values())
    pooled = meta["held_out_pooled_median_abs_pct"]
    assert set(pooled) == {"gemm", "memory_bound", "attention"}
    assert all(math.isfinite(v) and v >= 0 for v in pooled.values()), pooled


def test_loop_log_has_steps_and_requests(loop: dict) -> None:
    d = json.loads(loop["log"].read_text())
    assert d["completed"] == 4 and len(d["ttfts"]) == 4 and d["output_lens"] == [8] * 4
    kinds = {s["kind"] for s in d["steps"]}
    assert kinds == {"prefill", "decode"}
    # every request produces 8 tokens: 1 from its prefill step + 7 decode steps
    assert sum(s["batch_size"] for s in d["steps"] if s["kind"] == "decode") == 4 * 7


def test_loop_replay_compares_the_logged_times(loop: dict) -> None:
    """The replay's measured side is the log's own data and its errors are 100 (pred - meas) / meas; the
    predicted side is a positive time that respects TTFT <= E2E. How close they are depends on the machine's
    load; docs/validation-local.md carries the figures from scripts/validate_local.py."""
    rep, d = loop["replay"], json.loads(loop["log"].read_text())
    ttft = np.array(d["ttfts"])
    tpot = np.array([np.mean(itl) for itl in d["itls"]])  # (e2el - ttft) / (output_len - 1), vLLM's definition
    e2e = ttft + np.array([np.sum(itl) for itl in d["itls"]])
    for metric, measured in (("ttft_s", ttft), ("tpot_s", tpot), ("e2e_s", e2e)):
        c = rep.comparison[metric]["mean"]
        assert c["measured"] == pytest.approx(measured.mean(), rel=1e-9), metric
        assert math.isfinite(c["predicted"]) and c["predicted"] > 0, (metric, c)
        assert c["err_pct"] == pytest.approx(100 * (c["predicted"] - c["measured"]) / c["measured"]), metric
    assert rep.comparison["ttft_s"]["mean"]["predicted"] <= rep.comparison["e2e_s"]["mean"]["predicted"]
    groups: dict[tuple[str, int], list[float]] = {}
    for s in d["steps"]:
        groups.setdefault((s["kind"], s["batch_size"]), []).append(s["seconds"])
    assert [(s["kind"], s["batch_size"]) for s in rep.steps] == sorted(groups)
    for s in rep.steps:
        logged = groups[s["kind"], s["batch_size"]]
        assert s["n"] == len(logged) and s["measured_s"] == pytest.approx(np.mean(logged), rel=1e-9), s
        assert math.isfinite(s["predicted_s"]) and s["predicted_s"] > 0, s
        assert s["err_pct"] == pytest.approx(100 * (s["predicted_s"] - s["measured_s"]) / s["measured_s"]), s


def test_measure_refuses_a_model_too_big_before_allocating(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import roofsim.validation.local as local

    def serve_nothing(*args: object, **kwargs: object) -> None:
        raise AssertionError("run_serving was called: the model was not refused from the estimate")

    monkeypatch.setattr(local, "run_serving", serve_nothing)  # what would allocate the 263 GiB of weights
    out = tmp_path / "run.json"
    code = main(["measure", "--model", "llama-3.1-70b", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs" in err and "GiB" in err and "Llama-3.1-70B" in err
    assert not out.exists()


def test_calibrate_local_rejects_tables_and_hardware(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["calibrate", "--local", "--hardware", "h100", "--out", str(tmp_path / "x.toml")]) == 2
    assert "--local measures this machine" in capsys.readouterr().err
    assert main(["calibrate", "--hardware", "h100", "--out", str(tmp_path / "x.toml")]) == 2
    assert "needs SOURCES" in capsys.readouterr().err


# The child runs the real `roofsim calibrate --local` up to its first timing round, where it says so on stderr and
# waits: the test's SIGINT then lands mid-measurement on any machine, however fast or loaded.
INTERRUPTIBLE_CALIBRATE = """
import sys, time
from roofsim.app.cli import main
from roofsim.validation.local import measure

def time_interleaved_waiting(*args, **kwargs):
    print("MARK timing started", file=sys.stderr, flush=True)
    time.sleep(600)  # ended by the test's SIGINT (KeyboardInterrupt)
    raise AssertionError("no SIGINT arrived")

measure.time_interleaved = time_interleaved_waiting
raise SystemExit(main(sys.argv[1:]))
"""


def test_interrupted_calibration_leaves_no_profile(tmp_path: Path) -> None:
    """SIGINT in the middle of measuring: exit code 130, no hardware file, no calibration file, no temp file."""
    out = tmp_path / "cpu.toml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE_CALIBRATE, "calibrate", "--local", "--quick",
                             "--local-model", "local-llama-tiny", "--no-torch", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # blocks until the child reaches the timing round (or exits)
            seen.append(line)
            if line.startswith("MARK timing started"):
                break
        assert seen and seen[-1].startswith("MARK"), "".join(seen)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
    from roofsim.validation.local.calibrate import fit_step_overheads
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

