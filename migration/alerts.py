"""Alerts that mean money may be wrong, raised once per case.

A shadow mismatch, a reconciliation mismatch, a reconciliation run that found problems, a
guard threshold crossed and a step back the guard took each raise an alert. Alerts are
grouped by case: one open alert per kind and case (a wallet, a threshold, a step back),
however often it is seen again; seeing it again counts it and keeps its latest figures. The
database holds that rule (`one_open_alert_per_case`, a partial unique index), so two
workers that see the same mismatch at once make one alert, and only the one that opened it
sends it: an ERROR log line, and a JSON POST to ALERT_WEBHOOK_URL (when set) with the
figures and absolute links to the case's admin page and the alert's. An alert the webhook
did not take (down, refusing) is sent again by `deliver_unsent` (the guard's minute) until
it does, a few times at most. A person resolves it (`migration.resolve_alert`); the next
sighting opens a new one.
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
CASE_LENGTH_MAX = Alert._meta.get_field("case").max_length or 400
# Open alerts the webhook has not taken are sent again, this many a run, each at most
# SEND_ATTEMPTS_MAX times (then the admin list shows them as not delivered).
DELIVERIES_PER_RUN_MAX = 20
SEND_ATTEMPTS_MAX = 10


@dataclass(frozen=True)
class Raised:
    """The open alert, whether this call opened it, and whether the webhook took it now."""

    alert: Alert
    opened: bool
    sent: bool = False


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
    send_now: bool = True,
) -> Raised:
    """Open the alert of `kind` for `case`, or count it again if one is open (its figures
    become these). `link`: the case's admin page (a path). Race-safe: two callers at once
    make one alert, and only the one that opened it sends it: now, or (`send_now` False,
    for a job that found the webhook failing) with the next `deliver_unsent`."""
    assert kind in Alert.Kind.values, kind
    assert case, "an alert is about a case"
    case = case[:CASE_LENGTH_MAX]  # as stored, so the open alert is found by it
    for _ in range(RAISE_ROUNDS_MAX):
        now = timezone.now()
        open_alert = Alert.objects.filter(kind=kind, case=case, resolved_at__isnull=True)
        if open_alert.update(count=F("count") + 1, last_seen_at=now, figures=figures):
            return Raised(open_alert.get(), opened=False)
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    kind=kind,
                    case=case,
                    **(wallet.as_columns() if wallet is not None else {}),
                    opened_at=now,
                    last_seen_at=now,
                    figures=figures,
                    link=link[:500],
                )
        except IntegrityError:
            continue  # another process opened it meanwhile: count it there
        log.error("alert: %s: %s %s", alert.get_kind_display(), alert.case, figures)
        return Raised(alert, opened=True, sent=send(alert) if send_now else False)
    raise RuntimeError(f"alert {kind} {case!r}: neither counted nor opened")


@dataclass
class AlertBatch:
    """Several alerts raised by one job (a reconciliation run's wallets): once the webhook
    fails, the rest are opened without waiting on it, and `deliver_unsent` sends them."""

    sending: bool = True

    def raise_alert(self, kind: str, **details: Any) -> Raised:
        raised = raise_alert(kind, send_now=self.sending, **details)
        if raised.opened and self.sending and not raised.sent and settings.ALERT_WEBHOOK_URL:
            self.sending = False
        return raised


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


def send(alert: Alert) -> bool:
    """POST the alert to ALERT_WEBHOOK_URL; True once the webhook took it (kept as its
    `sent_at`). A webhook that fails is logged, never raised: the job that found the alert
    carries on, and `deliver_unsent` tries again."""
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return False
    Alert.objects.filter(pk=alert.pk).update(send_attempts=F("send_attempts") + 1)
    try:
        requests.post(url, json=payload(alert), timeout=WEBHOOK_TIMEOUT_S).raise_for_status()
    except requests.RequestException as exc:
        log.error("alert webhook %s failed for alert %s: %s", url, alert.pk, exc)
        return False
    alert.sent_at = timezone.now()
    Alert.objects.filter(pk=alert.pk).update(sent_at=alert.sent_at)
    return True


def deliver_unsent(*, limit: int = DELIVERIES_PER_RUN_MAX) -> int:
    """Send the open alerts the webhook has not taken yet (oldest first, each at most
    SEND_ATTEMPTS_MAX times), stopping at the first failure; the guard's minute runs it.
    Returns how many the webhook took."""
    assert limit > 0
    if not settings.ALERT_WEBHOOK_URL:
        return 0
    waiting = Alert.objects.filter(
        resolved_at__isnull=True, sent_at__isnull=True, send_attempts__lt=SEND_ATTEMPTS_MAX
    ).order_by("opened_at", "pk")[:limit]
    delivered = 0
    for alert in waiting:
        if not send(alert):
            break  # the webhook is failing: try again next time, not once per alert
        delivered += 1
    return delivered


def resolve(alert: Alert, *, actor: str, resolution: str) -> bool:
    """Close an open alert as `actor` (False if it was already resolved)."""
    assert actor, "a person resolves an alert"
    closed = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=actor, resolution=resolution[:500]
    )
    return bool(closed)
