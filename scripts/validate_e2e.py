"""Regenerate the numbers of docs/validation-e2e.md: the AIConfigurator H100 dense rows end to end and the vLLM
Llama-3.3-70B TP8 A100-40GB replays, with the shipped calibration profiles and with the model defaults; then
(shipped profiles only) every other agg row of the silicon sample the tool can load (MoE, other models) and the
Splitwise and Argonne static batches.

    .venv/bin/python scripts/validate_e2e.py [--data ../shared/data] [--out build/validate_e2e.json]
                                             [--static-every N]   # every Nth static-batch row (default 1 = all)
    .venv/bin/python scripts/validate_e2e.py --ensemble 16 [--coverage-only] [--every 4,10,10] \
                                             [--checks-out build/checks.json] [--store-e2e-term]
    .venv/bin/python scripts/validate_e2e.py --checks-in build/checks.json --coverage-only [--store-e2e-term]

--ensemble M adds interval coverage (docs/intervals.md): every Nth row of the silicon, Splitwise and Argonne tables
and every vLLM log, each run as an M-member ensemble with its profile's kernel error model; the share of measured
values inside the 80 % / 90 % intervals, and the same on the odd-numbered rows/logs after an end-to-end term fitted
on the even-numbered ones (validation.uncertainty.e2e_error_term, and the normalized fit_e2e_term).
--store-e2e-term fits the normalized term on every data set and writes it into every shipped profile ([e2e]),
where estimate/simulate --ensemble read it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from roofsim.model.cost import Calibration
from roofsim.model.uncertainty import ANY, E2ETerm, metric_family
from roofsim.validation.bench_table import BenchRow
from roofsim.validation.converters import convert_aiconfigurator_silicon, convert_argonne, convert_splitwise
from roofsim.validation.e2e import e2e_error_stats, interval_checks, predict_table, shipped_calibration
from roofsim.validation.profiles import error_model_for, profile_for, shipped_profiles, store_e2e_term
from roofsim.validation.replay import make_scheduler_config, replay_log
from roofsim.validation.uncertainty import (
    E2E_DIFFICULTY_MIN_UNITS,
    INTERVAL_LEVELS,
    TARGETS_TEXT,
    IntervalCheck,
    apply_e2e_term,
    capped_note,
    coverage_by,
    coverage_table,
    e2e_error_term,
    fit_e2e_term,
    split_units,
    widen,
)

ROOT = Path(__file__).resolve().parents[1]
DENSE = ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-32B", "meta-llama/Llama-3.1-70B")
VLLM_DIR = "serving/vllm_llm-k8s/results_serving_meta-llama-Llama-3.3-70B-Instruct/01_tp8_pp1"
RATES = ("01", "04", "16", "inf")


def _fmt_stats(stats: dict) -> list[str]:
    lines = ["| group | metric | n | median abs err % | MAPE % | bias % |", "|---|---|---:|---:|---:|---:|"]
    for g, d in stats.items():
        for m, s in d.items():
            lines.append(f"| {g} | {m} | {s['n']} | {s['median_abs_pct_err']:.1f} | {s['mape']:.1f} | "
                         f"{s['bias_pct']:+.1f} |")
    return lines


def _vllm_log(data: Path, q: str) -> Path:
    return data / VLLM_DIR / f"serving_meta-llama-Llama-3.3-70B-Instruct_tp8_pp1_sharegpt_qps_{q}.json"


def _coverage_md(name: str, checks: list[IntervalCheck], term_key: Callable[[IntervalCheck], str] = lambda c: c.metric
                 ) -> tuple[list[str], dict]:
    """Coverage of one dataset: kernel-only intervals per metric and per group; then the end-to-end term (one per
    term_key, default per metric) fitted on the even units and the odd units' coverage without and with it."""
    lv = INTERVAL_LEVELS
    by_metric = coverage_by(checks, lambda c: c.metric)
    by_group = coverage_by(checks, lambda c: c.group)[1:]
    cal, test = split_units(checks)
    term = e2e_error_term(cal, term_key)
    test_kernel = coverage_by(test, lambda c: c.metric)
    test_e2e = coverage_by(widen(test, term, term_key), lambda c: c.metric)
    scaled = fit_e2e_term(cal)
    test_scaled = coverage_by(apply_e2e_term(test, scaled), lambda c: c.metric)
    learned = fit_e2e_term(cal, difficulty=True)
    test_learned = coverage_by(apply_e2e_term(test, learned), lambda c: c.metric)
    d = learned.difficulty
    how = ("no learned difficulty: " + (f"{len({c.unit for c in cal})} calibration rows/logs, fewer than "
                                        f"{E2E_DIFFICULTY_MIN_UNITS}" if len({c.unit for c in cal})
                                        < E2E_DIFFICULTY_MIN_UNITS else "none narrowed the calibration intervals")
           if d is None else f"ridge {d.ridge:g}; weights " + ", ".join(f"{f} {w:+.2f}" for f, w in
                                                                         zip(d.features, d.weights, strict=True)))
    notes = [n for n in (capped_note(scaled.n_scores or 0, lv), capped_note(learned.n_scores or 0, lv)) if n][:1]
    n_units = len({c.unit for c in checks})
    md = [f"#### {name}: {n_units} rows/logs, {len(checks)} measured values", "",
          "Kernel error model only (ensemble intervals):", "", coverage_table(by_metric, lv, "metric"), "",
          coverage_table(by_group, lv, "group"), "",
          f"End-to-end term fitted on the even-numbered rows/logs ({len({c.unit for c in cal})}), tested on the "
          f"odd-numbered ({len({c.unit for c in test})}); term (log, 80 %/90 %): "
          + ", ".join(f"{m} {t[lv[0]]:+.2f}/{t[lv[-1]]:+.2f}" for m, t in term.items()), "",
          "Test half, kernel error model only:", "", coverage_table(test_kernel, lv, "metric"), "",
          "Test half, with the end-to-end term:", "", coverage_table(test_e2e, lv, "metric"), "",
          "Test half, normalized end-to-end term (fit_e2e_term on the even-numbered rows/logs: centre and scale "
          "per table-group cell, else pooled, a rate scored as its reciprocal, one scaled-score quantile per level; "
          + ", ".join(f"Q({q:.0%}) {scaled.score_quantile(q):.2f}" for q in lv) + "):", "",
          coverage_table(test_scaled, lv, "metric"), "",
          "Test half, normalized end-to-end term with a learned difficulty (fit_e2e_term(..., difficulty=True): "
          f"each value's scale also follows its features; {how}):", "", coverage_table(test_learned, lv, "metric"),
          *[x for n in notes for x in ("", f"Warning: {n}.")]]
    js = {"units": n_units, "by_metric": [r.__dict__ for r in by_metric], "by_group": [r.__dict__ for r in by_group],
          "e2e_term": term, "test_kernel_only": [r.__dict__ for r in test_kernel],
          "test_with_e2e_term": [r.__dict__ for r in test_e2e],
          "test_with_normalized_term": [r.__dict__ for r in test_scaled],
          "test_with_learned_difficulty": [r.__dict__ for r in test_learned],
          "learned_difficulty": None if d is None else d.model_dump(), "capped": notes}
    return md, js


