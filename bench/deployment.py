"""The parts of a deployment a benchmark starts beside gunicorn (bench.common): a Celery worker
with beat, its broker, and the operator's `manage.py` commands, all on the same environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from wallet_site.child_process import stop_child
from wallet_site.local_worker import (
    FILESYSTEM_BROKER_URL,
    is_filesystem_broker,
    make_broker_dirs,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
WORKER_START_S = 90.0
WORKER_STOP_S = 30.0
WORKER_CONCURRENCY = 2


def broker_env(*, run: str, directory: Path) -> dict[str, str]:
    """CELERY_BROKER_URL's broker (Redis in production and CI) with a queue of this run's own,
    so no other worker on it takes our tasks; without one, kombu's filesystem broker under
    `directory`, as `make run` does."""
    broker = settings.CELERY_BROKER_URL
    if broker and not is_filesystem_broker(broker):
        return {"CELERY_BROKER_URL": broker, "CELERY_QUEUE": f"bench-{run}"}
    make_broker_dirs(directory)
    return {
        "CELERY_BROKER_URL": FILESYSTEM_BROKER_URL,
        "CELERY_FILESYSTEM_BROKER_DIR": str(directory),
        "CELERY_QUEUE": f"bench-{run}",
    }


@contextmanager
def celery_worker(env: dict[str, str], *, directory: Path) -> Iterator[None]:
    """`celery worker --beat` on `env`'s broker and queue, ready (it logged " ready.") before
    the block; a warm shutdown after it. Its log is worker.log under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "worker.log"
    command = [sys.executable, "-m", "celery", "--app", "wallet_site", "worker", "--beat"]
    command += ["--schedule", str(directory / "beat-schedule"), "--queues", env["CELERY_QUEUE"]]
    command += ["--concurrency", str(WORKER_CONCURRENCY), "--loglevel", "INFO"]
    command += ["--hostname", f"bench-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + WORKER_START_S
        while b" ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the Celery worker did not start:\n{tail}")
            time.sleep(0.1)
        yield
    finally:
        stop_child(process, WORKER_STOP_S)


@dataclass
class CommandRun:
    """One `manage.py` command: its wall time (process start-up included) and its output."""

    seconds: float
    stdout: str
    stderr: str


def manage(
    env: dict[str, str], *args: str, check: bool = True, timeout_s: float = 3600
) -> CommandRun:
    """Run `manage.py args` as the operator does, on the deployment's environment; with
    `check`, raise with its output if it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return CommandRun(seconds=seconds, stdout=done.stdout, stderr=done.stderr)
