"""Time the dashboard's pure functions: a step-explorer redraw (step_view + figures, cold and cached) and a
5,000-request serving run of Llama-3.1-8B on one H100 (simulate + light_result + figures). Prints JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import plotly.io as pio

from roofsim.app.dashboard.state.serving import sim_config
from roofsim.app.dashboard.state.serving_results import light_result
from roofsim.app.dashboard.state.step import StepConfig, step_view
from roofsim.app.figures import (
    kernel_time_figure,
    latency_cdf_figure,
    memory_figure,
    roofline_figure,
    timeseries_figure,
)
from roofsim.simulator.run import simulate


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def step_figures(v: dict[str, Any]) -> list[str]:
    figs = [roofline_figure(v["roofs"], v["bandwidth_bytes_per_s"], v["kernels"]), kernel_time_figure(v["kernels"]),
            memory_figure({"A": v["memory"]})]
    return [pio.to_json(f) for f in figs]  # what Streamlit serialises for the browser


def main() -> None:
    out: dict[str, float] = {}
    batches = iter(range(1, 10_000))
    out["step_view_cold_s"] = best_of(lambda: step_view(StepConfig(batch=next(batches))))
    v = step_view(StepConfig())
    out["step_figures_build_and_serialise_s"] = best_of(lambda: step_figures(v))
    out["step_redraw_cold_total_s"] = out["step_view_cold_s"] + out["step_figures_build_and_serialise_s"]

    cfg = sim_config(sv_num_requests=5000)
    t = time.perf_counter()
    res = simulate(cfg)
    out["serving_5000_simulate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    lr = light_result(res)
    figs = [latency_cdf_figure({"current": lr[k]}, metric=k) for k in ("ttft_s", "tpot_s", "e2e_s")]
    figs += [timeseries_figure({"current": lr["series"][k]}, "y", k) for k in ("throughput", "waiting", "batch", "kv")]
    _ = [pio.to_json(f) for f in figs]
    out["serving_5000_summarise_and_figures_s"] = time.perf_counter() - t
    out["serving_5000_iterations"] = float(res.summary["iterations"])
    out["serving_5000_sim_s_per_wall_s"] = float(res.summary["sim_s_per_wall_s"])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
