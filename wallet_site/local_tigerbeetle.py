"""A local single-replica TigerBeetle server for `TB_BINARY=/path/to/tigerbeetle make run`.

The application only ever talks to TB_ADDRESSES through the `tigerbeetle` client, as to a
production cluster; this module formats a data file once (under var/tigerbeetle/) and starts
one replica on it with production defaults (no --development), so a developer can run the app
on the real engine. A production cluster is run as the README's "Running on TigerBeetle" says.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from wallet_site.child_process import stop_child

LOCAL_CLUSTER_ID = 0
DATA_FILE_NAME = "0_0.tigerbeetle"


@dataclass
class LocalTigerBeetle:
    """A running `tigerbeetle start` child process."""

    process: subprocess.Popen[bytes]
    addresses: str
    data_file: Path

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_child(self.process, timeout_s)


def binary_version(binary: Path) -> str:
    """`tigerbeetle version`'s answer, e.g. "TigerBeetle version 0.17.9+52ad553"."""
    answer = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, check=True, timeout=30
    )
    return answer.stdout.strip()


def format_data_file(binary: Path, *, data_file: Path) -> None:
    """Format a single-replica data file (about 1.1 GB, preallocated). It is formatted under a
    temporary name and renamed, so an interrupted format never leaves a half-made file that
    the next run would try to start."""
    data_file.parent.mkdir(parents=True, exist_ok=True)
    partial = data_file.with_name(data_file.name + ".formatting")
    partial.unlink(missing_ok=True)
    subprocess.run(
        [
            str(binary),
            "format",
            f"--cluster={LOCAL_CLUSTER_ID}",
            "--replica=0",
            "--replica-count=1",
            str(partial),
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    partial.rename(data_file)


def port_accepts(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def start_local_tigerbeetle(
    binary: Path,
    *,
    data_dir: Path,
    port: int,
    log_path: Path | None = None,
    startup_timeout_s: float = 60.0,
) -> LocalTigerBeetle:
    """Format the data file if there is none yet, start the replica on 127.0.0.1:port and
    wait until it accepts connections."""
    data_file = data_dir / DATA_FILE_NAME
    if not data_file.exists():
        format_data_file(binary, data_file=data_file)
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    addresses = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(binary), "start", f"--addresses={addresses}", str(data_file)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tigerbeetle exited with {process.returncode} on port {port}")
        if port_accepts(port):
            return LocalTigerBeetle(process=process, addresses=addresses, data_file=data_file)
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"tigerbeetle did not listen on port {port} in {startup_timeout_s}s")
