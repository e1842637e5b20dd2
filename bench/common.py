"""What every benchmark here shares: a scratch database, percentiles, the printed table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

import django

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, Permission  # noqa: E402
from django.db import connection  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from wallet_site.embedded_mongo import (  # noqa: E402
    free_loopback_port,
    mongo_answers,
    start_embedded_mongo,
)
from wallet_site.local_tigerbeetle import start_local_tigerbeetle  # noqa: E402


@dataclass
class Figure:
    """One measured figure beside its same-run baseline."""

    name: str
    value: float
    baseline: float
    unit: str

    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


@dataclass
class Target:
    """A figure with the bounds of its ratio to the baseline (None: no bound that side)."""

    name: str
    value: float
    baseline: float
    unit: str
    ratio_max: float | None = None
    ratio_min: float | None = None

    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    def bound(self) -> str:
        if self.ratio_max is not None:
            return f"<={self.ratio_max:.2f}x"
        if self.ratio_min is not None:
            return f">={self.ratio_min:.2f}x"
        return ""

    def verdict(self) -> str:
        if self.ratio_max is None and self.ratio_min is None:
            return ""
        met = (self.ratio_max is None or self.ratio() <= self.ratio_max) and (
            self.ratio_min is None or self.ratio() >= self.ratio_min
        )
        return "met" if met else "NOT met"


def api_authorization(user: Any) -> str:
    """The Authorization header value for `user`, made a service account (reads, credits,
    debits) allowed to void too: the one place that knows how the API authenticates."""
    user.groups.add(Group.objects.get(name="Service account"))
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="registry", codename="void_wallettransfer")
    )
    _, token = AuthToken.objects.create(user=user)
    return f"Token {token}"


def deployment_env(
    *, store_name: str, database_name: str, extra_env: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of the app's processes (web, worker, commands) on `database_name`."""
    # Plain HTTP on loopback, and no per-token throttle: the benchmark is the load on purpose.
    env = dict(
        os.environ,
        WALLET_STORE=store_name,
        DJANGO_DEBUG="false",
        DJANGO_HTTPS="false",
        API_THROTTLE_RATE="",
        **(extra_env or {}),
    )
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{database_name}"
    else:
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{database_name}"
    return env


@contextmanager
def gunicorn(
    *,
    store_name: str,
    database_name: str,
    workers: int = 2,
    threads: int = 1,
    keep_alive_s: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """The app under gunicorn on a free loopback port, on `database_name`; yields its URL.
    `keep_alive_s`: how long an idle keep-alive connection stays open (gunicorn's default,
    2 s, when None)."""
    port = free_loopback_port()
    env = deployment_env(store_name=store_name, database_name=database_name, extra_env=extra_env)
    command = [sys.executable, "-m", "gunicorn", "wallet_site.wsgi", "-b", f"127.0.0.1:{port}"]
    command += ["-w", str(workers), "--threads", str(threads), "--log-level", "warning"]
    if keep_alive_s is not None:
        command += ["--keep-alive", str(keep_alive_s)]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{base}/api/ping", timeout=5)
                break
            except requests.RequestException:  # not listening yet, or still importing
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextmanager
def tigerbeetle_server(binary: str) -> Iterator[str]:
    """A single-replica TigerBeetle server of our own (production defaults) on a free
    loopback port, accepting connections before the run starts (requests sent to a server
    still starting time out as 503s); its data file under var/ deleted afterwards. Yields
    its address."""
    directory = settings.VAR_DIR / "bench-tigerbeetle" / str(os.getpid())
    server = start_local_tigerbeetle(
        Path(binary),
        data_dir=directory,
        port=free_loopback_port(),
        log_path=directory / "server.log",
    )
    try:
        yield server.addresses
    finally:
        server.stop(timeout_s=30)
        shutil.rmtree(directory, ignore_errors=True)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def latency_figures(name: str, *, samples_s: list[float], baseline_s: list[float]) -> list[Figure]:
    """p50/p95/p99 in ms, and sequential throughput, each against the baseline."""
    figures = [
        Figure(
            f"{name} p{pct}",
            percentile(samples_s, pct) * 1000,
            percentile(baseline_s, pct) * 1000,
            "ms",
        )
        for pct in (50, 95, 99)
    ]
    figures.append(
        Figure(
            f"{name} throughput",
            len(samples_s) / sum(samples_s),
            len(baseline_s) / sum(baseline_s),
            "ops/s",
        )
    )
    return figures


# The embedded server's WiredTiger cache a legacy wallet needs, with room for the run's log,
# holds, oplog and the versions a long read keeps: a million wallets outgrew the daemon's
# 1 GB (docs/benchmarks.md, "The server's stall looked for").
EMBEDDED_CACHE_PER_WALLET_BYTES = 4096
EMBEDDED_CACHE_MIN_MB = 1024


def embedded_cache_size(wallets: int) -> str:
    """The cache an embedded server of a run over `wallets` legacy wallets gets."""
    return f"{max(EMBEDDED_CACHE_MIN_MB, wallets * EMBEDDED_CACHE_PER_WALLET_BYTES // 2**20)}M"


@contextmanager
def mongo_server(*, wallets: int = 0) -> Iterator[str]:
    """MONGO_URL if the environment gives it and a server answers there, else an embedded one
    of the run's own. The default URL (port 27017) is not borrowed: on a shared machine what
    answers there is whoever's `make run` (rundev), which may stop in the middle of the run and
    take the run's database with it (seen: the moonshot's writes turned into 503s and its
    worker's mirror into connection refused when a `make run` elsewhere ended). `wallets`:
    how many legacy wallets the run seeds, which sizes the embedded server's cache."""
    if "MONGO_URL" in os.environ and mongo_answers(settings.MONGO_URL):
        yield settings.MONGO_URL
        return
    server = start_embedded_mongo(cache_size=embedded_cache_size(wallets))
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def scratch_database(suffix: str) -> Iterator[str]:
    """A fresh database beside the configured one, dropped afterwards; yields its name."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db["TEST"]["NAME"] = str(settings.VAR_DIR / f"bench_{suffix}.sqlite3")
    else:
        db["TEST"]["NAME"] = f"{db['NAME']}_bench_{suffix}"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield connection.settings_dict["NAME"]
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def print_figures(title: str, figures: list[Figure], baseline: str) -> None:
    print(f"\n{title} (database: {connection.vendor}; baseline: {baseline})")
    print(f"{'figure':<52} {'value':>12} {'baseline':>12} {'unit':<12} {'ratio':>8}")
    for figure in figures:
        print(
            f"{figure.name:<52} {figure.value:>12.3f} {figure.baseline:>12.3f} "
            f"{figure.unit:<12} {figure.ratio():>7.3f}x"
        )


def print_targets(title: str, targets: list[Target]) -> None:
    print(f"\n{title}")
    print(
        f"{'target':<58} {'value':>10} {'baseline':>10} {'unit':<5} {'ratio':>7} {'bound':>7}  met?"
    )
    for target in targets:
        print(
            f"{target.name:<58} {target.value:>10.3f} {target.baseline:>10.3f} {target.unit:<5} "
            f"{target.ratio():>6.2f}x {target.bound():>7}  {target.verdict()}"
        )
