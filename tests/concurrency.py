"""Running test code from many threads at once, as concurrent requests would."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connections

A = TypeVar("A")
R = TypeVar("R")


def run_concurrently(function: Callable[[A], R], arguments: Iterable[A], workers: int) -> list[R]:
    """Call function on each argument from `workers` threads; every thread closes its own
    database connections, as a request would, so the test database can be dropped."""

    def call(argument: A) -> R:
        try:
            return function(argument)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(call, arguments))
