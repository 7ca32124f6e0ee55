"""Print the leave-one-GPU-out kernel accuracy table (fit on three GPUs, predict the fourth from its datasheet) and
the coverage of the kernel intervals on it, then build the shipped calibration profiles (validation/profiles/*.toml,
with their kernel error models) from ../shared/data and print their held-out shape errors; docs/validation.md
quotes them. Run: `make validate` (or this script directly); `--identify` adds the
per-knob fit report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roofsim.model.cost import Calibration  # noqa: E402
from roofsim.validation.calibrate import (  # noqa: E402
    BOUNDS,
    FIT_FIELDS,
    FROZEN_GPU_FIELDS,
    OPT_IN_FIELDS,
    calibrate,
    engine_base,
)
from roofsim.validation.kernel_tables import (  # noqa: E402
    KernelMeasurement,
    read_aiconfigurator,
    read_llmcompass,
    read_vidur,
)
from roofsim.validation.metrics_err import dtype_label, grouped_stats  # noqa: E402
from roofsim.validation.predict import predict_rows  # noqa: E402
from roofsim.validation.profiles import PROFILE_DIR, write_calibration  # noqa: E402
from roofsim.validation.transfer import (  # noqa: E402
    TransferReport,
    default_fit,
    family_of,
    freezing,
    knob_report,
    leave_one_gpu_out,
    read_aiconfigurator_sample,
)
from roofsim.validation.uncertainty import error_models_from_residuals, logo_coverage  # noqa: E402

log = logging.getLogger("build_profiles")

SYSTEMS = {"a100-sxm-80gb": "a100_sxm", "h100-sxm": "h100_sxm"}
# fitted dtypes: 16-bit, fp8 (and fp8_block) and W8A8 int8 have their own peak-efficiency fields; weight-only
# int4/int8 GEMMs are reported as not fitted (their dequantisation cost is the vector_eff term)
FIT_DTYPES = ("bf16", "fp16", "fp8", "int8")
# Starting point of every fit: the defaults with the framework all-reduce switches enabled. One-shot up to 8 MiB:
# vLLM's CustomAllreduce max_size default (8192 * 1024 bytes), above which the frameworks fall back to NCCL.
# The floor and the decode per-sequence term start above zero so the fit sees their gradient (a max() term
# that is inactive everywhere has none); the fit then moves them, down to 0 where the data says so.
# decode_cuda_graphs: vLLM (V1 cudagraph capture sizes up to 512), SGLang (cuda_graph_max_bs) and TRT-LLM's PyTorch
# flow (cuda_graph_config) replay decode batches as CUDA graphs, so a simulated decode step's TP all-reduces skip
# the eager host-dispatch floor that the tables' eager rows fit (A100 vLLM: 44 us eager vs 5 us graphed).
BASE = Calibration(comm_oneshot_max_bytes=8 * 1024 * 1024, comm_floor_s=3e-5, attn_decode_cuda_group=40.0,
                   decode_cuda_graphs=True)
OPS = ("gemm", "attn_prefill", "attn_decode", "allreduce")
MAX_PER_KEY = 5_000  # rows per (op, dtype, framework) kept for fitting/evaluation (random, seed 0)
# Leave-one-GPU-out: at most this many rows per (table, dtype, collective, phase) stratum (numpy generator, seed 0),
# which keeps `make validate` within minutes on 2 cores (docs/validation.md states the figure is on this sample).
LOGO_PER_STRATUM = 300
LOGO_SAME_GPU_FOLDS = 3

def run_transfer(data: Path, per_stratum: int = LOGO_PER_STRATUM, same_gpu_folds: int = LOGO_SAME_GPU_FOLDS,
                 seed: int = 0) -> tuple[TransferReport, list, dict[str, str]]:
    """The leave-one-GPU-out report on the AIConfigurator tables (sampled), its rows and the tables not read."""
    table, skipped = read_aiconfigurator_sample(data / "kernels" / "aiconfigurator", per_stratum, seed=seed)
    for problem in table.problems[:5]:
        log.warning("%s", problem)
    if table.problems:
        log.warning("%d AIConfigurator rows unreadable (first shown above)", len(table.problems))
    rep = leave_one_gpu_out(table.rows, BASE, same_gpu_folds=same_gpu_folds, seed=seed)
    return rep, list(table.rows), skipped


def _sample(rows: list[KernelMeasurement], seed: int) -> list[KernelMeasurement]:
    rng = np.random.default_rng(seed)
    by: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault((r.op, r.dtype, r.framework, r.variant.split(";")[1] if ";" in r.variant else ""), []).append(i)
    keep: list[int] = []
    for idx in by.values():
        keep.extend(idx if len(idx) <= MAX_PER_KEY else rng.choice(idx, MAX_PER_KEY, replace=False).tolist())
    return [rows[i] for i in sorted(keep)]


def load_rows(data: Path, hw: str) -> dict[str, list[KernelMeasurement]]:
    """Rows per source of one GPU: aiconfigurator (gemm, attention, comm), vidur (compute + dgx network), llmcompass."""
    kern = data / "kernels"
    aic = read_aiconfigurator(kern / "aiconfigurator", systems=[SYSTEMS[hw]], families=["gemm", "attention", "comm"])
    vid_dir = "a100" if hw.startswith("a100") else "h100"
    vid = read_vidur(kern / "vidur" / "profiling" / "compute" / vid_dir)
    node = "a100_dgx" if hw.startswith("a100") else "h100_dgx"
    vid = vid + read_vidur(kern / "vidur" / "profiling" / "network" / node)
    out = {"aiconfigurator": [r for r in aic.rows if r.hardware == hw],
           "vidur": [r for r in vid.rows if r.hardware == hw]}
    if hw.startswith("a100"):
        out["llmcompass"] = [r for r in read_llmcompass(kern / "llmcompass").rows if r.hardware == hw]
    for problem in aic.problems + vid.problems:
        log.warning("%s", problem)
    return out


def _fitted(r: KernelMeasurement) -> bool:
    return r.dtype in FIT_DTYPES and dtype_label(r) not in ("int8_wo", "int4_wo")


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=PROFILE_DIR)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--hardware", action="append", default=None, choices=sorted(SYSTEMS))
    ap.add_argument("--per-stratum", type=int, default=LOGO_PER_STRATUM,
                    help="leave-one-GPU-out rows per table stratum (deterministic sample)")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "validation-transfer.html",
                    help="where the leave-one-GPU-out residual page is written")
    ap.add_argument("--transfer-only", action="store_true", help="print the leave-one-GPU-out tables, build nothing")
    ap.add_argument("--identify", action="store_true",
                    help="also print the per-knob fit report (value per GPU, bounds, effect of freezing on LOGO error)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not (args.data / "kernels").is_dir():
        log.error("no kernel data under %s", args.data)
        return 2
    t_all = time.time()
    rep, logo_rows, skipped = run_transfer(args.data, args.per_stratum)
    print(f"## Leave-one-GPU-out ({', '.join(rep.gpus)}; {rep.n_rows} rows, <= {args.per_stratum} per table "
          f"stratum, seed 0)\n")
    print(rep.family_table() + "\n")
    print(rep.table() + "\n")
    print(rep.not_predicted_table())
    print("\n| table | why not predicted |\n|---|---|")
    print("\n".join(f"| {t} | {why} |" for t, why in sorted(skipped.items())) + "\n")
    log.info("leave-one-GPU-out done in %.0f s; residual plots: %s", time.time() - t_all,
             transfer_figure(rep, args.figure))
    assert rep.rows is not None
    print("## Kernel interval coverage, leave-one-GPU-out (normalized split-conformal: centre +- Q x the group's "
          "scale, Q scored across GPUs, fitted on three GPUs' residuals, tested on the fourth)\n")
    print(logo_coverage(rep.rows).table() + "\n")
    for method in ("gpu-shift + split-conformal", "split-conformal"):
        print(f"### For comparison: {method}\n")
        print(logo_coverage(rep.rows, method=method).table(families=False) + "\n")
    if args.identify:
        print(_knob_table(logo_rows))
        print("### Borderline calls checked against the frozen set\n\n" + _freeze_checks(logo_rows))
    if args.transfer_only:
        return 0
    lines = ["| profile | op/dtype/framework | n | held-out median abs % | held-out P90 % | held-out bias % | "
             "in-sample median % |", "|---|---|---|---|---|---|---|"]
    for hw in args.hardware or sorted(SYSTEMS):
        t0 = time.time()
        by_src = load_rows(args.data, hw)
        every = _sample([r for rows in by_src.values() for r in rows if r.op in OPS or r.source == "vidur"
                         or r.source == "llmcompass"], seed=0)
        sixteen = [r for r in every if _fitted(r)]
        log.info("%s: %d rows (%d of fitted dtypes) read in %.0f s", hw, len(every), len(sixteen), time.time() - t0)
        jobs: list[tuple[str, list[KernelMeasurement]]] = [(hw, sixteen)]
        for fw in ("trtllm", "vllm", "sglang"):
            sel = [r for r in sixteen if r.framework in (fw, "nccl")]
            if any(r.framework == fw for r in sel):
                jobs.append((f"{hw}-{fw}", sel))
        for name, rows in jobs:
            t1 = time.time()
            # a per-engine profile starts from the engine's own comm facts (TRT-LLM: NCCL over PCIe)
            base = BASE if name == hw else engine_base(BASE, name.split("-")[-1])
            res = calibrate(rows, hw, base=base, folds=args.folds, seed=0, name=name)
            srcs = sorted({r.file.split("/kernels/")[-1].rsplit("/", 1)[0] for r in rows})
            cal = res.calibration.model_copy(update={
                "source": f"scripts/build_profiles.py: fit to {res.n_rows} measured {'/'.join(FIT_DTYPES)} kernel rows "
                          f"of {hw} in ../shared/data/kernels ({len(srcs)} tables: AIConfigurator (aiconfigurator-core "
                          f"0.12.0, Apache-2.0), Vidur (microsoft/vidur @ 7d47513, MIT)"
                          f"{', LLMCompass (PrincetonUniversity/LLMCompass @ 2e015fd, BSD-3-Clause)' if hw.startswith('a100') and name == hw else ''})"})
            # weight-only rows were not fitted: their error under this profile is out-of-sample by construction
            other = [r for r in every if not _fitted(r)
                     and (name == hw or r.framework == name.split("-")[-1])]
            extra = {}
            if other:
                pred = predict_rows(other, cal, hardware=hw)
                extra = {k: {kk: round(vv, 3) if isinstance(vv, float) else vv for kk, vv in v.as_dict().items()}
                         for k, v in grouped_stats(pred.rows, pred.predicted_s, pred.measured_s).items()}
            meta = {"command": "python scripts/build_profiles.py (make validate)", "data": "../shared/data/kernels",
                    "tables": srcs, "fit_dtypes": list(FIT_DTYPES), "max_rows_per_group": MAX_PER_KEY,
                    **res.meta(), "not_fitted_dtypes": extra}
            # kernel error models: this GPU's held-out shapes and every GPU's leave-one-GPU-out residuals, of the
            # profile's engine (and NCCL) only for a per-engine profile
            errors = error_models_from_residuals(rep.rows, hw, None if name == hw else (name.split("-")[-1], "nccl"))
            path = write_calibration(cal, args.out / f"{name}.toml", meta, errors)
            log.info("%s: wrote %s in %.0f s (held-out overall median %.1f%%)", name, path, time.time() - t1,
                     res.held_out_overall.median_abs_pct_err)
            for k, s in res.held_out.items():
                lines.append(f"| {name} | {k} | {s.n} | {_fmt(s.median_abs_pct_err)} | {_fmt(s.p90_abs_pct_err)} | "
                             f"{s.bias_pct:+.1f} | {_fmt(res.in_sample[k].median_abs_pct_err)} |")
            for k, d in extra.items():
                lines.append(f"| {name} | {k} (not fitted) | {d['n']} | {_fmt(d['median_abs_pct_err'])} | "
                             f"{_fmt(d['p90_abs_pct_err'])} | {d['bias_pct']:+.1f} | - |")
    print("\n".join(lines))
    log.info("all profiles built in %.0f s", time.time() - t_all)
    return 0


def transfer_figure(rep: TransferReport, path: Path) -> Path:
    """One plotly page: signed % error of every leave-one-GPU-out family, one box per held-out GPU drawn from its
    quantiles (whiskers P10..P90, box P25..P75, line = median), so the page stays small."""
    import plotly.graph_objects as go  # noqa: PLC0415

    fig = go.Figure()
    for g in rep.gpus:
        keys = [k for k in rep.residuals_by_gpu if k[0] == g]
        qs = np.array([np.percentile(rep.residuals_by_gpu[k], (10, 25, 50, 75, 90)) for k in keys]).reshape(-1, 5)
        x = [f"{'gemm/' + k[2] if k[1] == 'gemm' else k[1]} ({k[3]})" for k in keys]
        fig.add_trace(go.Box(x=x, lowerfence=qs[:, 0], q1=qs[:, 1], median=qs[:, 2], q3=qs[:, 3],
                             upperfence=qs[:, 4], name=f"held out: {g}"))
    fig.add_hline(y=0, line_color="grey")
    fig.update_layout(title="Leave-one-GPU-out: signed error on the GPU left out of the fit (positive = predicted "
                            "too slow; box P25-P75, whiskers P10-P90)", boxmode="group",
                      yaxis_title="(predicted - measured) / measured, %", yaxis_range=[-100, 300], height=650,
                      width=1500)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = fig.to_html(full_html=False, include_plotlyjs="cdn", div_id="validation-transfer")
    path.write_text('<!doctype html><html><head><meta charset="utf-8"><title>Leave-one-GPU-out residuals</title>'
                    f"</head><body>\n{body}\n</body></html>\n", encoding="utf-8")
    return path


# Borderline calls of the freeze, checked against the frozen set itself: knobs fitted back on top of it, knobs
# frozen on top of it (docs/validation.md, "Which knobs the data pins").
FREEZE_CHECKS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    # (label, fitted back, frozen on top, family prefixes whose rows the run uses)
    ("fit attn_prefill_s_half", ("attn_prefill_s_half",), (), ("gemm", "attn_")),
    ("fit nccl_latency_s", ("nccl_latency_s",), (), ("nccl_",)),
    ("fit comm_floor_s", ("comm_floor_s",), (), ("custom_",)),
    ("freeze attn_prefill_eff", (), ("attn_prefill_eff",), ("gemm", "attn_")),
    ("freeze attn_prefill_mem_eff", (), ("attn_prefill_mem_eff",), ("gemm", "attn_")),
    ("freeze attn_prefill_eff + attn_prefill_mem_eff", (), ("attn_prefill_eff", "attn_prefill_mem_eff"),
     ("gemm", "attn_")),
)


def _freeze_checks(rows: list) -> str:
    """LOGO per family for each FREEZE_CHECKS change to the shipped frozen set, beside the frozen set itself."""
    lines = ["| change to the frozen set | family | LOGO median abs % | LOGO P90 % | LOGO bias % |", "|---|---|---|---|---|"]
    base_runs: dict[tuple[str, ...], dict] = {}
    for label, fit_back, freeze_more, prefixes in FREEZE_CHECKS:
        sub = [r for r in rows if family_of(r).startswith(prefixes)]
        if prefixes not in base_runs:
            base_runs[prefixes] = leave_one_gpu_out(sub, BASE, own_fits=False).family_stats()
            for fam, st in sorted(base_runs[prefixes].items()):
                if fam.startswith(("attn_", "nccl_")):
                    lines.append(f"| (none: the shipped set) | {fam} | {st.median_abs_pct_err:.1f} | "
                                 f"{st.p90_abs_pct_err:.1f} | {st.bias_pct:+.1f} |")
        rep = leave_one_gpu_out(sub, BASE, fit=default_fit(frozen=freeze_more, extra=fit_back), own_fits=False)
        for fam, st in sorted(rep.family_stats().items()):
            if fam.startswith(("attn_prefill", "nccl_")):
                lines.append(f"| {label} | {fam} | {st.median_abs_pct_err:.1f} | {st.p90_abs_pct_err:.1f} | "
                             f"{st.bias_pct:+.1f} |")
    return "\n".join(lines) + "\n"


def _knob_table(rows: list, same_gpu_folds: int = 0) -> str:
    """The identifiability report: every GPU knob fitted (FROZEN_GPU_FIELDS too), then each frozen alone."""
    knobs = [f for f in FIT_FIELDS if f in BOUNDS and f not in OPT_IN_FIELDS]  # fittable ones (not switches)
    fit_all = default_fit(extra=FROZEN_GPU_FIELDS)
    rep = leave_one_gpu_out(rows, BASE, fit=fit_all, same_gpu_folds=same_gpu_folds)
    print("### Every GPU knob fitted (reference of the knob report)\n\n" + rep.family_table() + "\n")
    lines = ["| knob | fitted per GPU/engine alone (min .. max) | spread max/min | at a bound | "
             "LOGO median change when frozen (points, per family) | frozen |", "|---|---|---|---|---|---|"]
    for kr in knob_report(rep, rows, BASE, knobs, fit=fit_all,
                          fit_frozen=lambda k: freezing((k,), extra=FROZEN_GPU_FIELDS)):
        v = kr.values.values()
        rng = f"{min(v):.3g} .. {max(v):.3g}" if v else "not fitted"
        eff = ", ".join(f"{f} {d:+.1f}" for f, d in sorted(kr.freeze_delta.items())) or "-"
        lines.append(f"| {kr.name} | {rng} | {kr.spread:.3g} | {len(kr.at_bound)}/{len(kr.values)} | {eff} | "
                     f"{'yes' if kr.name in FROZEN_GPU_FIELDS else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
