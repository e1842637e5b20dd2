"""A whole deployment on this machine, each dependency a real process of its own that a test
may stop and start again: PostgreSQL (its own cluster, `initdb` + `pg_ctl`), Redis for the
cache and another for the Celery broker, MongoDB (secantusdb, frozen with SIGSTOP and let go
again: a hung server), a TigerBeetle replica (restarted on the same data file), gunicorn (2 workers)
and a Celery worker, all on free loopback ports, everything under var/faults/<run>/ (deleted
afterwards). The operator's commands go through `tests.faults.control`.

Nothing here reads the test run's own settings: the deployment is configured from scratch, as
the README's production environment is, with short timeouts so an outage answers quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from wallet_site.child_process import stop_child
from wallet_site.embedded_mongo import free_loopback_port
from wallet_site.local_tigerbeetle import port_accepts, start_local_tigerbeetle

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BIN = Path(sys.executable).parent
START_WAIT_S = 60.0
# The test run's own settings must not leak into the deployment's processes.
_SETTING_PREFIXES = (
    "DJANGO_",
    "API_",
    "METRICS_",
    "DATABASE_",
    "REDIS_",
    "CELERY_",
    "MONGO_",
    "TB_",
    "READ_",
    "MIRROR_",
    "PROMETHEUS_",
    "READINESS_",
    "CACHE_",
)


def postgres_bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def tigerbeetle_binary() -> Path | None:
    configured = os.environ.get("TB_BINARY") or str(ROOT.parent / "shared/tigerbeetle/tigerbeetle")
    path = Path(configured)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def missing_binaries() -> list[str]:
    missing = []
    if postgres_bin_dir() is None:
        missing.append("PostgreSQL (initdb, pg_ctl)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if tigerbeetle_binary() is None:
        missing.append("the TigerBeetle server (TB_BINARY)")
    if not (BIN / "secantusd-py").exists():
        missing.append("secantusd-py")
    return missing


def wait_until(check: Callable[[], bool], *, what: str, timeout_s: float = START_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout_s} s")


@dataclass
class Postgres:
    """A PostgreSQL cluster of our own; run as the `postgres` user when we are root (initdb
    refuses root)."""

    directory: Path
    port: int = field(default_factory=free_loopback_port)

    def _run(self, *args: str) -> None:
        bin_dir = postgres_bin_dir()
        assert bin_dir is not None
        command = [str(bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        self.directory.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, user="postgres")
        self._run(
            "initdb",
            "-D",
            str(self.directory / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-q",
                "-c",
                "CREATE DATABASE wallet",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.directory / "data"),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """A fast shutdown: every session is cut, as when the server goes away."""
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/wallet"


@dataclass
class Child:
    """A server we start as a child process, stopped (SIGTERM, then SIGKILL) and started again
    on the same port with the same command."""

    name: str
    command: list[str]
    log_path: Path
    port: int = 0
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready: Callable[[], bool] | None = None) -> None:
        self.spawn()
        self.wait_ready(ready)

    def spawn(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait_ready(self, ready: Callable[[], bool] | None = None) -> None:
        check = ready or (lambda: port_accepts(self.port))
        wait_until(lambda: self._alive() and check(), what=f"{self.name} did not start")

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
        return True

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is not None:
            stop_child(self.process, timeout_s)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the server holds its connections and answers nothing, as a hung host or
        a network partition; `thaw` lets it go on where it stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the process dies with whatever it held."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


class Control:
    """The operator process (`tests.faults.control`): one JSON command, one JSON answer."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log = open(log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.faults.control"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    def __call__(self, op: str, **arguments: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("@@reply "):
                reply = json.loads(line.removeprefix("@@reply "))
                if not reply["ok"]:
                    raise RuntimeError(f"control {op} failed: {reply['error']}\n{reply['trace']}")
                return reply
        raise RuntimeError(f"the control process ended during {op}")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Deployment:
    """Every process of one deployment; `start()` brings it all up, `close()` takes it down
    and deletes its files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.postgres = Postgres(self.directory / "postgres")
        self.cache_redis = self._redis("cache-redis")
        self.broker_redis = self._redis("broker-redis")
        mongo_port = free_loopback_port()
        self.mongo = Child(
            "mongodb",
            [
                PYTHON,
                "-m",
                "wallet_site.mongo_server",  # secantusdb as `make run` and the tests start it
                "--transaction-lifetime-s",
                "5",
                "--host",
                "127.0.0.1",
                "--port",
                str(mongo_port),
                "--storage-path",
                ":memory:",
                "--log-level",
                "WARNING",
            ],
            self.directory / "mongo.log",
            port=mongo_port,
        )
        self.tigerbeetle_port = free_loopback_port()
        self.tigerbeetle_process: Any = None
        self.web_port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = self._environment()
        self.web = Child(
            "gunicorn",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "wallet_site.wsgi",
                "-b",
                f"127.0.0.1:{self.web_port}",
                "-w",
                "2",
                "--timeout",
                "30",
                "--log-level",
                "warning",
            ],
            directory / "gunicorn.log",
            port=self.web_port,
            env=self.env,
        )
        self.worker = Child(
            "celery worker",
            [
                str(BIN / "celery"),
                "-A",
                "wallet_site",
                "worker",
                "-Q",
                self.env["CELERY_QUEUE"],
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--hostname",
                f"faults-{uuid.uuid4().hex[:8]}@%h",
            ],
            directory / "worker.log",
            env=self.env,
        )
        self.control: Control | None = None
        self.token = ""
        self.timings: dict[str, float] = {}  # seconds since start() began, per step

    def _redis(self, name: str) -> Child:
        port = free_loopback_port()
        return Child(
            name,
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            self.directory / f"{name}.log",
            port=port,
        )

    def _environment(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(_SETTING_PREFIXES)}
        broker = f"redis://127.0.0.1:{self.broker_redis.port}/0"
        return {
            **clean,
            "DJANGO_SETTINGS_MODULE": "wallet_site.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_HTTPS": "false",
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": f"redis://127.0.0.1:{self.cache_redis.port}/0",
            "CELERY_BROKER_URL": broker,
            "CELERY_RESULT_BACKEND": broker,
            "CELERY_QUEUE": "faults",
            "MONGO_URL": f"mongodb://127.0.0.1:{self.mongo.port}/wallet?directConnection=true",
            "MONGO_TIMEOUT_S": "1.0",
            "MONGO_LOCK_WAIT_S": "1.0",
            "TB_ADDRESSES": f"127.0.0.1:{self.tigerbeetle_port}",
            "TB_CLUSTER_ID": "0",
            "TB_REQUEST_TIMEOUT_S": "1.0",
            "TB_ID_NAMESPACE": f"faults-{uuid.uuid4().hex[:12]}",
            "TB_READ_RETRY_ATTEMPTS": "1",
            "TB_READ_RETRY_BASE_S": "0.05",
            "READ_BREAKER_RESET_S": "1",
            "READINESS_CHECK_TIMEOUT_S": "1.0",
            "MIGRATION_CRITERION_DAYS": "0",
        }

    # --- the dependencies, each one taken away and brought back ------------------------------

    def start_tigerbeetle(self) -> None:
        binary = tigerbeetle_binary()
        assert binary is not None
        self.tigerbeetle_process = start_local_tigerbeetle(
            binary,
            data_dir=self.directory / "tigerbeetle",
            port=self.tigerbeetle_port,
            log_path=self.directory / "tigerbeetle.log",
        )

    def stop_tigerbeetle(self) -> None:
        """SIGKILL, as a crashed replica; `start_tigerbeetle` restarts it on its data file."""
        process = self.tigerbeetle_process.process
        process.send_signal(signal.SIGKILL)
        process.wait()

    def start_mongo(self) -> None:
        self.mongo.start()

    def start(self) -> None:
        """Everything up, the slow parts side by side: TigerBeetle's first start (about 15 s on
        a fresh data file) beside the database's set-up, gunicorn beside the worker."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tigerbeetle = threading.Thread(target=self.start_tigerbeetle, daemon=True)
        tigerbeetle.start()
        started = time.monotonic()
        self.postgres.create()
        self.timings["postgres"] = time.monotonic() - started
        for child in (self.cache_redis, self.broker_redis, self.mongo):
            child.spawn()
        for child in (self.cache_redis, self.broker_redis, self.mongo):
            child.wait_ready()
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v0"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        self.timings["migrate"] = time.monotonic() - started
        worker_ready = self._worker_ready_check()
        self.web.spawn()
        self.worker.spawn()
        self.control = Control(self.env, self.directory / "control.log")
        self.token = self.control("setup")["token"]
        self.web.wait_ready(self._web_answers)
        self.worker.wait_ready(worker_ready)
        self.timings["web, worker, control"] = time.monotonic() - started
        tigerbeetle.join(START_WAIT_S)
        self.timings["tigerbeetle"] = time.monotonic() - started
        assert self.tigerbeetle_process is not None, "TigerBeetle did not start"

    def _web_answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start_worker(self) -> None:
        ready = self._worker_ready_check()
        self.worker.start(ready=ready)

    def _worker_ready_check(self) -> Callable[[], bool]:
        """Whether the worker logged "ready" since now (a restart appends to the same log)."""
        log_path = self.worker.log_path
        offset = log_path.stat().st_size if log_path.exists() else 0

        def ready() -> bool:
            with open(log_path, "rb") as log:
                log.seek(offset)
                return b" ready." in log.read()

        return ready

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        children = [self.web, self.worker, self.mongo, self.cache_redis, self.broker_redis]
        if self.tigerbeetle_process is not None:
            children.append(self.tigerbeetle_process)
        for child in children:  # all asked at once, then each awaited
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        for child in children:
            child.stop()
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.postgres.stop()
        if not os.environ.get("FAULTS_KEEP"):  # FAULTS_KEEP=1 keeps the logs to read
            shutil.rmtree(self.directory, ignore_errors=True)
