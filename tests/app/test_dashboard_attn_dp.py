"""The serving page's attention DP and EP (a mixture-of-experts model only), driven headless with AppTest: the run
equals the simulator's on the same replica group, a scenario restores the widgets, a dense model hides them."""

from __future__ import annotations

import tomllib

from streamlit.testing.v1 import AppTest

from roofsim.app.dashboard.state.common import config_toml, parse_metric
from roofsim.app.dashboard.state.serving import sim_config
from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate
from roofsim.validation.profiles import resolve_config_calibrations

from .test_dashboard_apptest import PAGES, TIMEOUT_S

MOE = "Qwen3-30B-A3B"
N = 60


def _page() -> AppTest:
    at = AppTest.from_file(str(PAGES / "pages" / "2_Serving_what-if.py"), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _keys(at: AppTest) -> set[str]:
    return {w.key for w in at.number_input}


def test_attention_dp_of_a_moe_model_runs_like_the_simulator() -> None:
    at = _page()
    assert not {"sv_attn_dp", "sv_ep"} & _keys(at)  # the default Llama-3.1-8B is dense
    at.selectbox(key="sv_model").set_value(MOE).run()
    assert {"sv_attn_dp", "sv_ep"} <= _keys(at)
    at.number_input(key="sv_num_requests").set_value(N)
    at.number_input(key="sv_attn_dp").set_value(2)
    at.number_input(key="sv_ep").set_value(2).run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    shown = SimConfig.model_validate(tomllib.loads(at.code[0].value))
    g = shown.replicas[0]
    assert (g.model, g.attn_dp, g.ep, g.tp) == (MOE, 2, 2, 1)
    ref = simulate(resolve_config_calibrations(SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "rate_per_s": 4.0, "num_requests": N},
        "replicas": [{"model": MOE, "hardware": "h100-sxm", "engine": "vllm", "attn_dp": 2, "ep": 2,
                      "quant": {"weight_dtype": "bf16", "activation_dtype": "bf16", "kv_dtype": "bf16"}}],
        "slo": {"ttft_s": 1.0, "tpot_s": 0.1}, "seed": 0}))[0]).summary
    p50 = next(m for m in at.metric if m.label == "P50 TPOT")
    assert abs(parse_metric(p50.value) - ref["tpot_s"]["p50"] * 1e3) <= 0.05


def test_scenario_restores_attention_dp_and_the_decode_pool_keeps_one_rank_and_a_fitting_ep() -> None:
    cfg = sim_config(sv_model=MOE, sv_attn_dp=4, sv_ep=4)
    assert (cfg.replicas[0].attn_dp, cfg.replicas[0].ep) == (4, 4)
    at = _page()
    at.file_uploader(key="restore").set_value(("s.toml", config_toml(cfg).encode(), "application/toml")).run()
    assert not at.exception
    assert (at.number_input(key="sv_attn_dp").value, at.number_input(key="sv_ep").value) == (4, 4)
    disagg = sim_config(sv_model=MOE, sv_attn_dp=4, sv_ep=4, sv_deployment="disaggregated")
    assert [(g.role, g.attn_dp, g.ep) for g in disagg.replicas] == [("prefill", 4, 4), ("decode", 1, 1)]
    # the EP degree carries over to a decode pool whose tensor-parallel group holds it
    wide = sim_config(sv_model=MOE, sv_tp=4, sv_ep=4, sv_deployment="disaggregated", sv_decode_tp=4)
    assert [(g.role, g.tp, g.ep) for g in wide.replicas] == [("prefill", 4, 4), ("decode", 4, 4)]
    # a dense model: the widgets are not written, whatever they held
    assert sim_config(sv_attn_dp=4, sv_ep=4).replicas[0].attn_dp == 1
