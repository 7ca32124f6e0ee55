"""Malformed and extreme command lines end in one clear message naming the flag, field, file or limit, with the
documented exit code and no traceback (the fast cases of scripts/cli_robustness.py, in-process); internal errors
say they are a bug; JSON has null for undefined statistics; an interrupted write leaves no file."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from roofsim.app.cli import main
from roofsim.simulator.limits import LIMITS, MAX_REQUESTS
from roofsim.simulator.outfiles import atomic_path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cli_robustness", ROOT / "scripts" / "cli_robustness.py")
assert _spec is not None and _spec.loader is not None
robust = importlib.util.module_from_spec(_spec)
sys.modules["cli_robustness"] = robust  # dataclasses look their module up by name
_spec.loader.exec_module(robust)

# In-process: cases that fail at argument or config validation, before loading a model (each well under 1 s).
IN_PROCESS = [c for c in robust.CASES if c.fast and c.argv[0] in ("simulate", "plan", "calibrate", "measure", "app")
              and not any("{d}" in a for a in c.argv) and c.id not in ("sim-unknown-model", "sim-unknown-hardware")]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("robust")
    robust.make_fixtures(d)
    return d


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: bad flag value
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def test_the_table_has_the_issue_cases_and_60_more() -> None:
    ids = {c.id for c in robust.CASES}
    assert len(ids) == len(robust.CASES) >= 60
    assert {"sim-duration-1e308", "sim-num-requests-1e12", "sim-duration-1e9", "sim-replicas-1e6",
            "val-bench-concurrency-1e8", "sim-rate-1e-300", "sim-rate-scale-0", "sim-seed-neg", "est-batch-1e9",
            "val-bench-header-only", "val-kernels-empty-dir"} <= ids
    assert len(IN_PROCESS) >= 30


@pytest.mark.parametrize("case", IN_PROCESS, ids=lambda c: c.id)
def test_bad_flag_is_one_clear_message(case: object, fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, _, _ = robust.expand(case, fixtures)
    code, err = _run(argv, capsys)
    assert robust.check(case, code, err, fixtures) == []


@pytest.mark.parametrize("cid", ["sim-config-bad-toml", "sim-config-unknown-field", "sim-config-clients-1e8",
                                 "sim-out-existing", "sim-missing-trace", "val-bench-header-only",
                                 "val-kernels-empty-dir", "convert-out-exists", "plan-report-no-folder",
                                 "calibrate-out-exists", "measure-out-exists"])
def test_bad_file_is_one_clear_message(cid: str, fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in robust.CASES if c.id == cid)
    argv, _, _ = robust.expand(case, fixtures)
    code, err = _run(argv, capsys)
    assert robust.check(case, code, err, fixtures) == []


def test_limit_errors_name_the_flag_and_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["simulate", "--num-requests", "1e12"], capsys)
    assert code == 2
    assert f"argument --num-requests: 1e12: 1000000000000 is above the limit MAX_REQUESTS={MAX_REQUESTS}" in err
    code, err = _run(["simulate", "--rate-scale", "0"], capsys)
    assert code == 2 and "argument --rate-scale: 0: Input should be greater than 0" in err
    code, err = _run(["simulate", "--seed", "-1"], capsys)
    assert code == 2 and "argument --seed: -1: Input should be greater than or equal to 0" in err


def test_tiny_rate_is_refused_not_simulated_to_zero_latency(capsys: pytest.CaptureFixture[str]) -> None:
    """1e-300 req/s put 5 arrivals near 5e300 s, where a millisecond step does not move a float clock: TTFT 0.0."""
    code, err = _run(["simulate", "--num-requests", "5", "--rate", "1e-300"], capsys)
    assert code == 2 and "span_s=5e+300 is above the limit MAX_DURATION_S=1e+07" in err


def test_every_limit_is_documented() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    for name in LIMITS:
        assert f"`{name}`" in doc, name


def test_estimate_does_not_suggest_the_layout_it_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["estimate", "--model", "llama-3.1-8b", "--hardware", "h100", "--batch", "100000"], capsys)
    assert code == 2 and "does not fit on 1 x h100-sxm (tp=1, pp=1)" in err
    assert "would fit: tp=1 pp=1" not in err and "lower the batch or the prompt length" in err


def test_internal_error_says_bug_and_hides_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import roofsim.app.cmd_simulate as cs

    def broken(*a: object, **k: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cs, "simulate", broken)
    code, err = _run(["simulate", "--num-requests", "5", "--json"], capsys)
    assert code == 1
    assert "roofsim: internal error: ZeroDivisionError: boom" in err and "this is a bug in roofsim" in err
    assert "Traceback" not in err and "run again with -v" in err
    code, err = _run(["simulate", "--num-requests", "5", "--json", "-v"], capsys)
    assert code == 1 and "Traceback (most recent call last)" in err and "ZeroDivisionError: boom" in err


def test_json_has_null_for_undefined_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing completes before max_sim_time_s: every latency percentile is undefined -> null, not NaN."""
    code = main(["simulate", "--num-requests", "5", "--set", "max_sim_time_s=0.001", "--json",
                 "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0

    def refuse(c: str) -> None:
        raise AssertionError(f"{c} in JSON")
    d = json.loads(out, parse_constant=refuse)
    assert d["requests_completed"] == 0 and d["ttft_s"]["p99"] is None
    assert json.loads((tmp_path / "o" / "summary.json").read_text(), parse_constant=refuse)["ttft_s"]["mean"] is None


def test_output_checked_before_the_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import roofsim.app.cmd_simulate as cs

    monkeypatch.setattr(cs, "simulate", lambda *a, **k: pytest.fail("simulated before checking --out"))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "requests.csv").write_text("old")
    code, err = _run(["simulate", "--num-requests", "5", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--out" in err and "requests.csv" in err and "--force" in err


def test_atomic_path_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


# The child runs `roofsim simulate --out` until it writes requests.csv, says so and waits mid-write: the test's
# signal then lands while the file is half written, on any machine however fast or loaded.
INTERRUPTIBLE = """
import sys, time
from roofsim.app.cli import main
import roofsim.app.cmd_simulate as cs

real_csv_writer = cs.csv.writer

class Slow:
    def __init__(self, f):
        self.w = real_csv_writer(f)
    def writerow(self, row):
        self.w.writerow(row)
        print("MARK writing", file=sys.stderr, flush=True)
        time.sleep(600)
    writerows = writerow

cs.csv.writer = Slow
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_writing_leaves_no_truncated_file(sig: int, tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, "simulate", "--num-requests", "5", "--out",
                             str(out), "--json"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("MARK writing"):
                break
        proc.send_signal(sig)
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "roofsim: interrupted" in err and "Traceback" not in err
    assert list(out.iterdir()) == []  # no requests.csv, no temp file


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for line in ("0    ok", "1    nothing could be done", "2    bad input", "130  interrupted"):
        assert line in out
    assert "docs/reliability.md" in out and "-v/--verbose" in out


def test_calibrate_local_defaults_to_a_per_user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roofsim.app.cmd_measure import default_local_profile

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_local_profile() == tmp_path / "cfg" / "roofsim" / "local-cpu.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_local_profile() == tmp_path / "home" / ".config" / "roofsim" / "local-cpu.toml"
