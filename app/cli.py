"""The `roofsim` command line: one argparse sub-command per module in COMMANDS; main() is the one place that turns
every error into a message and an exit code (0 ok, 1 nothing could be done, 2 bad input, 130 interrupted)."""

from __future__ import annotations

import argparse
import csv
import importlib
import logging
import multiprocessing
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from pydantic import ValidationError

from roofsim.app.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_NOTHING_DONE, EXIT_OK, NothingDoneError
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

REPORT_BUG = ("this is a bug in roofsim, not a problem with your input: please report it on the project's issue "
              "tracker with the command line you ran and the traceback that `roofsim -v ...` prints")

EPILOG = f"""exit codes:
  {EXIT_OK}    ok
  {EXIT_NOTHING_DONE}    nothing could be done (e.g. no row of a table could be read or predicted)
  {EXIT_BAD_INPUT}    bad input: a flag, file, row or field (the message names it)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C / SIGINT or SIGTERM); no output file is left half written

Limits on sizes, counts and durations, and the output-file guarantee: docs/reliability.md.
-v/--verbose (before or after the command) logs debug output and shows the traceback of an internal error."""

# Errors a user can cause with a flag, a file or its contents; anything else is a bug in roofsim.
# (ValueError covers UnicodeDecodeError, json.JSONDecodeError and tomllib.TOMLDecodeError.)
USER_ERRORS: tuple[type[BaseException], ...] = (RoofsimError, ValueError, OSError, csv.Error, RecursionError)


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debug output to stderr; show the traceback of an internal error")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public walk over sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):
                yield p
                yield from _subparsers(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roofsim", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict LLM serving latency, throughput, cost and energy on given hardware.",
    )
    _add_verbose(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    for p in _subparsers(parser):  # `roofsim simulate -v` as well as `roofsim -v simulate`
        _add_verbose(p, argparse.SUPPRESS)
    return parser


def _format_validation_error(err: ValidationError) -> str:
    lines = [f"invalid {err.title}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  field {loc}: {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def _message(err: BaseException) -> str:
    if isinstance(err, ValidationError):
        return _format_validation_error(err)
    if isinstance(err, RecursionError):
        return "input nested too deeply to read (a file with thousands of nested tables or lists)"
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in str(err):
        return f"{err.filename}: {err}"
    return str(err) or type(err).__name__


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT/SIGTERM: stop the worker processes this run started (a `kill` reaches only this process), then
    unwind like Ctrl-C, so every `finally` and atomic write cleans up."""
    for child in multiprocessing.active_children():
        child.terminate()
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    old = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code it returns means one thing (EPILOG)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with _signals_interrupt():
            code: int = args.func(args)
    except KeyboardInterrupt:
        print("roofsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return EXIT_OK
    except NothingDoneError as err:
        print(f"roofsim: error: {err}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    except MemoryError:
        print("roofsim: error: out of memory; use smaller sizes (limits: docs/reliability.md)", file=sys.stderr)
        return EXIT_NOTHING_DONE
    except (ValidationError, *USER_ERRORS) as err:
        print(f"roofsim: error: {_message(err)}", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 (the one place every other error is reported)
        print(f"roofsim: internal error: {type(err).__name__}: {err}\n{REPORT_BUG}", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        else:
            print("(run again with -v to see the traceback)", file=sys.stderr)
        return EXIT_NOTHING_DONE
    return code


if __name__ == "__main__":
    sys.exit(main())
