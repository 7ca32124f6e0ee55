"""The serving what-if page switched to a disaggregated deployment: the widgets build the two pools and the
link, a scenario restores them, and the page shows the per-pool and handover figures the simulator reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from roofsim.app.dashboard.state.serving import restore_scenario, sim_config

PAGE = Path(__file__).resolve().parents[2] / "app/dashboard/pages/2_Serving_what-if.py"


def test_widgets_build_the_two_pools_and_restore() -> None:
    cfg = sim_config(sv_deployment="disaggregated", sv_count=2, sv_tp=1, sv_decode_count=3, sv_decode_tp=2,
                     sv_decode_hardware="a100-sxm-80gb", sv_kv_link="nvlink", sv_kv_layerwise=True)
    assert cfg.disaggregated
    assert [(g.role, g.count, g.tp, g.hardware) for g in cfg.replicas] == [
        ("prefill", 2, 1, "h100-sxm"), ("decode", 3, 2, "a100-sxm-80gb")]
    assert cfg.replicas[0].model == cfg.replicas[1].model and cfg.replicas[0].engine == cfg.replicas[1].engine
    assert (cfg.kv_link.kind, cfg.kv_link.layerwise) == ("nvlink", True)
    values, missing = restore_scenario(cfg)
    assert missing == [] and values["sv_deployment"] == "disaggregated" and values["sv_decode_count"] == 3
    assert sim_config(values) == cfg
    assert not sim_config().disaggregated  # colocated by default


@pytest.mark.timeout(300)
def test_page_runs_a_disaggregated_deployment() -> None:
    at = AppTest.from_file(str(PAGE), default_timeout=240)
    at.run()
    at.number_input(key="sv_num_requests").set_value(100)
    at.radio(key="sv_deployment").set_value("disaggregated").run()
    at.button(key="run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(c.value for c in at.caption)
    assert "Prefill pool: 1 GPUs" in text and "Decode pool: 1 GPUs" in text and "TTFT counts the handover" in text
