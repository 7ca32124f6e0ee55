"""`estimate --ensemble` and `simulate --ensemble`: ranges in --json, nested intervals around the median, the same
numbers on a second run (seeded draws), clean errors for bad --ensemble / --interval values."""

from __future__ import annotations

import json
import math

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


def test_profile_e2e_term_gives_e2e_ranges(capsys: pytest.CaptureFixture[str], tmp_path,  # noqa: ANN001
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped profile with an [e2e] table (schema 4): estimate and simulate --ensemble add 'e2e 80%' / 'e2e 90%'
    around the plain run for the metric families it has cells for, in --json and in the text table."""
    import shutil

    from roofsim.model.uncertainty import E2ECell, E2ETerm
    from roofsim.validation import profiles

    term = E2ETerm(score_levels=(0.8, 0.9), score_quantiles=(1.0, 2.0),
                   cells=(E2ECell(key="ttft", n=9, centre=0.1, scale=0.2), E2ECell(key="*", n=20, centre=0, scale=1)))
    for p in profiles.PROFILE_DIR.glob("*.toml"):
        shutil.copy(p, tmp_path / p.name)
    profiles.store_e2e_term(tmp_path / "h100-sxm.toml", term)
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    r = json.loads(run(capsys, "estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", "8",
                       "--ensemble", "2", "--json")[1])
    m = r["ensemble"]["metrics"]
    assert m["ttft_s"]["e2e 80%"] == pytest.approx([r["ttft_s"] * math.exp(0.1 - 0.2),
                                                    r["ttft_s"] * math.exp(0.1 + 0.2)], rel=1e-6)
    assert "e2e 80%" not in m["tpot_s"]  # no TPOT cell: kernel ranges only
    code, out, _ = run(capsys, "simulate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--num-requests",
                       "20", "--ensemble", "2", "--jobs", "1")
    assert code == 0 and "e2e 90% interval" in out


def test_profile_e2e_difficulty_follows_the_run(capsys: pytest.CaptureFixture[str], tmp_path,  # noqa: ANN001
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile whose [e2e] term has a learned difficulty: estimate and simulate --ensemble scale the cell's e2e
    range by exp(w (x - mean) / sd) of their own run's inputs (estimate: --batch as the concurrency; simulate:
    --tp), so a batch of 32 gets twice the log half-width of a batch of 8 and a tp=2 run sqrt(2) that of tp=1."""
    import shutil

    from roofsim.model.uncertainty import E2ECell, E2EDifficulty, E2ETerm
    from roofsim.validation import profiles

    d = E2EDifficulty(features=("log_concurrency", "log_tp"), mean=(math.log(8), 0.0), sd=(1.0, 1.0),
                      weights=(0.5, 0.5), ridge=0.1)
    term = E2ETerm(score_levels=(0.8, 0.9), score_quantiles=(1.0, 2.0), difficulty=d,
                   cells=(E2ECell(key="ttft", n=9, centre=0.1, scale=0.2), E2ECell(key="*", n=20, centre=0, scale=1)))
    shutil.copy(profiles.PROFILE_DIR / "h100-sxm.toml", tmp_path / "h100-sxm.toml")
    profiles.store_e2e_term(tmp_path / "h100-sxm.toml", term)
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)

    def e2e_range(*argv: str) -> tuple[float, list[float]]:
        r = json.loads(run(capsys, *argv, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--ensemble", "2",
                           "--json")[1])
        m = r["ensemble"]["metrics"]
        key = "ttft_s" if "ttft_s" in m else "ttft_s.p99"
        return m[key]["point"], m[key]["e2e 80%"], r["ensemble"]["e2e_inputs"]

    for batch, factor in ((8, 1.0), (32, 2.0)):  # exp(0.5 log(32 / 8)) = 2
        point, rng, inputs = e2e_range("estimate", "--batch", str(batch))
        assert inputs == {"isl": 1024.0, "osl": 256.0, "concurrency": float(batch), "qps": 0.0, "tp": 1.0}
        assert rng == pytest.approx([point * math.exp(0.1 - 0.2 * factor), point * math.exp(0.1 + 0.2 * factor)],
                                    rel=1e-6)
    point, rng, inputs = e2e_range("simulate", "--num-requests", "20", "--jobs", "1", "--tp", "2")
    assert inputs["tp"] == 2.0 and inputs["qps"] > 0 and inputs["concurrency"] == 0.0  # open loop by default
    factor = math.sqrt(2) * math.exp(0.5 * (0.0 - math.log(8)))  # no concurrency: log 1, below the mean log 8
    assert rng == pytest.approx([point * math.exp(0.1 - 0.2 * factor), point * math.exp(0.1 + 0.2 * factor)],
                                rel=1e-6)
