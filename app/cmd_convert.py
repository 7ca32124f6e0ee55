"""`roofsim convert aiconfigurator-silicon|splitwise|argonne SRC --out table.csv`: published end-to-end benchmark
files -> the benchmark table format (docs/validation-formats.md); rows that cannot be converted are listed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roofsim.app.common import NothingDoneError, check_out, print_json
from roofsim.hardware_specs.errors import InputError
from roofsim.simulator.outfiles import atomic_path
from roofsim.validation.bench_table import write_bench_table
from roofsim.validation.converters import convert_aiconfigurator_silicon, convert_argonne, convert_splitwise

__all__ = ["register", "CONVERTERS"]

CONVERTERS = {
    "aiconfigurator-silicon": convert_aiconfigurator_silicon,
    "splitwise": convert_splitwise,
    "argonne": convert_argonne,
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("convert", help="convert published benchmark results into a benchmark table CSV",
                       description="Convert AIConfigurator silicon_sample_*.csv, Splitwise perf_model.csv or Argonne "
                                   "LLM-Inference-Bench All_results.csv into a roofsim benchmark table.")
    p.add_argument("source", choices=sorted(CONVERTERS), help="which published format SRC is in")
    p.add_argument("src", type=Path)
    p.add_argument("--out", type=Path, required=True, help="benchmark table CSV to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--hardware", default=None,
                   help="aiconfigurator-silicon: hardware id/alias/.toml for every row (default: each row's device)")
    p.add_argument("--json", action="store_true", help="print {rows, problems, out} as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, "--out", args.force)
    if args.hardware is not None and args.source != "aiconfigurator-silicon":
        raise InputError(f"--hardware applies to aiconfigurator-silicon only, not {args.source}")
    table = (CONVERTERS[args.source](args.src, hardware=args.hardware) if args.hardware is not None
             else CONVERTERS[args.source](args.src))
    if not table.rows:
        for p in table.problems:
            print(f"  {p}", file=sys.stderr)
        raise NothingDoneError(f"no row of {args.src} could be converted ({len(table.problems)} problem(s)); "
                               f"{args.out} not written")
    with atomic_path(args.out) as tmp:
        write_bench_table(table.rows, tmp)
    if args.json:
        print_json({"rows": len(table.rows), "problems": list(table.problems), "out": str(args.out)})
        return 0
    print(f"{len(table.rows)} rows written to {args.out}")
    if table.problems:
        print(f"{len(table.problems)} row(s) not converted:", file=sys.stderr)
        for p in table.problems:
            print(f"  {p}", file=sys.stderr)
    return 0
