"""Django's Redis cache, degrading to a miss when Redis fails instead of failing the request.

Everything this project keeps in the cache can be done without it: the registry's key ->
account mapping is read from the database on a miss, and the per-token throttle counts
nothing while its counters cannot be read (it degrades open: a Redis outage must not refuse
payments, and the rate limit protects capacity, not money). So a Redis that is down or hangs
past REDIS_CACHE_TIMEOUT_S makes a read a miss and a write a no-op, logged (at most once per
`LOG_EVERY_S` per process); `/readyz` reports the cache down meanwhile.

What is lost: an invalidation (`delete`) made while Redis is down. A registry row's key, id and
ledger never change once written, so a stale entry can only be one of its other cached fields,
for at most the entry's lifetime.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
Answer = TypeVar("Answer")


class _OutageLog:
    """One warning per LOG_EVERY_S, not one per request, while Redis is down."""

    last_logged_at = float("-inf")

    @classmethod
    def failed(cls, operation: str, exc: RedisError) -> None:
        now = time.monotonic()
        if now - cls.last_logged_at >= LOG_EVERY_S:
            cls.last_logged_at = now
            log.warning("cache %s failed (%s): served without the cache", operation, exc)


def _degraded(operation: str, call: Callable[[], Answer], fallback: Answer) -> Answer:
    try:
        return call()
    except RedisError as exc:
        _OutageLog.failed(operation, exc)
        return fallback


class DegradingRedisCacheClient(RedisCacheClient):
    """Reads answer a miss and writes do nothing while Redis fails; `incr` and `clear`, which
    no request path uses, still raise."""

    def get(self, key: Any, default: Any) -> Any:
        parent: Any = super()
        return _degraded("get", lambda: parent.get(key, default), default)

    def get_many(self, keys: Any) -> dict[Any, Any]:
        parent: Any = super()
        return _degraded("get_many", lambda: parent.get_many(keys), {})

    def has_key(self, key: Any) -> bool:
        parent: Any = super()
        return _degraded("has_key", lambda: parent.has_key(key), False)

    def add(self, key: Any, value: Any, timeout: Any) -> bool:
        parent: Any = super()
        return _degraded("add", lambda: parent.add(key, value, timeout), False)

    def set(self, key: Any, value: Any, timeout: Any) -> None:
        parent: Any = super()
        _degraded("set", lambda: parent.set(key, value, timeout), None)

    def set_many(self, data: Any, timeout: Any) -> None:
        parent: Any = super()
        _degraded("set_many", lambda: parent.set_many(data, timeout), None)

    def touch(self, key: Any, timeout: Any) -> bool:
        parent: Any = super()
        return _degraded("touch", lambda: parent.touch(key, timeout), False)

    def delete(self, key: Any) -> bool:
        parent: Any = super()
        return _degraded("delete", lambda: parent.delete(key), False)

    def delete_many(self, keys: Any) -> None:
        parent: Any = super()
        _degraded("delete_many", lambda: parent.delete_many(keys), None)


class DegradingRedisCache(RedisCache):
    """`django.core.cache.backends.redis.RedisCache` over `DegradingRedisCacheClient`."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = DegradingRedisCacheClient
