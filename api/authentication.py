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

from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox import auth
from knox.models import AuthToken
from knox.signals import token_expired


class TokenAuthentication(auth.TokenAuthentication):
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
