"""Golden outputs: fixed scenarios run through the same Python calls the CLI makes (simulate, estimate, plan) and
compared field by field with the JSON files next to this module (ints, bools and strings exactly, floats to
rel 1e-12). `pytest --update-golden` rewrites the JSON files from the current code (tests/golden/README.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from roofsim.app.cli import build_parser
from roofsim.app.cmd_estimate import estimate
from roofsim.app.common import deployment_from_args
from roofsim.simulator.config import SimConfig
from roofsim.simulator.planning import PlanSpec, SerialExecutor, plan
from roofsim.simulator.run import simulate
from roofsim.simulator.workload import NamedWorkload
from roofsim.validation.profiles import resolve_config_calibrations, resolve_plan_calibrations

HERE = Path(__file__).resolve().parent
REL = 1e-12
# Fields that measure this machine's speed, not the model: never compared, never stored.
WALL_FIELDS = frozenset({"wall_s", "sim_s_per_wall_s", "iterations_per_wall_s", "sim_wall_s", "workers"})
SCENARIOS = ("demo", "sarathi", "eagle", "early_exit", "pp2", "kv_pressure")
ESTIMATE_ARGV = ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", "16",
                 "--input-len", "1024", "--output-len", "256", "--json"]
# A smaller question than /tmp/golden_before/plan.json (2 candidates, 200 requests per point: ~2 s).
PLAN_SPEC = PlanSpec(model="llama-3.1-8b", workload=NamedWorkload(name="conversation"), rate_per_s=10.0,
                     slo_ttft_s=1.0, slo_tpot_s=0.05, hardware=("h100-sxm", "l40s"), tp=(1,), num_requests=200,
                     seed=0)


def strip_wall(obj: Any) -> Any:
    """`obj` without the machine-dependent fields, at any depth."""
    if isinstance(obj, dict):
        return {k: strip_wall(v) for k, v in obj.items() if k not in WALL_FIELDS}
    if isinstance(obj, list | tuple):
        return [strip_wall(v) for v in obj]
    return obj


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list | tuple):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: obj}


def _same(want: Any, got: Any) -> bool:
    if type(want) is not type(got):  # an int that became a float (or a bool) is a change
        return False
    if isinstance(want, float):
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return math.isclose(want, got, rel_tol=REL, abs_tol=0.0)
    return bool(want == got)


def differences(want: Any, got: Any) -> list[str]:
    """One line per field that moved, was added or disappeared (dotted paths, list items as [i])."""
    w, g = _flatten(want), _flatten(got)
    lines = [f"{k}: expected {w[k]!r}, got {g[k]!r}" for k in w if k in g and not _same(w[k], g[k])]
    lines += [f"{k}: missing (expected {w[k]!r})" for k in w if k not in g]
    lines += [f"{k}: new field ({g[k]!r})" for k in g if k not in w]
    return lines


def check_golden(name: str, got: Any, update: bool) -> None:
    """Compare `got` (JSON-ready, wall fields included or not) with tests/golden/<name>.json, or rewrite it."""
    path = HERE / f"{name}.json"
    # through JSON once, so the comparison sees exactly what the file can hold (tuples -> lists, NaN kept)
    got = json.loads(json.dumps(strip_wall(got), default=float))
    if update:
        path.write_text(json.dumps(got, indent=2) + "\n", encoding="utf-8")
        return
    want = json.loads(path.read_text(encoding="utf-8"))
    diff = differences(want, got)
    if diff:
        pytest.fail(f"{path.name}: {len(diff)} field(s) differ (pytest --update-golden rewrites it if the "
                    "change is intended):\n  " + "\n  ".join(diff[:60]), pytrace=False)


@pytest.mark.parametrize("name", SCENARIOS)
def test_simulate_golden(name: str, update_golden: bool) -> None:
    # as `roofsim simulate --config` runs it: groups without a calibration get their GPU's shipped profile
    cfg, _ = resolve_config_calibrations(SimConfig.from_toml(HERE / f"{name}.toml"))
    check_golden(name, simulate(cfg).summary, update_golden)


def test_estimate_golden(update_golden: bool) -> None:
    args = build_parser().parse_args(ESTIMATE_ARGV)
    got = estimate(deployment_from_args(args), args.batch, args.input_len, args.output_len,
                   args.gpu_memory_utilization)
    check_golden("estimate", got, update_golden)


def test_plan_golden(update_golden: bool) -> None:
    spec, _ = resolve_plan_calibrations(PLAN_SPEC)  # as `roofsim plan` does: each GPU's shipped profile
    check_golden("plan", plan(spec, SerialExecutor(), None).as_dict(), update_golden)


def test_comparison_names_the_moved_fields() -> None:
    want = {"a": 1, "b": {"c": 0.5, "d": [1.0, float("nan")]}, "e": "x", "gone": 3}
    got = {"a": 1, "b": {"c": 0.5 * (1 + 1e-9), "d": [1.0 + 1e-13, float("nan")]}, "e": "x", "new": True}
    assert differences(want, got) == [
        "b.c: expected 0.5, got 0.5000000005", "gone: missing (expected 3)", "new: new field (True)"]
    assert differences({"n": 2}, {"n": 2.0}) == ["n: expected 2, got 2.0"]
    assert differences({"f": False}, {"f": 0}) == ["f: expected False, got 0"]
