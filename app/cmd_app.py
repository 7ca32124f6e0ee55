"""`roofsim app [--port N]`: start the Streamlit dashboard (app/dashboard/Home.py) headless on localhost."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HOME = Path(__file__).resolve().parent / "dashboard" / "Home.py"


def streamlit_command(port: int, address: str = "localhost", python: str | None = None,
                      verbose: bool = False) -> list[str]:
    """The `streamlit run` command line the app (and the browser test) uses. The pages show every error a user can
    cause as a message; an unexpected one (a bug) shows its type in the page and its traceback in the terminal,
    or in the page too with `roofsim app -v` (Streamlit's client.showErrorDetails "type" / "full")."""
    return [python or sys.executable, "-m", "streamlit", "run", str(HOME),
            "--server.headless", "true", "--server.port", str(port), "--server.address", address,
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.showErrorDetails", "full" if verbose else "type"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("app", help="start the Streamlit what-if dashboard on localhost")
    p.add_argument("--port", type=int, default=8501, help="TCP port (default 8501)")
    p.add_argument("--address", default="localhost", help="address to bind (default localhost only)")
    p.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port={args.port} must be in 1..65535")
    cmd = streamlit_command(args.port, args.address, verbose=args.verbose)
    print(f"roofsim dashboard on http://{args.address}:{args.port}  (Ctrl-C to stop)", flush=True)
    # exec, not a child process: the server IS this process, so Ctrl-C, SIGTERM and a supervisor's kill reach
    # Streamlit itself and nothing is left holding the port
    os.execv(cmd[0], cmd)
    return 0  # not reached
