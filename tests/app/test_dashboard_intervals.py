"""The serving what-if page with an ensemble (streamlit AppTest, no browser): ranges under the KPI cards equal an
independent ensemble of the same config, the latency CDFs carry the band, and one member shows no ranges."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from roofsim.app.dashboard.state.serving import (
    cdf_band,
    kpi_ranges,
    serving_defaults,
    serving_ensemble,
    sim_config,
)
from roofsim.app.figures import latency_cdf_figure

PAGE = Path(__file__).resolve().parents[2] / "app" / "dashboard" / "pages" / "2_Serving_what-if.py"
N = 60
MEMBERS = 3


def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def test_kpi_ranges_and_cdf_bands_with_an_ensemble() -> None:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    at.number_input(key="sv_num_requests").set_value(N)
    at.button(key="run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any(c.startswith("80%:") for c in _captions(at))  # one member: no ranges
    at.number_input(key="sv_ensemble").set_value(MEMBERS).run()
    assert not at.exception, [e.value for e in at.exception]
    ens = serving_ensemble(sim_config(serving_defaults() | {"sv_num_requests": N}), MEMBERS)
    want = kpi_ranges(ens)
    shown = _captions(at)
    assert want["P99 TTFT"] in shown and want["Throughput"] in shown
    assert any("ensemble of 3 runs" in c for c in shown)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert sum("80 % interval (ensemble)" in s for s in specs) == 3  # TTFT, TPOT and E2E CDFs


def test_kpi_range_text_and_band_shape() -> None:
    ens = {m: {"80%": [0.01, 0.02], "90%": [0.005, 0.03]} for m in
           ("ttft_s.p50", "ttft_s.p90", "ttft_s.p99", "tpot_s.p50", "tpot_s.p99", "e2e_s.p50", "e2e_s.p99",
            "output_tokens_per_s", "goodput_requests_per_s", "cost_per_million_output_tokens_usd",
            "energy_per_output_token_j")}
    r = kpi_ranges(ens)
    assert r["P99 TTFT"] == "80%: 10.0-20.0 ms" and r["P50 E2E"] == "80%: 0.01-0.02 s" and r["J / token"] == \
        "80%: 0.010-0.020"
    band = cdf_band(ens, "ttft_s")
    assert band == [(0.5, 0.01, 0.02), (0.9, 0.01, 0.02), (0.99, 0.01, 0.02)]
    fig = latency_cdf_figure({"current": [0.01, 0.015, 0.02]}, band=band)
    assert fig.data[0].fill == "toself" and list(fig.data[0].y) == [0.5, 0.9, 0.99, 0.99, 0.9, 0.5]
    assert list(fig.data[0].x) == pytest.approx([0.01] * 3 + [0.02] * 3)
