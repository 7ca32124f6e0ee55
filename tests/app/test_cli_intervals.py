"""`estimate --ensemble` and `simulate --ensemble`: ranges in --json, nested intervals around the median, the same
numbers on a second run (seeded draws), clean errors for bad --ensemble / --interval values."""

from __future__ import annotations

import json

import pytest

from roofsim.app.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_ensemble_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", "8", "--ensemble", "32",
            "--interval", "80,90", "--json")
    code, out, _ = run(capsys, *args)
    assert code == 0
    r = json.loads(out)
    e = r["ensemble"]
    assert e["members"] == 32 and e["levels"] == [0.8, 0.9] and "held-out shapes" in e["error_model"]
    for m in ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s"):
        v = e["metrics"][m]
        assert v["point"] == r[m]
        assert v["90%"][0] <= v["80%"][0] <= v["median"] <= v["80%"][1] <= v["90%"][1]
        assert v["90%"][0] < v["90%"][1]
    assert json.loads(run(capsys, *args)[1])["ensemble"] == e  # seeded: the same ranges again


def test_simulate_ensemble_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    base = ("simulate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--num-requests", "30",
            "--ensemble", "2", "--jobs", "1")
    code, out, _ = run(capsys, *base, "--json")
    assert code == 0
    r = json.loads(out)
    v = r["ensemble"]["metrics"]["ttft_s.p99"]
    assert v["point"] == r["ttft_s"]["p99"] and r["ensemble"]["members"] == 2
    assert r["ensemble"]["error_models"] == ["h100-sxm: h100-sxm: held-out shapes"]
    code, out, _ = run(capsys, *base)
    assert code == 0 and "ensemble of 2 members" in out and "90% interval" in out


def test_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    dep = ("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm")
    code, _, err = run(capsys, *dep, "--ensemble", "0")
    assert code == 2 and "--ensemble=0 must be >= 1" in err
    with pytest.raises(SystemExit) as exc:  # argparse rejects the flag's value itself
        main([*dep, "--interval", "80,120"])
    assert exc.value.code == 2 and "strictly between 0 and 100" in capsys.readouterr().err
