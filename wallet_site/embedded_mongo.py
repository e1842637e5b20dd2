"""Start and stop the embedded MongoDB-protocol server (secantusdb) for dev runs and tests.

The application itself only ever talks to MONGO_URL through pymongo, as to a real mongod;
this module just provides something to talk to on a machine without one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

SERVER_COMMAND = "secantusd-py"


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mongo_answers(url: str, timeout_s: float = 0.5) -> bool:
    """Whether a MongoDB-protocol server answers `ping` at url."""
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def mongo_url_for(port: int, database: str = "wallet") -> str:
    return f"mongodb://127.0.0.1:{port}/{database}?directConnection=true"


@dataclass
class EmbeddedMongo:
    """A running secantusd-py child process."""

    process: subprocess.Popen[bytes]
    port: int
    url: str

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_executable() -> str:
    """secantusd-py next to the running interpreter (the venv), else on PATH."""
    beside_python = Path(sys.executable).parent / SERVER_COMMAND
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(SERVER_COMMAND)
    if not found:
        raise RuntimeError(f"{SERVER_COMMAND} not found: pip install -r requirements.txt")
    return found


def start_embedded_mongo(
    port: int | None = None,
    storage_path: str = ":memory:",
    database: str = "wallet",
    log_path: Path | None = None,
    startup_timeout_s: float = 30.0,
) -> EmbeddedMongo:
    """Start secantusd-py on 127.0.0.1 and wait until it answers; test commands enabled so
    tests can arm `configureFailPoint` (the server listens on loopback only)."""
    port = port or free_loopback_port()
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            server_executable(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            storage_path,
            "--enable-test-commands",
            "--log-level",
            "WARNING",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = mongo_url_for(port, database)
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{SERVER_COMMAND} exited with {process.returncode} on port {port}")
        if mongo_answers(url):
            return EmbeddedMongo(process=process, port=port, url=url)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{SERVER_COMMAND} did not answer on port {port} in {startup_timeout_s}s")
