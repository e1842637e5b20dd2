"""Alerts that mean money may be wrong, raised once per case.

A shadow mismatch, a reconciliation mismatch, a reconciliation run that found problems, a
guard threshold crossed and a step back the guard took each raise an alert. Alerts are
grouped by case: one open alert per kind and case (a wallet, a threshold, a step back),
however often it is seen again; seeing it again counts it and keeps its latest figures. The
database holds that rule (`one_open_alert_per_case`, a partial unique index), so two
workers that see the same mismatch at once make one alert, and only the one that opened it
sends it: an ERROR log line, and a JSON POST to ALERT_WEBHOOK_URL (when set) with the
figures and absolute links to the case's admin page and the alert's. A person resolves it
(`migration.resolve_alert`); the next sighting opens a new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from domain.ids import WalletKey
from migration.models import Alert

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_S = 5.0
# An insert that lost the race retries the update; a third round would mean the open alert
# was resolved in between, twice.
RAISE_ROUNDS_MAX = 3


@dataclass(frozen=True)
class Raised:
    """The open alert, and whether this call opened it (and so sent it)."""

    alert: Alert
    opened: bool


def wallet_case(key: WalletKey) -> str:
    """A wallet's case: its key, in the words support reads."""
    return key.describe()


def raise_alert(
    kind: str,
    *,
    case: str,
    figures: dict[str, Any],
    link: str = "",
    wallet: WalletKey | None = None,
) -> Raised:
    """Open the alert of `kind` for `case`, or count it again if one is open (its figures
    become these). `link`: the case's admin page (a path). Race-safe: two callers at once
    make one alert, and only the one that opened it sends it."""
    assert kind in Alert.Kind.values, kind
    assert case, "an alert is about a case"
    for _ in range(RAISE_ROUNDS_MAX):
        now = timezone.now()
        open_alert = Alert.objects.filter(kind=kind, case=case, resolved_at__isnull=True)
        if open_alert.update(count=F("count") + 1, last_seen_at=now, figures=figures):
            return Raised(open_alert.get(), opened=False)
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    kind=kind,
                    case=case[:400],
                    **(wallet.as_columns() if wallet is not None else {}),
                    opened_at=now,
                    last_seen_at=now,
                    figures=figures,
                    link=link[:500],
                )
        except IntegrityError:
            continue  # another process opened it meanwhile: count it there
        send(alert)
        return Raised(alert, opened=True)
    raise RuntimeError(f"alert {kind} {case!r}: neither counted nor opened")


def absolute(path: str) -> str:
    """An admin path as a link people can open from the webhook's receiver."""
    return f"{settings.BACKOFFICE_BASE_URL}{path}" if path else ""


def payload(alert: Alert) -> dict[str, Any]:
    """What the webhook receives: the alert, its figures, and links to the case's page and
    the alert's own."""
    wallet = WalletKey.from_row(alert).as_dict() if alert.client_id else None
    return {
        "alert": alert.kind,
        "title": alert.get_kind_display(),
        "case": alert.case,
        "wallet": wallet,
        "opened_at": alert.opened_at.isoformat(),
        "count": alert.count,
        "figures": alert.figures,
        "link": absolute(alert.link),
        "alert_link": absolute(reverse("admin:migration_alert_change", args=[alert.pk])),
    }


def send(alert: Alert) -> None:
    """Log the alert as an error and POST it to ALERT_WEBHOOK_URL; a webhook that fails is
    logged, never raised (the job that found it carries on)."""
    body = payload(alert)
    log.error("alert: %s: %s %s", alert.get_kind_display(), alert.case, body["figures"])
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return
    try:
        requests.post(url, json=body, timeout=WEBHOOK_TIMEOUT_S).raise_for_status()
    except requests.RequestException as exc:
        log.error("alert webhook %s failed: %s", url, exc)


def resolve(alert: Alert, *, actor: str, resolution: str) -> bool:
    """Close an open alert as `actor` (False if it was already resolved)."""
    assert actor, "a person resolves an alert"
    closed = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=actor, resolution=resolution[:500]
    )
    return bool(closed)
