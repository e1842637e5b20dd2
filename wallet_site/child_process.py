"""Stopping the helper servers `make run` and the tests start (MongoDB, TigerBeetle)."""

from __future__ import annotations

import subprocess


def stop_child(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Ask a child server to stop (SIGTERM), and kill it if it has not after `timeout_s`, so
    no run leaves a server holding its port or data file."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
