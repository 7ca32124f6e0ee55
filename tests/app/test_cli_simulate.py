"""`roofsim simulate`: JSON keys, flags and --set override the run file, --print-config reproduces the run, --out
files and overwrite refusal, clean errors."""

from __future__ import annotations

import json
import tomllib

import pytest

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
    assert main(["simulate", "--config", str(p), "--tp", "2", "--scheduler", "sarathi",
                 "--set", "replicas.0.scheduler.chunk_size=256", "--print-config"]) == 0
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


def test_prefix_caching_and_frontend_via_set(tmp_path, capsys) -> None:
    trace = tmp_path / "t.jsonl"
    rows = [{"arrival_s": i * 0.5, "input_tokens": 1024, "output_tokens": 4, "hash_ids": [1, 2]} for i in range(4)]
    trace.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    sets = ["--set", "replicas.*.prefix_caching=true", "--set", "replicas.0.frontend_s_per_request=0.002"]
    assert main(["simulate", "--trace", str(trace), *sets, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["prefix_cached_tokens"] == 3 * 1023  # requests 2-4 reuse all but the last prompt token
    assert main(["simulate", "--trace", str(trace), *sets, "--print-config"]) == 0
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
    base = ["simulate", "--num-requests", "20", "--rate", "1", "--json", "--set", "replicas.0.scheduler.max_num_seqs=1"]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--calibration", str(path)]) == 0
    slow = json.loads(capsys.readouterr().out)
    assert slow["config"]["replicas"][0]["calibration"]["name"] == "slow"
    assert read_calibration(path).step_overhead_s == 0.05
    assert slow["tpot_s"]["mean"] - plain["tpot_s"]["mean"] > 0.04


WALL = ("wall_s", "sim_s_per_wall_s", "iterations_per_wall_s")


def test_print_config_reproduces_the_run(tmp_path, capsys) -> None:
    """--print-config of flags + --set (speculation, SLO, router) is a run file --config reads back to the same
    config and the same results."""
    args = ["simulate", "--num-requests", "40", "--rate", "4", "--seed", "3", "--weight-dtype", "fp8",
            "--set", "replicas.0.speculative.drafter.kind=eagle", "--set", "replicas.0.speculative.k=3",
            "--set", 'replicas.0.speculative.acceptance={kind="positional", rates=[0.8, 0.6, 0.5]}',
            "--set", "slo.ttft_s=0.5", "--set", "router.kind=least_kv", "--set", "replicas.0.count=2"]
    assert main([*args, "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert main([*args, "--print-config"]) == 0
    run = tmp_path / "run.toml"
    run.write_text(capsys.readouterr().out)
    assert main(["simulate", "--config", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["config"] == direct["config"]
    rep = direct["config"]["replicas"][0]
    assert rep["speculative"]["acceptance"]["rates"] == [0.8, 0.6, 0.5] and rep["quant"]["activation_dtype"] == "fp8"
    assert direct["requests_completed"] == 40 and direct["spec_mean_k"] == 3.0
    assert {k: v for k, v in again.items() if k not in WALL} == {k: v for k, v in direct.items() if k not in WALL}


def test_set_values_are_toml_and_none_removes_a_table(tmp_path, capsys) -> None:
    run = tmp_path / "run.toml"
    assert main(["simulate", "--num-requests", "10", "--set", "replicas.0.early_exit.kind=skipdecode",
                 "--set", "replicas.0.early_exit.max_layers=32", "--set", "replicas.0.early_exit.min_layers=12",
                 "--print-config"]) == 0
    run.write_text(capsys.readouterr().out)
    assert main(["simulate", "--config", str(run), "--set", "replicas.0.early_exit=none", "--set",
                 "workload.rate_per_s=2.5", "--set", "max_sim_time_s=1e4", "--set", "replicas.0.block_size=32",
                 "--set", "replicas.0.scheduler.kind=sjf", "--set", "replicas.0.scheduler.predictor_sigma=0.5",
                 "--print-config"]) == 0
    cfg = SimConfig.model_validate(__import__("tomllib").loads(capsys.readouterr().out))
    assert cfg.replicas[0].early_exit is None
    assert cfg.workload.rate_per_s == 2.5 and cfg.max_sim_time_s == 1e4 and cfg.replicas[0].block_size == 32
    assert cfg.replicas[0].scheduler.kind == "sjf" and cfg.replicas[0].scheduler.predictor_sigma == 0.5


def test_set_errors_name_the_path_and_the_valid_keys(capsys) -> None:
    assert main(["simulate", "--set", "replicas.0.schedulr.kind=vllm"]) == 2
    err = capsys.readouterr().err
    assert "replicas.0 has no key 'schedulr'" in err and "scheduler, speculative, tp" in err
    assert main(["simulate", "--scheduler", "vllm", "--set", "replicas.0.scheduler.chunk_size=256"]) == 2
    assert "'chunk_size' belongs to kind sarathi: set replicas.0.scheduler.kind first" in capsys.readouterr().err
    assert main(["simulate", "--set", "replicas.2.tp=2"]) == 2
    assert "replicas is a list of 1 item(s); '2' is not an index" in capsys.readouterr().err
    assert main(["simulate", "--set", "replicas.0.scheduler.max_num_seqs=0"]) == 2
    assert "field replicas.0.scheduler.sarathi.max_num_seqs: Input should be greater than or equal to 1" in (
        capsys.readouterr().err)
    assert main(["simulate", "--set", "seed"]) == 2
    assert "expected PATH=VALUE" in capsys.readouterr().err


def test_quantised_checkpoint_runs_its_format_and_flags_override_it(capsys) -> None:
    base = ["simulate", "--model", "Qwen/Qwen3-32B-FP8", "--num-requests", "30", "--rate", "2"]
    assert main([*base, "--json"]) == 0
    q = json.loads(capsys.readouterr().out)["config"]["replicas"][0]["quant"]
    assert q == {"weight_dtype": "fp8", "activation_dtype": "fp8", "kv_dtype": "bf16", "group_size": 128 * 128,
                 "scale_bytes": 4.0}
    assert main([*base, "--kv-dtype", "fp8"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("quantisation: "))
    assert "replicas[0] Qwen/Qwen3-32B-FP8: FP8 block 128x128 from the checkpoint" in line
    assert "--kv-dtype fp8 overrides the checkpoint's bf16" in line
    # a run file without a quant table keeps none: it reads back to the same run, resolved again
    assert main([*base, "--print-config"]) == 0
    assert "quant" not in capsys.readouterr().out


def test_unquantised_checkpoint_without_quant_table_is_the_bf16_run(tmp_path, capsys) -> None:
    runs = []
    for quant in (None, {"weight_dtype": "bf16", "activation_dtype": "bf16", "kv_dtype": "bf16"}):
        group = {"model": "llama-3.1-8b", "hardware": "h100-sxm", **({"quant": quant} if quant else {})}
        cfg = SimConfig.model_validate({"workload": {"kind": "named", "name": "conversation", "num_requests": 40},
                                        "replicas": [group]})
        p = tmp_path / "run.toml"
        p.write_text(cfg.to_toml())
        assert main(["simulate", "--config", str(p), "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        runs.append({k: v for k, v in d.items() if k not in ("wall_s", "sim_s_per_wall_s", "iterations_per_wall_s")})
    assert runs[0] == runs[1]
    assert main(["simulate", "--num-requests", "20"]) == 0
    assert "quantisation:" not in capsys.readouterr().out


def test_kv_dtype_flag_changes_only_the_kv_of_a_quant_table(tmp_path, capsys) -> None:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "num_requests": 20},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm",
                      "quant": {"weight_dtype": "int4", "activation_dtype": "bf16", "group_size": 64}}]})
    p = tmp_path / "run.toml"
    p.write_text(cfg.to_toml())
    assert main(["simulate", "--config", str(p), "--kv-dtype", "fp8", "--print-config"]) == 0
    q = SimConfig.model_validate(tomllib.loads(capsys.readouterr().out)).replicas[0].quant
    assert (q.weight_dtype, q.group_size, q.kv_dtype) == ("int4", 64, "fp8")


# ---- --engine (simulator/engines.py) -------------------------------------------------------------------------
def _printed(capsys) -> SimConfig:
    return SimConfig.model_validate(__import__("tomllib").loads(capsys.readouterr().out))


def test_engine_flag_sets_the_scheduler_and_explicit_flags_win(capsys) -> None:
    assert main(["simulate", "--engine", "vllm==0.10", "--print-config"]) == 0
    g = _printed(capsys).replicas[0]
    assert g.engine == "vllm==0.10" and (g.scheduler.kind, g.scheduler.max_batched_tokens) == ("sarathi", 8192)
    assert g.scheduler.max_num_seqs == 1024 and g.prefix_caching
    assert main(["simulate", "--engine", "vllm==0.10", "--scheduler", "vllm", "--set",
                 "replicas.*.scheduler.max_num_seqs=32", "--set", "replicas.*.prefix_caching=false",
                 "--print-config"]) == 0
    g = _printed(capsys).replicas[0]
    assert (g.scheduler.kind, g.scheduler.max_num_seqs, g.scheduler.max_batched_tokens) == ("vllm", 32, 8192)
    assert not g.prefix_caching
    assert main(["simulate", "--print-config"]) == 0  # no engine named: the default, the newest vLLM (V1)
    g = _printed(capsys).replicas[0]
    assert g.engine == "vllm" and (g.scheduler.kind, g.scheduler.max_batched_tokens) == ("sarathi", 8192)
    assert g.scheduler.max_num_seqs == 1024 and g.prefix_caching
    assert main(["simulate", "--engine", "roofsim-default", "--print-config"]) == 0  # still there by name
    g = _printed(capsys).replicas[0]
    assert (g.scheduler.kind, g.scheduler.max_batched_tokens, g.scheduler.max_num_seqs) == ("vllm", 8192, 256)


def test_engine_survives_print_config_and_a_new_engine_flag_takes_effect(tmp_path, capsys) -> None:
    args = ["simulate", "--engine", "sglang", "--num-requests", "30", "--set", "replicas.0.scheduler.max_num_seqs=64"]
    assert main([*args, "--print-config"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# replicas.0: engine sglang>=0.4,<1.0")  # what the engine resolved to, as comments
    run = tmp_path / "run.toml"
    run.write_text(text)
    assert main(["simulate", "--config", str(run), "--print-config"]) == 0
    again = _printed(capsys)
    assert again == SimConfig.model_validate(__import__("tomllib").loads(text))
    assert again.replicas[0].engine == "sglang" and again.replicas[0].scheduler.max_num_seqs == 64
    assert main(["simulate", "--config", str(run), "--engine", "vllm==0.10", "--print-config"]) == 0
    g = _printed(capsys).replicas[0]  # the file's override stays, the rest follows the new engine
    assert (g.engine, g.scheduler.kind, g.scheduler.max_num_seqs, g.gpu_memory_utilization) == (
        "vllm==0.10", "sarathi", 64, 0.9)


def test_unknown_engine_is_a_clean_error(capsys) -> None:
    assert main(["simulate", "--engine", "vllm==9", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "engine 'vllm==9'" in err and "Known engine versions: vllm<0.6" in err


def test_set_on_an_engine_group_keeps_the_engine_kind(capsys) -> None:
    """--set of one scheduler field does not pin the default `vllm` kind over the engine's."""
    assert main(["simulate", "--engine", "vllm==0.10", "--set", "replicas.0.scheduler.max_num_seqs=5",
                 "--set", "replicas.0.scheduler.chunk_size=1024", "--print-config"]) == 0
    s = _printed(capsys).replicas[0].scheduler
    assert (s.kind, s.max_num_seqs, s.chunk_size, s.max_batched_tokens) == ("sarathi", 5, 1024, 8192)
    assert main(["simulate", "--engine", "roofsim-default", "--set", "replicas.0.scheduler.max_num_seqs=5",
                 "--print-config"]) == 0
    s = _printed(capsys).replicas[0].scheduler
    assert (s.kind, s.max_num_seqs) == ("vllm", 5)


def test_attn_dp_flag_round_trips_through_print_config(tmp_path, capsys) -> None:
    args = ["simulate", "--model", "qwen3-30b-a3b", "--attn-dp", "4", "--set", "replicas.*.ep=4"]
    assert main([*args, "--print-config"]) == 0
    run = tmp_path / "run.toml"
    run.write_text(capsys.readouterr().out)
    cfg = SimConfig.from_toml(run)
    assert (cfg.replicas[0].attn_dp, cfg.replicas[0].ep, cfg.replicas[0].tp) == (4, 4, 1)
    assert main(["simulate", "--config", str(run), "--print-config"]) == 0
    assert capsys.readouterr().out == run.read_text()
    assert main(["simulate", "--attn-dp", "2", "--num-requests", "10"]) == 2  # llama-3.1-8b is dense
    assert "attn_dp=2 needs a mixture-of-experts model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:  # argparse: the schema's bound, named with the flag
        main(["simulate", "--attn-dp", "0", "--print-config"])
    assert bad.value.code == 2 and "argument --attn-dp: 0: Input should be greater than or equal to 1" in (
        capsys.readouterr().err)
