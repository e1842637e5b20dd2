"""What every benchmark here shares: a scratch database, percentiles, the printed table."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402


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


def api_token(user: Any) -> str:
    """An API token for `user`: the one place that knows how the API authenticates."""
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=user).key


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def latency_figures(name: str, samples_s: list[float], baseline_s: list[float]) -> list[Figure]:
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


@contextmanager
def mongo_server() -> Iterator[str]:
    """MONGO_URL if a server answers there, else an embedded one for the run."""
    from wallet_site.embedded_mongo import mongo_answers, start_embedded_mongo

    if mongo_answers(settings.MONGO_URL):
        yield settings.MONGO_URL
        return
    server = start_embedded_mongo()
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
