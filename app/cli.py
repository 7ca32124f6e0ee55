"""The `roofsim` command line: one argparse sub-command per module in COMMANDS, clean errors, no tracebacks."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from roofsim.hardware_specs.errors import RoofsimError

# Each module defines `register(subparsers)`, which adds its sub-command and sets `func(args) -> int`.
COMMANDS: tuple[str, ...] = (
    "roofsim.app.cmd_estimate",
    "roofsim.app.cmd_simulate",
    "roofsim.app.cmd_app",
    "roofsim.app.cmd_plan",
    "roofsim.app.cmd_validate",
    "roofsim.app.cmd_calibrate",
    "roofsim.app.cmd_measure",
    "roofsim.app.cmd_convert",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roofsim",
        description="Predict LLM serving latency, throughput, cost and energy on given hardware.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _format_validation_error(err: ValidationError) -> str:
    lines = [f"invalid {err.title}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  field {loc}: {e['msg']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except ValidationError as err:
        print(f"roofsim: error: {_format_validation_error(err)}", file=sys.stderr)
        return 2
    except (RoofsimError, ValueError, KeyError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"roofsim: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("roofsim: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
