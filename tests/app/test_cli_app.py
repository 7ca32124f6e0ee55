"""`roofsim app` replaces itself with the Streamlit server: SIGTERM to the pid the user started ends the server and
frees the port."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("streamlit")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_to_roofsim_app_ends_the_server() -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "roofsim.app.cli", "app", "--port", str(port), "--address",
                             "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):
            assert proc.poll() is None, "roofsim app exited before serving"
            assert time.monotonic() < deadline, "the dashboard did not start listening within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port), "the Streamlit server still holds the port after SIGTERM to roofsim app"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def test_bad_port_is_an_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    from roofsim.app.cli import main

    assert main(["app", "--port", "70000"]) == 2
    assert "--port=70000" in capsys.readouterr().err
