"""API token authentication: knox's, checking only the token a request presents.

knox deletes the caller's other expired tokens on every request, and to find them reads all
of the caller's tokens each time: a query per request that grows with the account's history
(a service account rotating its token daily holds some ninety unexpired ones). Here a request
checks its own token only; an expired one is deleted and refused, as knox does. The other
expired tokens are deleted by the `wallet_site.purge_expired_tokens` task (Celery beat,
`TOKEN_PURGE_INTERVAL_S`); until then they authenticate no one, since every token's expiry is
checked when it is presented.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox import auth
from knox.models import AuthToken
from knox.signals import token_expired
from rest_framework import exceptions
from rest_framework.request import Request

from staff.lockout import client_ip_address


class TooManyFailedAuthentications(exceptions.Throttled):
    """429: this address presented too many tokens that were refused; it waits out the window
    (API_AUTH_FAILURE_LIMIT within API_AUTH_FAILURE_WINDOW_S), whatever token it sends."""

    default_detail = "Too many failed token authentications from this address."
    default_code = "too_many_failed_authentications"


class TokenAuthentication(auth.TokenAuthentication):
    def authenticate(self, request: Request) -> Any:
        """Knox's, refused at once for an address past its failed-authentication limit; each
        refused token counts one failure for its address (in Django's cache, shared by the
        workers). A request without a token counts nothing."""
        if settings.API_AUTH_FAILURE_LIMIT <= 0:  # 0: off
            return super().authenticate(request)
        source = client_ip_address(request) or "unknown"
        count_key, until_key = f"api-auth-failures:{source}", f"api-auth-failures-until:{source}"
        if (cache.get(count_key) or 0) >= settings.API_AUTH_FAILURE_LIMIT:
            until = cache.get(until_key) or time.time() + settings.API_AUTH_FAILURE_WINDOW_S
            raise TooManyFailedAuthentications(wait=max(1, round(until - time.time())))
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            _count_failure(count_key=count_key, until_key=until_key)
            raise

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        """Whether the presented token has expired (it is deleted then)."""
        if auth_token.expiry is None or auth_token.expiry >= timezone.now():
            return False
        username = auth_token.user.get_username()
        auth_token.delete()
        token_expired.send(sender=self.__class__, username=username, source="auth_token")
        return True


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI schema describes this authentication as knox's: the same header and name."""

    target_class = "api.authentication.TokenAuthentication"


def _count_failure(*, count_key: str, until_key: str) -> None:
    """One more failure in the address's window (the first failure opens the window)."""
    window_s = settings.API_AUTH_FAILURE_WINDOW_S
    if cache.add(count_key, 1, timeout=window_s):
        cache.set(until_key, time.time() + window_s, timeout=window_s)
        return
    try:
        cache.incr(count_key)
    except ValueError:  # the window ended between add and incr: this failure opens the next
        cache.add(count_key, 1, timeout=window_s)
        cache.set(until_key, time.time() + window_s, timeout=window_s)
