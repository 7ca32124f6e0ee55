"""Regenerate the numbers of docs/validation-e2e.md: the AIConfigurator H100 dense rows end to end and the vLLM
Llama-3.3-70B TP8 A100-40GB replays, with the shipped calibration profiles and with the model defaults.

    .venv/bin/python scripts/validate_e2e.py [--data ../shared/data] [--out build/validate_e2e.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from roofsim.model.cost import Calibration
from roofsim.validation.converters import convert_aiconfigurator_silicon
from roofsim.validation.e2e import e2e_error_stats, predict_table, shipped_calibration
from roofsim.validation.profiles import profile_for
from roofsim.validation.replay import make_scheduler_config, replay_log

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "validate_e2e.json")
    ap.add_argument("--report", type=Path, default=None, help="also write the benchmarks HTML report here")
    args = ap.parse_args(argv)
    t0 = time.time()
    table = convert_aiconfigurator_silicon(args.data / "serving/aiconfigurator_silicon/silicon_sample_h100.csv")
    rows = [r for r in table.rows if r.model in DENSE and r.hardware == "h100-sxm" and r.pp == 1]
    result: dict = {"silicon_rows": len(rows)}
    md: list[str] = [f"AIConfigurator silicon sample, H100 dense agg rows: {len(rows)}"]
    preds_shipped = None
    for name, cal in (("shipped", shipped_calibration), ("defaults", Calibration())):
        res = predict_table(rows, cal)
        if name == "shipped":
            preds_shipped = res.predictions
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
    for name, cal in (("shipped", profile_for("a100-sxm-40gb", "vllm")), ("defaults", Calibration())):
        md += ["", f"### vLLM Llama-3.3-70B TP8 8xA100-40GB, calibration {name} ({note})",
               "| rate | TTFT mean meas/pred ms (err %) | TPOT mean meas/pred ms (err %) | "
               "ITL P99 meas/pred ms | E2E mean err % | duration err % |", "|---|---|---|---|---:|---:|"]
        for q, cached in [(q, False) for q in RATES] + [(q, True) for q in RATES[1:]]:
            log = args.data / VLLM_DIR / f"serving_meta-llama-Llama-3.3-70B-Instruct_tp8_pp1_sharegpt_qps_{q}.json"
            r = replay_log(log, "meta-llama/Llama-3.3-70B-Instruct", "a100-sxm-40gb", 8, scheduler=sched,
                           calibration=cal, prompts_cached=cached)
            c = r.comparison
            result[f"vllm_{name}_qps_{q}{'_cached' if cached else ''}"] = r.as_json()
            t, p, i = c["ttft_s"]["mean"], c["tpot_s"]["mean"], c["itl_s"]["p99"]
            md.append(f"| {q}{' prompts cached' if cached else ''} | {t['measured'] * 1e3:.1f} / {t['predicted'] * 1e3:.1f} ({t['err_pct']:+.1f}) | "
                      f"{p['measured'] * 1e3:.1f} / {p['predicted'] * 1e3:.1f} ({p['err_pct']:+.1f}) | "
                      f"{i['measured'] * 1e3:.1f} / {i['predicted'] * 1e3:.1f} | "
                      f"{c['e2e_s']['mean']['err_pct']:+.1f} | {r.totals['duration_s']['err_pct']:+.1f} |")
    result["wall_s"] = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    sys.stdout.write("\n".join(md) + f"\n\nwall {result['wall_s']:.0f} s; JSON in {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
