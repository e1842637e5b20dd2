"""Per-token rate limit, so one runaway client cannot starve the others.

DRF's UserRateThrottle keys on the user; a service account may hold several tokens (one per
deployment of a payment system), and each gets its own budget. The rate is read from
settings at each request (API_THROTTLE_RATE, e.g. "6000/min"), so it can be changed per
deployment and in tests. The counters live in Django's cache (Redis in production, shared
by every worker).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class PerTokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def __init__(self) -> None:
        # SimpleRateThrottle reads its rate table once at import; read the setting now.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATE or None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = request.auth
        if token is None:
            return None  # not token-authenticated: refused by authentication, not counted
        # The token's primary key is its stored digest, never the secret itself.
        return self.cache_format % {"scope": self.scope, "ident": token.pk}
