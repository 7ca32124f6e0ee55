"""`roofsim simulate` of a disaggregated deployment: --set turns a run into prefill and decode pools, the text
output names the pools and the handover, --json carries summary["disaggregation"]."""

from __future__ import annotations

import json

from roofsim.app.cli import main

SETS = ["--set", "replicas.0.role=prefill", "--set", "replicas.1={model = 'llama-3.1-8b', hardware = 'h100-sxm', "
        "role = 'decode'}", "--set", "kv_link.kind=nvlink"]


def test_simulate_disaggregated_from_the_cli(capsys) -> None:
    assert main(["simulate", "--num-requests", "40", "--rate", "2", *SETS]) == 0
    out = capsys.readouterr().out
    assert "prefill pool: 1 x" in out and "decode pool: 1 x" in out and "KV link nvlink" in out
    assert "TTFT counts the handover" in out
    assert main(["simulate", "--num-requests", "40", "--rate", "2", "--json", *SETS]) == 0
    s = json.loads(capsys.readouterr().out)
    dis = s["disaggregation"]
    assert dis["prefill"]["gpus"] == 1 and dis["decode"]["gpus"] == 1
    assert dis["handover"]["requests"] == 40 and dis["handover"]["requests_in_handover_at_end"] == 0
