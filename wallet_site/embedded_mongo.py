"""Start and stop the embedded MongoDB-protocol server (secantusdb) for dev runs and tests.

The application itself only ever talks to MONGO_URL through pymongo, as to a real mongod;
this module just provides something to talk to on a machine without one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
from pymongo.errors import PyMongoError

from wallet_site.child_process import stop_child

SERVER_COMMAND = "secantusd-py"
# mongod's transactionLifetimeLimitSeconds is 60; a wallet write's transaction lasts
# milliseconds, so a few seconds is ample and frees a dead worker's wallet soon.
DEFAULT_TRANSACTION_LIFETIME_S = 5.0
PROJECT_DIR = Path(__file__).resolve().parent.parent


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mongo_answers(url: str, timeout_s: float = 0.5) -> bool:
    """Whether a MongoDB-protocol server answers `ping` at url."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=int(timeout_s * 1000)
    )
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
        stop_child(self.process, timeout_s)


def start_embedded_mongo(
    *,
    port: int | None = None,
    storage_path: str = ":memory:",
    database: str = "wallet",
    log_path: Path | None = None,
    startup_timeout_s: float = 30.0,
    transaction_lifetime_s: float = DEFAULT_TRANSACTION_LIFETIME_S,
    cache_size: str | None = None,
    collector: str = "server",
) -> EmbeddedMongo:
    """Start secantusd-py on 127.0.0.1 and wait until it answers; test commands enabled so
    tests can arm `configureFailPoint` (the server listens on loopback only). A transaction
    abandoned by a dead process is reaped after `transaction_lifetime_s` idle seconds
    (`wallet_site.mongo_server`). `cache_size` (e.g. "4G"; None: the daemon's 1G): an
    in-memory server holds every document and index in this cache and answers
    `InternalError` (WiredTiger's WT_CACHE_FULL) once they outgrow it, so size it to the
    data. `collector`: the daemon's cycle collector, "server" (tuned for large results) or
    "python" (the defaults; `wallet_site.mongo_server`)."""
    port = port or free_loopback_port()
    cache = ["--cache-size", cache_size] if cache_size else []
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wallet_site.mongo_server",
            "--transaction-lifetime-s",
            str(transaction_lifetime_s),
            "--collector",
            collector,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            storage_path,
            "--enable-test-commands",
            "--log-level",
            "WARNING",
            *cache,
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_DIR,  # where `-m wallet_site.mongo_server` is found
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
