"""`roofsim calibrate`: fit a calibration profile for one GPU to measured kernel tables (or, with --local, to
kernels measured on this machine); report held-out error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from roofsim.app.common import NothingDoneError, check_out, print_json, print_table, schema_arg
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.simulator.config import SimConfig
from roofsim.validation.calibrate import CalibrationResult, calibrate
from roofsim.validation.kernel_tables import KernelMeasurement, KernelTable, read_kernel_tables
from roofsim.validation.profiles import write_calibration


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("calibrate", help="fit efficiency/overhead parameters to measured kernel tables",
                       description="Fit the cost model's efficiencies and overheads to measured kernel rows of one "
                                   "GPU (least squares on log error), cross-validate over held-out shape families, "
                                   "and write a calibration profile TOML.")
    p.add_argument("sources", nargs="*", type=Path, help="kernel table files or directories (not with --local)")
    p.add_argument("--hardware", default=None, help="hardware id/alias the rows were measured on (required "
                                                    "unless --local)")
    p.add_argument("--out", type=Path, default=None, help="profile .toml to write (atomically); with --local the "
                                                          "HardwareSpec (default $XDG_CONFIG_HOME/roofsim/"
                                                          "local-cpu.toml, else ~/.config/roofsim/local-cpu.toml), "
                                                          "the calibration going to <stem>.calibration.toml next to it")
    p.add_argument("--force", action="store_true", help="overwrite --out (and its calibration file) if it exists")
    g = p.add_argument_group("this machine (--local)")
    g.add_argument("--local", action="store_true", help="measure this machine's kernels with numpy "
                                                        "(validation.local) and fit to them instead of reading tables")
    g.add_argument("--quick", action="store_true", help="with --local: a reduced grid (~1 minute)")
    g.add_argument("--blas-threads", type=int, default=None, help="with --local: OpenBLAS threads (default 1)")
    g.add_argument("--no-torch", action="store_true",
                   help="with --local: skip the GEMMs through PyTorch's CPU kernels even when torch is installed")
    g.add_argument("--local-model", default="local-llama-125m",
                   help="with --local: the model whose GEMM shapes, heads and depth are measured "
                        "(default local-llama-125m; see roofsim measure --model)")
    p.add_argument("--format", choices=("auto", "aiconfigurator", "vidur", "llmcompass", "csv"), default="auto")
    p.add_argument("--framework", action="append", default=None,
                   help="only rows of this framework (trtllm, vllm, sglang, nccl, vidur ...); repeatable")
    p.add_argument("--op", action="append", default=None, help="only rows of this op (gemm, attn_prefill ...)")
    p.add_argument("--dtype", action="append", default=None, help="only rows of this dtype (bf16, fp16, fp8 ...)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over shape families (0: none)")
    p.add_argument("--seed", type=schema_arg(SimConfig, "seed", "--seed"), default=0)
    p.add_argument("--name", default=None, help="profile name (default: the --out file stem)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_calibrate)


def select_rows(table: KernelTable, framework: list[str] | None, op: list[str] | None, dtype: list[str] | None
                ) -> tuple[list[KernelMeasurement], list[str]]:
    """Rows passing the filters, and a note per filter saying how many it excluded (never silent)."""
    rows = list(table.rows)
    notes = []
    for field, allowed in (("framework", framework), ("op", op), ("dtype", dtype)):
        if allowed:
            kept = [r for r in rows if getattr(r, field) in allowed]
            notes.append(f"--{field} {','.join(allowed)}: excluded {len(rows) - len(kept)} of {len(rows)} rows")
            rows = kept
    return rows, notes


def result_json(res: CalibrationResult, out: Path, sources: list[str], notes: list[str]) -> dict[str, Any]:
    return {"profile": str(out), "calibration": res.calibration.model_dump(), "fit": res.meta(),
            "sources": sources, "notes": notes, "problems": list(res.problems)}


def run_calibrate(args: argparse.Namespace) -> int:
    if args.local:
        if args.sources or args.hardware:
            raise ValueError("--local measures this machine: give no SOURCES and no --hardware with it")
        from roofsim.app.cmd_measure import run_calibrate_local  # noqa: PLC0415

        return run_calibrate_local(args)
    if args.quick or args.blas_threads is not None or args.no_torch:
        raise ValueError("--quick, --blas-threads and --no-torch apply only with --local")
    if not args.sources or not args.hardware or args.out is None:
        raise ValueError("roofsim calibrate needs SOURCES, --hardware and --out (or --local to measure this machine)")
    check_out(args.out, "--out", args.force)
    hw = load_hardware(args.hardware)
    if args.folds < 0 or args.folds == 1:
        raise ValueError(f"--folds={args.folds} must be 0 (no cross-validation) or >= 2")
    table = KernelTable((), ())
    for src in args.sources:
        table = table + read_kernel_tables(src, args.format)
    rows, notes = select_rows(table, args.framework, args.op, args.dtype)
    if not rows:
        raise NothingDoneError(f"no rows left to fit in {[str(s) for s in args.sources]} after filtering ({'; '.join(notes)})")
    name = args.name or args.out.stem
    from roofsim.app.cmd_validate import progress_bar  # noqa: PLC0415

    res = calibrate(rows, hw.id, folds=args.folds, seed=args.seed, name=name, progress=progress_bar("features"))
    sources = [str(s) for s in args.sources]
    cal = res.calibration.model_copy(update={
        "source": f"roofsim calibrate on {', '.join(sources)}"
                  + (f" ({'; '.join(notes)})" if notes else "") + f"; {res.n_rows} rows"})
    meta = {"sources": sources, "filters": notes, "seed": args.seed, **res.meta()}
    write_calibration(cal, args.out, meta)
    problems = list(table.problems) + list(res.problems)
    if args.json:
        print_json({**result_json(res, args.out, sources, notes), "calibration": cal.model_dump(),
                    "problems": problems})
        return 0
    head = ["op/dtype/framework", "n", "held-out median|e|%", "held-out P90|e|%", "held-out bias%",
            "in-sample median|e|%"]
    table_rows = []
    for k, s in res.in_sample.items():
        h = res.held_out.get(k)
        table_rows.append([k, str(s.n), f"{h.median_abs_pct_err:.1f}" if h else "-",
                           f"{h.p90_abs_pct_err:.1f}" if h else "-", f"{h.bias_pct:+.1f}" if h else "-",
                           f"{s.median_abs_pct_err:.1f}"])
    print_table(table_rows, head)
    print(f"\nfitted {', '.join(res.fields)} on {res.n_rows} rows of {hw.id} ({res.n_families} shape families, "
          f"{res.folds}-fold held-out); wrote {args.out}")
    print("accuracy to quote = the held-out columns; in-sample error is shown only to compare")
    for n in notes:
        print(f"note: {n}")
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for pr in problems:
            print(f"  {pr}", file=sys.stderr)
    return 0
