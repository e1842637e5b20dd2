"""GET /healthz and GET /readyz: for load balancers and orchestrators.

`/healthz` says the process answers (liveness): it touches no dependency, so a database or
MongoDB outage never gets a healthy process restarted. `/readyz` says whether this process can
serve now (readiness): it checks each dependency the process needs in the current migration
phase and answers 200 when every required one answered, else 503, with the same JSON:

    {"status": "ready", "phase": 1, "wallet_store": "phased",
     "checks": {"database": {"state": "up", "latency_ms": 0.8, "required": true}, ...}}

Both are answered by a middleware ahead of the others: no authentication, no host check (a
probe names the pod's address), no HTTPS redirect (a probe speaks plain HTTP to gunicorn). They
reveal no secret: dependency names, states (up, down, timeout) and latencies only, never a URL,
a host or an error message (those go to the log).

Every check runs on a thread of its own, all at once, and each is bounded by
READINESS_CHECK_TIMEOUT_S: a dependency that hangs is reported as `timeout` when the bound
passes, so a probe never hangs. The database check reads the migration phase, which says what
else is needed: MongoDB in phases 0-3 (in phase 4 only for the step back, not required), the
ledger in phase 4 (reported in phases 1-3, not required: writes go on into the outbox and
phase 3's reads fall back to MongoDB), both when the phase cannot be read; a pinned
WALLET_STORE needs its own store only. The cache (Redis) and the Celery broker are checked
when they are configured, and shown as not required: the process serves without them
(tests/faults/ proves it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from kombu import Connection as BrokerConnection

from flags.phases import Phase, current_state
from migration.runtime import Runtime, process_runtime

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
# Django's own and the project's degrading one (wallet_site/cache.py), named, not imported.
REDIS_CACHE_BACKENDS = {
    "django.core.cache.backends.redis.RedisCache",
    "wallet_site.cache.DegradingRedisCache",
}
MONGO_PHASES = {Phase.LEGACY, Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.READ_CUTOVER}


@dataclass
class CheckResult:
    state: str = "timeout"  # until the check answers within the bound
    latency_ms: float | None = None
    value: Any = None


def _run(check: Callable[[], Any], result: CheckResult, *, uses_database: bool) -> None:
    started = time.perf_counter()
    try:
        result.value = check()
        state = "up"
    except Exception as exc:
        log.warning("readiness check failed: %s", type(exc).__name__, exc_info=True)
        state = "down"
    finally:
        if uses_database:
            connection.close()  # this thread's own connection
    result.latency_ms = round((time.perf_counter() - started) * 1000, 2)
    result.state = state


def _started(check: Callable[[], Any], *, uses_database: bool = False) -> tuple[Any, CheckResult]:
    result = CheckResult()
    thread = threading.Thread(
        target=_run, args=(check, result), kwargs={"uses_database": uses_database}, daemon=True
    )
    thread.start()
    return thread, result


def _database() -> Phase:
    return current_state().phase


def _ping_redis(url: str, *, timeout_s: float) -> None:
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    finally:
        client.close()


def _ping_broker(url: str, *, timeout_s: float) -> None:
    with BrokerConnection(url, connect_timeout=timeout_s) as broker:
        broker.ensure_connection(max_retries=1, interval_start=0, timeout=timeout_s)


def _ledger_check(runtime: Runtime) -> Callable[[], Any]:
    """A lookup of one account id (found or not): the ledger answered."""
    scope = runtime.scope
    return lambda: runtime.tigerbeetle.backend.lookup_accounts([scope.ids.system_account_id(840)])


def _needed(phase: Phase | None, *, wallet_store: str) -> dict[str, bool]:
    """The stores this process needs, each with whether readiness requires it."""
    if wallet_store == "mongo":
        return {"mongodb": True}
    if wallet_store == "tigerbeetle":
        return {"ledger": True}
    if phase is None:  # the phase is unknown: whatever a phase may need
        return {"mongodb": True, "ledger": True}
    needed = {"mongodb": phase in MONGO_PHASES}
    if phase == Phase.TIGERBEETLE_ONLY:
        needed["mongodb"] = False  # reported: the step back (copy back) needs it
    if phase >= Phase.DUAL_WRITE:
        # Reported from phase 1; required only where serving needs it: in phases 1-3 writes
        # go on without TigerBeetle (the outbox waits) and phase 3's reads fall back, so an
        # outage there must not take every pod out of rotation (tests/faults/ proves both).
        needed["ledger"] = phase == Phase.TIGERBEETLE_ONLY
    return needed


def _cache_url() -> str | None:
    cache = settings.CACHES["default"]
    return str(cache["LOCATION"]) if cache["BACKEND"] in REDIS_CACHE_BACKENDS else None


def readiness() -> tuple[bool, dict[str, Any]]:
    """Whether every dependency this process needs answered, and the report."""
    timeout_s = settings.READINESS_CHECK_TIMEOUT_S
    deadline = time.monotonic() + timeout_s
    runtime = process_runtime()
    uses_engine = not settings.TB_ADDRESSES
    running: dict[str, tuple[Any, CheckResult]] = {
        "database": _started(_database, uses_database=True),
        "mongodb": _started(lambda: runtime.mongo_database.ping(timeout_s=timeout_s)),
        "ledger": _started(_ledger_check(runtime), uses_database=uses_engine),
    }
    cache_url = _cache_url()
    if cache_url:
        running["cache"] = _started(lambda: _ping_redis(cache_url, timeout_s=timeout_s))
    if settings.CELERY_BROKER_URL:
        broker_url = settings.CELERY_BROKER_URL
        running["celery_broker"] = _started(lambda: _ping_broker(broker_url, timeout_s=timeout_s))
    database_thread, database = running["database"]
    database_thread.join(max(0.0, deadline - time.monotonic()))
    phase = database.value if database.state == "up" else None
    # The cache and the broker are reported, not required: without them requests are still
    # served (the cache degrades to the database, a write's mirror task waits in the outbox
    # for the sweeper), so their outage must not take every process out of rotation.
    required = {"database": True, "cache": False, "celery_broker": False}
    required.update(_needed(phase, wallet_store=runtime.wallet_store_name))
    for name, (thread, _) in running.items():
        if name in required:
            thread.join(max(0.0, deadline - time.monotonic()))
    checks = {
        name: {"state": result.state, "latency_ms": result.latency_ms, "required": required[name]}
        for name, (_, result) in running.items()
        if name in required
    }
    ready = all(check["state"] == "up" for check in checks.values() if check["required"])
    report = {
        "status": "ready" if ready else "unready",
        "phase": int(phase) if phase is not None else None,
        "wallet_store": runtime.wallet_store_name,
        "checks": checks,
    }
    return ready, report


def _json(body: dict[str, Any], *, status: int) -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


class HealthProbeMiddleware:
    """Answers /healthz and /readyz before any other middleware (see the module's doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in (HEALTH_PATH, READY_PATH):
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = _json({"status": "method_not_allowed"}, status=405)
            response["Allow"] = "GET, HEAD"
            return response
        if request.path_info == HEALTH_PATH:
            return _json({"status": "ok"}, status=200)
        ready, report = readiness()
        return _json(report, status=200 if ready else 503)
