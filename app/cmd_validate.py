"""`roofsim validate <what>`: compare predictions with measurements. `kernels` checks the per-kernel cost model
against measured kernel tables; further validators register themselves in VALIDATORS (one function each)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.app.cmd_validate_e2e import register_benchmarks, register_run
from roofsim.app.common import NothingDoneError, check_out, print_json, print_notes_and_problems, print_table
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import Calibration
from roofsim.simulator.outfiles import atomic_path
from roofsim.validation.kernel_tables import KernelMeasurement, read_kernel_tables
from roofsim.validation.metrics_err import summarize
from roofsim.validation.predict import Prediction, predict_rows
from roofsim.validation.profiles import resolve_calibration
from roofsim.validation.report import write_kernel_report

FORMATS = ("auto", "aiconfigurator", "vidur", "llmcompass", "csv")
_PROGRESS_MIN_ROWS = 20_000


def progress_bar(desc: str) -> Callable[[Iterable], Iterable]:
    """tqdm on stderr for big tables (off when stderr is not a terminal)."""
    def wrap(it: Iterable) -> Iterable:
        from tqdm import tqdm  # noqa: PLC0415

        total = len(it) if hasattr(it, "__len__") else None  # type: ignore[arg-type]
        return tqdm(it, total=total, desc=desc, file=sys.stderr, mininterval=0.5,
                    disable=True if total is not None and total < _PROGRESS_MIN_ROWS else None)
    return wrap


def calibration_choice(value: str | None) -> Calibration | Callable[[HardwareSpec], Calibration]:
    """--calibration (validation.profiles.resolve_calibration): a profile file, 'default' (model defaults), or
    None/'shipped' (each row's GPU: its shipped profile, else its architecture family's)."""
    if value is None or value == "shipped":
        return lambda hw: resolve_calibration(None, hw)[0]
    return resolve_calibration(value, None)[0]


# ------------------------------------------------------------------------------------------- kernels
def _register_kernels(vsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = vsub.add_parser("kernels", help="predict every row of measured kernel tables and report the errors",
                        description="Predict every measured kernel row (a file, or every table under a directory) "
                                    "and report median/mean/P90 absolute %% error and bias per op/dtype/framework.")
    p.add_argument("path", type=Path, help="kernel table file or directory of tables")
    p.add_argument("--format", choices=FORMATS, default="auto")
    p.add_argument("--hardware", default=None, help="only rows measured on this hardware id/alias")
    p.add_argument("--calibration", default=None,
                   help="profile .toml, 'shipped' (the default: each row's GPU's shipped profile, or its "
                        "architecture family's) or 'default' (model defaults)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", type=Path, default=None, help="write a self-contained HTML report here")
    p.add_argument("--force", action="store_true", help="overwrite --report if it exists")
    p.add_argument("--max-rows", type=int, default=None,
                   help="predict a random sample (seed 0) of at most N rows; the sampling is reported")
    p.set_defaults(func=run_kernels)


def validate_kernels(path: Path, format: str = "auto", hardware: str | None = None,
                     calibration: str | None = None, max_rows: int | None = None,
                     show_progress: bool = True) -> tuple[dict[str, Any], Prediction]:
    """The JSON object of `roofsim validate kernels` and the predictions behind it."""
    if max_rows is not None and max_rows <= 0:
        raise ValueError(f"--max-rows={max_rows} must be > 0")
    table = read_kernel_tables(path, format)
    rows: list[KernelMeasurement] | tuple[KernelMeasurement, ...] = table.rows
    notes: list[str] = []
    if max_rows is not None and len(rows) > max_rows:
        idx = np.sort(np.random.default_rng(0).choice(len(rows), max_rows, replace=False))
        notes.append(f"--max-rows {max_rows}: predicted a random sample (seed 0) of {max_rows} of {len(rows)} rows")
        rows = [rows[i] for i in idx]
    cal = calibration_choice(calibration)
    pred = predict_rows(rows, cal, hardware=hardware,
                        progress=progress_bar("predicting") if show_progress else None)
    out: dict[str, Any] = summarize(pred.rows, pred.predicted_s, pred.measured_s)
    out = {"by_op": out["by_op"], "overall": out["overall"], "by_hardware": out["by_hardware"],
           "problems": list(table.problems) + list(pred.problems), "notes": notes,
           "rows_read": len(table.rows), "rows_predicted": len(pred.rows),
           "calibration": calibration or "shipped (each row's GPU: shipped or transferred profile)"}
    return out, pred


def nothing_predicted(out: dict[str, Any], read: int, source: Path) -> None:
    """NothingDoneError (exit 1) when no row was predicted; the problems saying why go to stderr first."""
    if out["rows_predicted"]:
        return
    print_notes_and_problems({"notes": [], "problems": out["problems"]})
    raise NothingDoneError(f"{source}: {read} row(s) read, none could be predicted" if read
                           else f"{source}: no rows read")


def run_kernels(args: argparse.Namespace) -> int:
    check_out(args.report, "--report", args.force)
    out, pred = validate_kernels(args.path, args.format, args.hardware, args.calibration, args.max_rows)
    nothing_predicted(out, out["rows_read"], args.path)
    if args.report is not None:
        from roofsim.validation.metrics_err import error_stats, grouped_stats  # noqa: PLC0415

        with atomic_path(args.report) as tmp:
            write_kernel_report(tmp, pred, grouped_stats(pred.rows, pred.predicted_s, pred.measured_s),
                                error_stats(pred.predicted_s, pred.measured_s) if len(pred.rows) else None,
                                title=f"roofsim kernel validation: {args.path}", problems=tuple(out["problems"]),
                                notes=f"calibration: {out['calibration']}; " + "; ".join(out["notes"]))
    if args.json:
        print_json(out)
        return 0
    rows = [[k, str(s["n"]), f"{s['median_abs_pct_err']:.1f}", f"{s['mape']:.1f}", f"{s['p90_abs_pct_err']:.1f}",
             f"{s['bias_pct']:+.1f}"] for hw, d in out["by_hardware"].items() for k, s in
            ((f"{hw}  {k}", s) for k, s in d.items())]
    if out["overall"]:
        s = out["overall"]
        rows.append(["overall", str(s["n"]), f"{s['median_abs_pct_err']:.1f}", f"{s['mape']:.1f}",
                     f"{s['p90_abs_pct_err']:.1f}", f"{s['bias_pct']:+.1f}"])
    print_table(rows, ["hardware  op/dtype/framework", "n", "median|e|%", "MAPE%", "P90|e|%", "bias%"])
    print(f"\n{out['rows_predicted']} of {out['rows_read']} rows predicted (calibration: {out['calibration']})")
    print_notes_and_problems(out)
    if args.report is not None:
        print(f"report written to {args.report}")
    return 0


# ------------------------------------------------------------------------------------------- registry
# One function per validator; each adds its sub-sub-command to `roofsim validate` (benchmarks, run: to come).
VALIDATORS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (  # type: ignore[type-arg]
    _register_kernels,
    register_benchmarks,
    register_run,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate", help="compare predictions with measured kernel tables or serving results")
    vsub = p.add_subparsers(dest="validate_what", metavar="WHAT", required=True)
    for reg in VALIDATORS:
        reg(vsub)
