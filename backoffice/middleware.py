"""Names the signed-in user as the actor of any flag flip made while serving a request
(waffle's admin, the phase page), so the audit says who, not "system"."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from flags.audit import acting_as


class FlagActorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        with acting_as(user.get_username()):
            return self.get_response(request)