def collect_checks(data: Path, members: int, every: tuple[int, int, int], silicon_rows: list
                   ) -> dict[str, tuple[str, list[IntervalCheck]]]:
    """Data set -> (title, measured values with their kernel-ensemble intervals) of the silicon (every every[0]th
    dense H100 row), Splitwise (every every[1]th), Argonne (every every[2]th) tables and the vLLM logs, each
    row/log an ensemble of `members`."""
    tables = (("silicon H100 dense", silicon_rows, every[0], lambda r: f"{r.model.split('/')[-1]} {r.framework}"),
              ("Splitwise", list(convert_splitwise(data / "serving/splitwise/perf_model.csv").rows), every[1],
               lambda r: f"{r.model.split('/')[-1]} {r.hardware}"),
              ("Argonne", list(convert_argonne(data / "serving/argonne_llm_inference_bench/Plots/All_results.csv")
                               .rows), every[2], lambda r: f"{r.framework} {r.hardware}"))
    t0 = time.time()
    out: dict[str, tuple[str, list[IntervalCheck]]] = {}
    for name, rows, k, key in tables:
        res = predict_table(rows[::k], shipped_calibration, ensemble=members)
        out[name] = (f"{name}, every {k}th of {len(rows)} rows; problems (rows not simulated or without an error "
                     f"model): {len(res.problems)}", interval_checks(res.predictions, key))
        print(f"coverage {name} ({len(rows[::k])} rows) done at {time.time() - t0:.0f} s", file=sys.stderr)
    sched, _ = make_scheduler_config("vllm-v1", "a100-sxm-40gb")
    em, label = error_model_for("a100-sxm-40gb", "vllm")
    checks = []
    # each log as it was run: rate 1 cold, the later runs with its prompts in the prefix cache (Target 2); a cold
    # replay of a cached run scores a server state the log never had
    for q in RATES:
        cached = q != RATES[0]
        r = replay_log(_vllm_log(data, q), "meta-llama/Llama-3.3-70B-Instruct", "a100-sxm-40gb", 8, scheduler=sched,
                       calibration=profile_for("a100-sxm-40gb", "vllm"), prompts_cached=cached, ensemble=members,
                       error_model=em)
        checks += r.interval_checks(f"qps {q}{' cached' if cached else ''}")
    out["vllm"] = (f"vLLM Llama-3.3-70B TP8 A100-40GB logs ({label})", checks)
    print(f"coverage vLLM done at {time.time() - t0:.0f} s", file=sys.stderr)
    return out


