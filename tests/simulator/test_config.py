"""SimConfig as a file: to_toml round-trips representative and generated configs, run files written by the old
writer still load, --set overrides (apply_overrides/set_path) and the kind lists derived from the schema."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import Calibration
from roofsim.simulator.config import (
    DRAFTER_KINDS,
    EARLY_EXIT_KINDS,
    PREEMPTION_MODES,
    ROUTER_KINDS,
    SCHEDULER_KINDS,
    WEIGHT_DTYPES,
    WORKLOAD_KINDS,
    SimConfig,
    apply_overrides,
    kinds_of,
    parse_value,
    to_toml,
)
from roofsim.simulator.schedulers import SCHEDULERS
from roofsim.simulator.workload import WorkloadConfig

REP = {"model": "llama-3.1-8b", "hardware": "h100-sxm"}
NAMED = {"kind": "named", "name": "conversation", "num_requests": 50}
SYNTH = {"kind": "synthetic", "num_requests": 30, "duration_s": 12.5, "correlation": -0.25,
         "arrival": {"kind": "burst", "on_rate_per_s": 8.0, "off_rate_per_s": 0.5, "on_s": 2.0, "off_s": 3.0},
         "input": {"kind": "lognormal", "median": 700.0, "sigma": 0.8, "low": 4, "high": 8000},
         "output": {"kind": "empirical", "values": [5, 17, 300]}}
CONFIGS: dict[str, dict[str, Any]] = {
    "minimal": {"workload": NAMED, "replicas": [REP]},
    "two groups, sarathi, router, slo, limits": {
        "workload": SYNTH, "router": {"kind": "power_of_two"}, "seed": 11, "slo": {"ttft_s": 0.25},
        "max_sim_time_s": 600.0, "max_waiting_requests": 400,
        "replicas": [{**REP, "tp": 2, "count": 3, "scheduler": {"kind": "sarathi", "chunk_size": 1024,
                                                                  "preemption": "swap"}},
                     {**REP, "hardware": "a100-sxm-80gb", "scheduler": {"kind": "sjf", "predictor_sigma": 0.5},
                      "quant": {"weight_dtype": "fp4", "activation_dtype": "fp4", "group_size": 16,
                                "scale_bytes": 1.0}, "prefix_caching": True, "frontend_s_per_request": 0.0015}]},
    "attention data parallelism": {"workload": NAMED, "replicas": [
        {"model": "deepseek-v3", "hardware": "h100-sxm", "tp": 1, "attn_dp": 16, "ep": 16}]},
    "trace with a window": {"workload": {"kind": "trace", "path": "dir/trace \"1\".csv", "format": "csv",
                                         "start_s": 10.0, "end_s": 70.0, "rate_scale": 1.5, "max_requests": 9},
                            "replicas": [REP]},
    "speculative, positional acceptance, adaptive": {"workload": NAMED, "replicas": [{**REP, "speculative": {
        "drafter": {"kind": "draft_model", "model": "llama-3.2-1b"}, "adaptive_k": True, "k": 3, "k_max": 4,
        "acceptance": {"kind": "positional", "rates": [0.9, 0.7, 0.6, 0.5]}}}]},
    "speculative layerskip, beta acceptance, tree": {"workload": NAMED, "replicas": [{**REP, "speculative": {
        "drafter": {"kind": "layerskip", "exit_layer": 8}, "tree_width": 2,
        "acceptance": {"kind": "beta", "alpha": 7.0, "beta": 3.0}}}]},
    "early exit per token": {"workload": NAMED, "replicas": [{**REP, "early_exit": {
        "kind": "per_token", "kv_fill": "recompute", "batch_sync": False,
        "distribution": {"kind": "histogram", "layers": [8, 16, 32], "weights": [1.0, 0.5, 2.0]}}}]},
    "early exit skipdecode, calibration": {"workload": NAMED, "replicas": [{
        **REP, "early_exit": {"kind": "skipdecode", "max_layers": 32, "min_layers": 12},
        "calibration": Calibration(name="mine", step_overhead_s=0.004).model_dump(mode="json")}]},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_to_toml_round_trips(name: str) -> None:
    cfg = SimConfig.model_validate(CONFIGS[name])
    text = to_toml(cfg)
    assert SimConfig.model_validate(tomllib.loads(text)) == cfg
    assert cfg.to_toml() == text


# within the schema limits (simulator/limits.py): rate <= MAX_RATE_PER_S and >= 1e-3 so 200 arrivals end within
# MAX_DURATION_S; seed >= 0
@settings(max_examples=60, deadline=None)
# rates and seeds within the run limits (simulator/limits.py): 200 requests arrive within MAX_DURATION_S = 1e7 s
# from 2e-5 req/s up to MAX_RATE_PER_S = 1e6; seeds in [0, MAX_SEED = 2^63 - 1]
@given(model=st.text(min_size=1, max_size=30), rate=st.floats(1e-4, 1e6), frac=st.floats(0.0, 0.999),
       seed=st.integers(0, 2**63 - 1), ttft=st.none() | st.floats(1e-12, 1e12),
       layers=st.lists(st.integers(1, 80), min_size=1, max_size=5))
def test_to_toml_round_trips_generated_values(model: str, rate: float, frac: float, seed: int,
                                               ttft: float | None, layers: list[int]) -> None:
    """Any model string (quotes, backslashes, newlines, unicode), float and 64-bit seed survives; None is left out."""
    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "chat-short", "rate_per_s": rate}, "seed": seed,
        "slo": {"ttft_s": ttft}, "replicas": [{
            "model": model, "hardware": "h100-sxm", "scheduler": {"kind": "orca", "watermark_fraction": frac},
            "early_exit": {"kind": "per_token", "distribution": {"kind": "histogram", "layers": layers,
                                                                  "weights": [1.0] * len(layers)}}}]})
    assert SimConfig.model_validate(tomllib.loads(to_toml(cfg))) == cfg


OLD_WRITER = """seed = 2
stepwise = false

