"""`roofsim simulate`: JSON keys, flags override the run file, --out files and overwrite refusal, clean errors."""

from __future__ import annotations

import json

from roofsim.app.cli import main
from roofsim.simulator.config import SimConfig


def test_json_output_has_the_documented_keys(capsys) -> None:
    assert main(["simulate", "--num-requests", "60", "--rate", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("requests_completed", "requests_rejected", "output_tokens_per_s", "requests_per_s",
              "sim_duration_s", "wall_s"):
        assert k in d
    for k in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(d[k]) >= {"mean", "p50", "p90", "p99"}
    assert d["requests_completed"] == 60
    assert d["config"]["workload"]["rate_per_s"] == 3


def test_flags_override_run_file(tmp_path, capsys) -> None:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "num_requests": 40},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "tp": 1}]})
    p = tmp_path / "run.toml"
    p.write_text(cfg.to_toml())
    assert main(["simulate", "--config", str(p), "--tp", "2", "--chunk-size", "256", "--print-config"]) == 0
    out = SimConfig.model_validate(__import__("tomllib").loads(capsys.readouterr().out))
    assert out.replicas[0].tp == 2
    assert out.replicas[0].scheduler.kind == "sarathi" and out.replicas[0].scheduler.chunk_size == 256
    assert out.workload.num_requests == 40


def test_out_dir_files_and_no_overwrite(tmp_path, capsys) -> None:
    args = ["simulate", "--num-requests", "30", "--json", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    files = sorted(f.name for f in (tmp_path / "o").iterdir())
    assert files == ["requests.csv", "summary.json", "timeseries.csv", "trace.json"]
    assert len((tmp_path / "o" / "requests.csv").read_text().splitlines()) == 31
    ev = json.loads((tmp_path / "o" / "trace.json").read_text())["traceEvents"]
    assert ev[0]["ph"] == "X" and "decode_seqs" in ev[0]["args"]
    capsys.readouterr()
    assert main(args) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_clean_errors(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[workload]\nkind = "named"\nname = "conversation"\n[[replicas]]\nmodel = "llama-3.1-8b"\n')
    assert main(["simulate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roofsim: error:") and "bad.toml" in err and "replicas.0.hardware" in err
    assert main(["simulate", "--model", "llama-2-70b", "--num-requests", "5"]) == 2
    assert "does not fit" in capsys.readouterr().err


def test_prefix_caching_and_frontend_flags(tmp_path, capsys) -> None:
    trace = tmp_path / "t.jsonl"
    rows = [{"arrival_s": i * 0.5, "input_tokens": 1024, "output_tokens": 4, "hash_ids": [1, 2]} for i in range(4)]
    trace.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["simulate", "--trace", str(trace), "--prefix-caching", "--frontend-ms", "2", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["prefix_cached_tokens"] == 3 * 1023  # requests 2-4 reuse all but the last prompt token
    assert main(["simulate", "--trace", str(trace), "--prefix-caching", "--frontend-ms", "2", "--print-config"]) == 0
    cfg = SimConfig.model_validate(__import__("tomllib").loads(capsys.readouterr().out))
    assert cfg.replicas[0].prefix_caching and cfg.replicas[0].frontend_s_per_request == 0.002


def test_rate_scale_of_offline_is_a_clean_error_and_scales_a_burst(tmp_path, capsys) -> None:
    run = tmp_path / "run.toml"
    body = """[workload]
kind = "synthetic"
num_requests = 20
[workload.arrival]
{arrival}
[workload.input]
kind = "fixed"
tokens = 100
[workload.output]
kind = "fixed"
tokens = 10
[[replicas]]
model = "llama-3.1-8b"
hardware = "h100-sxm"
"""
    run.write_text(body.format(arrival='kind = "offline"'))
    assert main(["simulate", "--config", str(run), "--rate-scale", "2", "--json"]) == 2
    err = capsys.readouterr().err
    assert "do not apply to 'offline' arrivals" in err and "Traceback" not in err
    run.write_text(body.format(arrival='kind = "burst"\non_rate_per_s = 10\noff_rate_per_s = 0\non_s = 1\noff_s = 1'))
    assert main(["simulate", "--config", str(run), "--rate-scale", "2", "--json"]) == 0
    arrival = json.loads(capsys.readouterr().out)["config"]["workload"]["arrival"]
    # both rates of the on/off process double; its shape (on_s, off_s) is kept
    assert (arrival["on_rate_per_s"], arrival["off_rate_per_s"], arrival["on_s"]) == (20.0, 0.0, 1.0)


def test_calibration_flag_uses_that_profile(tmp_path, capsys) -> None:
    """--calibration FILE (e.g. from roofsim calibrate --local) replaces the shipped profile: a profile with a
    50 ms step overhead makes every decode step, hence the mean TPOT, ~50 ms slower."""
    from roofsim.model.cost import Calibration
    from roofsim.validation.profiles import read_calibration, write_calibration

    path = write_calibration(Calibration(name="slow", step_overhead_s=0.05), tmp_path / "slow.toml")
    base = ["simulate", "--num-requests", "20", "--rate", "1", "--json", "--max-batch", "1"]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--calibration", str(path)]) == 0
    slow = json.loads(capsys.readouterr().out)
    assert slow["config"]["replicas"][0]["calibration"]["name"] == "slow"
    assert read_calibration(path).step_overhead_s == 0.05
    assert slow["tpot_s"]["mean"] - plain["tpot_s"]["mean"] > 0.04
