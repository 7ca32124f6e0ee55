"""`python -m roofsim` and the `roofsim` console script: the command line of roofsim.app.cli.

A Ctrl-C or SIGTERM that arrives while the command line is still importing (a second or more on a busy machine)
ends it quietly with exit code 130, like one that arrives later (roofsim.app.cli.main handles those)."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _interrupted_at_startup(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("roofsim: interrupted\n")
    raise SystemExit(130)


def run() -> int:
    """Install the start-up handlers, import the command line and run it."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _interrupted_at_startup)
    from roofsim.app.cli import main  # noqa: PLC0415 (imported after the handlers are in place)

    return main()


if __name__ == "__main__":
    sys.exit(run())