[workload]
kind = "named"
name = "chat-short"
num_requests = 300

[[replicas]]
model = "llama-3.1-8b"
hardware = "h100-sxm"
tp = 1
pp = 1
ep = 1
count = 1
gpu_memory_utilization = 0.9
block_size = 16
prefix_caching = false
frontend_s_per_request = 0.0

[replicas.quant]
weight_dtype = "bf16"
activation_dtype = "bf16"
kv_dtype = "bf16"
group_size = 128
scale_bytes = 2.0

[replicas.scheduler]
max_num_seqs = 256
max_batched_tokens = 8192
preemption = "recompute"
watermark_fraction = 0.01
kind = "vllm"

[replicas.speculative]
k = 4
tree_width = 1
adaptive_k = false
k_min = 1
k_max = 8

[replicas.speculative.drafter]
kind = "eagle"

[replicas.speculative.acceptance]
kind = "iid"
rate = 0.7

[router]
kind = "round_robin"

[slo]
"""


def test_a_run_file_of_the_old_writer_loads_to_the_same_config(tmp_path) -> None:
    """The hand-written writer's output (old --print-config, /tmp/golden_before/eagle.toml) reads back to the
    config the tomli-w writer produces."""
    path = tmp_path / "old.toml"
    path.write_text(OLD_WRITER)
    cfg = SimConfig.from_toml(path)
    assert cfg.replicas[0].speculative is not None and cfg.replicas[0].speculative.drafter.kind == "eagle"
    assert cfg.seed == 2 and cfg.workload.num_requests == 300
    assert SimConfig.model_validate(tomllib.loads(to_toml(cfg))) == cfg


def test_kind_lists_are_derived_from_the_unions() -> None:
    assert SCHEDULER_KINDS == ("static", "vllm", "orca", "sarathi", "sjf")
    assert set(SCHEDULER_KINDS) == set(SCHEDULERS)  # every config kind has an implementation, and back
    assert ROUTER_KINDS == ("round_robin", "least_outstanding", "least_kv", "power_of_two", "prefix_aware",
                            "sticky_session")
    assert PREEMPTION_MODES == ("recompute", "swap")
    assert DRAFTER_KINDS == ("draft_model", "self", "layerskip", "medusa", "eagle",
                                                        "ngram")
    assert EARLY_EXIT_KINDS == ("per_token", "skipdecode")
    assert WORKLOAD_KINDS == ("synthetic", "trace", "named", "sessions")
    assert set(kinds_of(WorkloadConfig)) < set(WORKLOAD_KINDS)  # a run accepts every workload.py kind
    assert WEIGHT_DTYPES == ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2), ("2.5", 2.5), ("1e4", 1e4), ("true", True), ("[1, 2]", [1, 2]), ('"a b"', "a b"),
    ("sarathi", "sarathi"), ("trace.csv", "trace.csv"), ("2024-01-01", "2024-01-01"),
    ('{kind = "iid", rate = 0.7}', {"kind": "iid", "rate": 0.7}), ("inf", float("inf"))])
def test_parse_value_reads_toml_and_bare_words(text: str, value: object) -> None:
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_overrides_wildcard_append_and_kind_switch() -> None:
    base = SimConfig.model_validate({"workload": NAMED, "replicas": [
        {**REP, "speculative": {"drafter": {"kind": "draft_model", "model": "llama-3.2-1b"}}}, REP]})
    data = base.model_dump(mode="json", exclude_none=True)
    out = SimConfig.model_validate(apply_overrides(data, [
        "replicas.*.tp=2", "replicas.0.speculative.drafter.kind=eagle", "replicas.1.scheduler.kind=sarathi",
        "replicas.2.model=qwen3-0.6b", "replicas.2.hardware=l40s"]))
    assert [g.tp for g in out.replicas] == [2, 2, 1]
    assert out.replicas[0].speculative is not None and out.replicas[0].speculative.drafter.kind == "eagle"
    assert out.replicas[1].scheduler.kind == "sarathi" and out.replicas[1].scheduler.chunk_size == 512
    assert out.replicas[2].model == "qwen3-0.6b"
    assert data["replicas"][0]["tp"] == 1  # the input dict is not modified
    adp = SimConfig.model_validate(apply_overrides(data, ["replicas.1.attn_dp=4", "replicas.1.ep=4"]))
    assert (adp.replicas[1].attn_dp, adp.replicas[1].ep, adp.replicas[0].attn_dp) == (4, 4, 1)
    with pytest.raises(ValueError, match="attn_dp=4 with speculative decoding or early exit is not modelled"):
        SimConfig.model_validate(apply_overrides(data, ["replicas.0.attn_dp=4"]))
    with pytest.raises(InputError, match=r"set replicas\.0\.early_exit\.kind first \(one of per_token, skipdecode"):
        apply_overrides(data, ["replicas.0.early_exit.kv_fill=copy"])
    with pytest.raises(InputError, match=r"replicas\.0\.model is required and cannot be removed"):
        apply_overrides(data, ["replicas.0.model=none"])
    with pytest.raises(InputError, match=r"the items of replicas\.0\.speculative\.acceptance\.rates are single"):
        apply_overrides(data, ['replicas.0.speculative.acceptance={kind="positional", rates=[0.5]}',
                               "replicas.0.speculative.acceptance.rates.0.x=1"])