def save_checks(path: Path, sets: dict[str, tuple[str, list[IntervalCheck]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: {"title": t, "checks": [c.__dict__ for c in v]} for k, (t, v) in sets.items()}),
                    encoding="utf-8")


def load_checks(path: Path) -> dict[str, tuple[str, list[IntervalCheck]]]:
    """save_checks' file read back (JSON keys of the interval levels back to floats)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: (v["title"], [IntervalCheck(**{**c, "bounds": {float(q): tuple(b) for q, b in c["bounds"].items()}})
                             for c in v["checks"]]) for k, v in raw.items()}


def coverage(sets: dict[str, tuple[str, list[IntervalCheck]]], members: int) -> tuple[list[str], dict]:
    """Coverage per data set (_coverage_md; the vLLM logs' CQR term per latency metric over its four statistics,
    not per statistic: 4 logs)."""
    md = ["", f"## Interval coverage ({f'ensembles of {members} members' if members else 'checks read from a file'})",
          ""]
    out: dict = {"members": members}
    for name, (title, checks) in sets.items():
        lines, out[name] = _coverage_md(title, checks, (lambda c: c.group) if name == "vllm" else (lambda c: c.metric))
        md += [*lines, ""]
    return md + [TARGETS_TEXT], out


def stored_term(sets: dict[str, tuple[str, list[IntervalCheck]]]) -> E2ETerm:
    """The end-to-end term profiles store: fit_e2e_term on every measured value of every data set, one cell per
    metric family (what estimate/simulate can look up: TTFT, TPOT, ITL, E2E, output throughput), with the learned
    difficulty when the fit chooses one: its features (metric family, kernel spread, isl/osl/concurrency/qps/tp)
    are all known to a run (simulator.ensemble.run_inputs, EnsembleResult.e2e_features). Units are named by their
    data set: row '0' of two sets is two rows/logs for the cross-fitting folds."""
    checks = [replace(c, unit=f"{name}:{c.unit}") for name, (_, v) in sets.items() for c in v]
    return fit_e2e_term(checks, lambda c: (metric_family(c.metric), ANY), difficulty=True,
                        source=f"scripts/validate_e2e.py --store-e2e-term: {len(checks)} measured values of "
                               f"{', '.join(sets)} (docs/validation-e2e.md)")


def _splitwise_group(r: BenchRow) -> str:
    """Splitwise group: model and GPU (the power-capped H100 is its own hardware, h100-sxm@490w)."""
    return f"{r.model.split('/')[-1]} {r.hardware}"


def _argonne_group(r: BenchRow) -> str:
    return f"{r.hardware} {r.framework}"


def _problem_kinds(problems: Iterable[str]) -> list[str]:
    """One line per kind of problem (the message after the row label, numbers and names kept), most first."""
    kinds = Counter(re.sub(r"^row \d+ \(.*?\): |^.* line \d+: ", "", p).split(":")[0][:110] for p in problems)
    return [f"- {n} x {k}" for k, n in kinds.most_common()]


def other_tables(data: Path, table, dense_rows: list, every: int, result: dict) -> list[str]:
    """The issue's other point targets, shipped profiles: the silicon agg rows outside the dense set (every other
    model the tool loads), then the Splitwise and Argonne static batches (every Nth row), per group and overall."""
    md: list[str] = []
    dense_ids = {id(r) for r in dense_rows}
    rest = [r for r in table.rows if id(r) not in dense_ids and not r.prefill_replicas]
    res = predict_table(rest, shipped_calibration)
    by = e2e_error_stats(res.predictions, lambda r: f"{r.model.split('/')[-1]} {r.framework} pp{r.pp}")
    by.update(e2e_error_stats(res.predictions))
    every_agg = e2e_error_stats([*res.predictions, *result.get("_dense_preds", ())])
    result["silicon_other_agg"] = {"by_group": by, "problems": list(res.problems)}
    result["silicon_every_agg"] = every_agg
    md += ["", f"### Silicon agg rows outside the dense set: {len(rest)} (calibration shipped)", *_fmt_stats(by),
           f"problems: {len(res.problems)}", "", "### Every silicon agg row the tool predicts (dense + the above)",
           *_fmt_stats(every_agg)]
    for name, conv, path, key in (
            ("Splitwise", convert_splitwise, "serving/splitwise/perf_model.csv", _splitwise_group),
            ("Argonne", convert_argonne, "serving/argonne_llm_inference_bench/Plots/All_results.csv", _argonne_group)):
        table = conv(data / path)
        rows = list(table.rows)[::every]
        unread = [p for p in table.problems if "has no roofsim hardware id" not in p]  # other accelerators
        res = predict_table(rows, shipped_calibration)
        by = e2e_error_stats(res.predictions, key)
        by.update(e2e_error_stats(res.predictions))
        result[f"static_{name.lower()}"] = {"by_group": by, "problems": list(res.problems), "unread": unread}
        md += ["", f"### {name} static batches: {len(rows)} rows (every {every}), calibration shipped",
               *_fmt_stats(by), f"problems: {len(res.problems)} of the rows simulated, {len(unread)} rows of the "
               "A100/H100 not read", *_problem_kinds([*res.problems, *unread])]
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "validate_e2e.json")
    ap.add_argument("--report", type=Path, default=None, help="also write the benchmarks HTML report here")
    ap.add_argument("--ensemble", type=int, default=0, help="also report interval coverage, ensembles of M members")
    ap.add_argument("--every", default="4,10,10",
                    help="coverage subsample: every Nth row of the silicon, Splitwise and Argonne tables")
    ap.add_argument("--checks-out", type=Path, default=None,
                    help="with --ensemble: also write every measured value with its interval (JSON) here")
    ap.add_argument("--checks-in", type=Path, default=None,
                    help="coverage from a --checks-out file instead of running the ensembles")
    ap.add_argument("--store-e2e-term", action="store_true",
                    help="with --ensemble/--checks-in: fit the end-to-end term on every data set and store it as "
                         "[e2e] in every shipped profile (validation.profiles.store_e2e_term)")
    ap.add_argument("--coverage-only", action="store_true", help="with --ensemble: only the coverage section")
    ap.add_argument("--static-every", type=int, default=1,
                    help="every Nth row of the Splitwise and Argonne static-batch tables (1 = all)")
    args = ap.parse_args(argv)
    t0 = time.time()
    table = convert_aiconfigurator_silicon(args.data / "serving/aiconfigurator_silicon/silicon_sample_h100.csv")
    rows = [r for r in table.rows if r.model in DENSE and r.hardware == "h100-sxm" and r.pp == 1]
    result: dict = {"silicon_rows": len(rows)}
    md: list[str] = [f"AIConfigurator silicon sample, H100 dense agg rows: {len(rows)}"]
    if args.ensemble > 1 or args.checks_in is not None:
        if args.checks_in is not None:
            sets = load_checks(args.checks_in)
        else:
            every = tuple(int(x) for x in args.every.split(","))
            sets = collect_checks(args.data, args.ensemble, every, rows)  # type: ignore[arg-type]
        if args.checks_out is not None:
            save_checks(args.checks_out, sets)
        cov_md, result["coverage"] = coverage(sets, args.ensemble)
        if args.store_e2e_term:
            term = stored_term(sets)
            for path in shipped_profiles().values():
                store_e2e_term(path, term)
            cov_md += ["", f"End-to-end term stored in {len(shipped_profiles())} profiles: {term.source}"]
        if args.coverage_only:
            md = cov_md
    preds_shipped = None
    for name, cal in (() if args.coverage_only else (("shipped", shipped_calibration), ("defaults", Calibration()))):
        res = predict_table(rows, cal)
        if name == "shipped":
            preds_shipped = res.predictions
            result["_dense_preds"] = res.predictions
        by = e2e_error_stats(res.predictions, lambda r: f"{r.model.split('/')[-1]} {r.framework}")
        by.update(e2e_error_stats(res.predictions))
        result[f"silicon_{name}"] = {"by_group": by, "problems": list(res.problems)}
        md += ["", f"### calibration: {name}", *(_fmt_stats(by)), f"problems: {len(res.problems)}"]
        print(f"silicon ({name}) done at {time.time() - t0:.0f} s", file=sys.stderr)
    if args.report is not None and preds_shipped is not None:
        from roofsim.validation.e2e_report import write_benchmarks_report  # noqa: PLC0415

        write_benchmarks_report(args.report, preds_shipped, result["silicon_shipped"]["by_group"],
                                "AIConfigurator H100 dense rows (shipped calibration)")
    sched, note = make_scheduler_config("vllm-v1", "a100-sxm-40gb")
    result["vllm_scheduler"] = note
    vllm_cals = (("shipped", profile_for("a100-sxm-40gb", "vllm")), ("defaults", Calibration()))
    for name, cal in (() if args.coverage_only else vllm_cals):
        md += ["", f"### vLLM Llama-3.3-70B TP8 8xA100-40GB, calibration {name} ({note})",
               "| rate | TTFT mean meas/pred ms (err %) | TTFT P99 meas/pred ms (err %) | TPOT mean meas/pred ms (err %) | "
               "ITL P99 meas/pred ms | E2E mean err % | duration err % |", "|---|---|---|---|---|---:|---:|"]
        for q, cached in [(q, False) for q in RATES] + [(q, True) for q in RATES[1:]]:
            r = replay_log(_vllm_log(args.data, q), "meta-llama/Llama-3.3-70B-Instruct", "a100-sxm-40gb", 8, scheduler=sched,
                           calibration=cal, prompts_cached=cached)
            c = r.comparison
            result[f"vllm_{name}_qps_{q}{'_cached' if cached else ''}"] = r.as_json()
            t, p, i = c["ttft_s"]["mean"], c["tpot_s"]["mean"], c["itl_s"]["p99"]
            t99 = c["ttft_s"]["p99"]
            md.append(f"| {q}{' prompts cached' if cached else ''} | {t['measured'] * 1e3:.1f} / {t['predicted'] * 1e3:.1f} ({t['err_pct']:+.1f}) | "
                      f"{t99['measured'] * 1e3:.1f} / {t99['predicted'] * 1e3:.1f} ({t99['err_pct']:+.1f}) | "
                      f"{p['measured'] * 1e3:.1f} / {p['predicted'] * 1e3:.1f} ({p['err_pct']:+.1f}) | "
                      f"{i['measured'] * 1e3:.1f} / {i['predicted'] * 1e3:.1f} | "
                      f"{c['e2e_s']['mean']['err_pct']:+.1f} | {r.totals['duration_s']['err_pct']:+.1f} |")
    if not args.coverage_only:
        md += other_tables(args.data, table, rows, args.static_every, result)
        print(f"other tables done at {time.time() - t0:.0f} s", file=sys.stderr)
    if (args.ensemble > 1 or args.checks_in is not None) and not args.coverage_only:
        md += cov_md
    result.pop("_dense_preds", None)
    result["wall_s"] = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    sys.stdout.write("\n".join(md) + f"\n\nwall {result['wall_s']:.0f} s; JSON in {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
