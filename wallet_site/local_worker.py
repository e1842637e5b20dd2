"""`make run`'s Celery worker and beat, on a broker that needs no server.

Without CELERY_BROKER_URL the app runs its tasks eagerly, in the process that queues them, and
nothing runs the periodic jobs (the outbox sweeper, reconciliation, and whatever else
CELERY_BEAT_SCHEDULE holds). `make run` (`rundev`) instead starts one real Celery worker with
beat embedded (`celery worker --beat`) on kombu's filesystem transport: each message is a file
under CELERY_FILESYSTEM_BROKER_DIR (var/celery/ by default), so the web process queues to the
worker exactly as it would to Redis, beat fires each job on its schedule, and a task queued
while the worker is down waits for it. The worker is rundev's child, stopped with it.

Beat keeps its schedule in a file there, so a job overdue when `make run` starts again runs at
once; on the very first start (no schedule yet) each job is queued once at start, or a fresh
checkout would wait an hour for its first reconciliation.

`CELERY_BROKER_URL=filesystem://` selects the same broker in any process (settings), so a
worker started by hand joins `make run`'s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from wallet_site.child_process import stop_child

# kombu's filesystem transport; the host is named only so kombu does not warn of its absence.
FILESYSTEM_BROKER_URL = "filesystem://localhost//"
PROJECT_DIR = Path(__file__).resolve().parent.parent
# How often the worker looks for new message files (kombu's default is 1 s): a mirror task
# queued after a write runs within about this long.
POLL_INTERVAL_S = 0.2
WORKER_CONCURRENCY = 2
STOP_TIMEOUT_S = 20.0


def filesystem_broker_options(directory: Path) -> dict[str, Any]:
    """kombu's filesystem transport under `directory`: one folder of message files, read and
    written by every process alike, and one of exchange tables."""
    messages = str(directory / "messages")
    return {
        "data_folder_in": messages,
        "data_folder_out": messages,
        "control_folder": str(directory / "control"),
        "polling_interval": POLL_INTERVAL_S,
    }


def is_filesystem_broker(broker_url: str) -> bool:
    return broker_url.startswith("filesystem:")


def make_broker_dirs(directory: Path) -> None:
    """The transport's folders (kombu does not make them)."""
    for folder in ("messages", "control"):
        (directory / folder).mkdir(parents=True, exist_ok=True)


def worker_log(directory: Path) -> Path:
    return directory / "worker.log"


def queue_to_filesystem_broker(app: Celery, *, directory: Path) -> None:
    """Make this process send its tasks to the filesystem broker under `directory` instead of
    running them eagerly (rundev's web process, once its worker is started)."""
    app.conf.update(
        broker_url=FILESYSTEM_BROKER_URL,
        broker_transport_options=filesystem_broker_options(directory),
        task_always_eager=False,
    )


def fresh_schedule(directory: Path) -> bool:
    """No beat has kept a schedule under `directory` yet (its shelve files start with it)."""
    return not any(directory.glob("beat-schedule*"))


def queue_each_job_once(app: Celery, *, schedule: dict[str, dict[str, Any]]) -> list[str]:
    """Queue every job of a beat schedule (CELERY_BEAT_SCHEDULE) now, with its arguments;
    the names of the tasks queued."""
    queued = []
    for entry in schedule.values():
        app.send_task(entry["task"], args=entry.get("args", ()), kwargs=entry.get("kwargs", {}))
        queued.append(str(entry["task"]))
    return queued


@dataclass
class LocalWorker:
    """A running `celery worker --beat` child process."""

    process: subprocess.Popen[bytes]
    directory: Path

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM: the worker finishes the tasks it is running (a warm shutdown), beat with
        it; killed if it has not after `timeout_s`. A task it had not acknowledged stays in
        the broker for the next run (acks late)."""
        stop_child(self.process, timeout_s)

    def running(self) -> bool:
        return self.process.poll() is None


def start_local_worker(
    *, directory: Path, queue: str, env: dict[str, str] | None = None
) -> LocalWorker:
    """Start a Celery worker with beat embedded on the filesystem broker under `directory`,
    consuming `queue`; its log is `worker.log` there, beat's schedule `beat-schedule`. `env`
    is added to this process's environment (e.g. the TB_ADDRESSES of a local TigerBeetle
    server)."""
    make_broker_dirs(directory)
    child_env = {
        **os.environ,
        **(env or {}),
        "CELERY_BROKER_URL": FILESYSTEM_BROKER_URL,
        "CELERY_FILESYSTEM_BROKER_DIR": str(directory),
    }
    log_file = open(worker_log(directory), "ab")  # noqa: SIM115  (the child writes to it until it stops)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "wallet_site",
            "worker",
            "--beat",
            "--schedule",
            str(directory / "beat-schedule"),
            "--queues",
            queue,
            "--concurrency",
            str(WORKER_CONCURRENCY),
            "--hostname",
            f"rundev-{os.getpid()}@%h",
            # Nothing else to gossip or synchronise with: one worker on a local broker.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        cwd=PROJECT_DIR,
        env=child_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()  # the child holds its own descriptor
    return LocalWorker(process=process, directory=directory)
