"""The alerts in the admin: listed for Support and Product (read-only for Support), resolved
by those who hold `migration.resolve_alert` (Product), each resolution kept and in the
alert's history; refused to staff without the permission; the guard's checks listed."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from domain.ids import WalletKey
from migration import alerts
from migration.models import Alert, GuardCheck
from tests.backoffice.conftest import client_for, user_in

ALERTS = reverse("admin:migration_alert_changelist")
KEY = WalletKey("client-7", "USA", "USD")


def open_alert() -> Alert:
    return alerts.raise_alert(
        Alert.Kind.SHADOW_MISMATCH,
        case=alerts.wallet_case(KEY),
        wallet=KEY,
        figures={"differs_in": "credit"},
        link="/admin/migration/shadowcomparison/1/change/",
    ).alert


def test_support_sees_the_open_alerts_with_a_link_to_each_case_and_cannot_resolve(
    support: Client,
) -> None:
    open_alert()

    page = support.get(ALERTS)

    assert page.status_code == 200
    html = page.content.decode()
    assert "client-7 USA USD" in html
    assert 'href="/admin/migration/shadowcomparison/1/change/"' in html
    assert "resolve_alerts" not in html


def test_product_resolves_alerts_and_the_resolution_is_kept_and_in_the_history(
    product: Client, product_user: User
) -> None:
    alert = open_alert()

    answer = product.post(
        ALERTS, {"action": "resolve_alerts", "_selected_action": [alert.pk]}, follow=True
    )

    assert "1 alerts resolved." in answer.content.decode()
    alert.refresh_from_db()
    assert alert.resolved_by == product_user.get_username()
    assert alert.resolved_at is not None
    entry = LogEntry.objects.get(object_id=str(alert.pk))
    assert entry.get_change_message() == f"Resolved by {alert.resolved_by}."


def test_resolving_is_refused_without_the_permission(support: Client) -> None:
    alert = open_alert()

    support.post(ALERTS, {"action": "resolve_alerts", "_selected_action": [alert.pk]})

    alert.refresh_from_db()
    assert alert.resolved_at is None


def test_staff_without_the_view_permission_are_refused(db: None) -> None:
    open_alert()
    assert client_for(user_in(None)).get(ALERTS).status_code == 403


def test_product_sees_the_guards_checks(product: Client) -> None:
    GuardCheck.objects.create(
        phase=3,
        read_rollout_percent=25,
        action=GuardCheck.Action.STEPPED_BACK,
        breaches=[{"threshold": "fallback_rate", "value": "2.000%", "maximum": "1.000%"}],
        outcome="phase 3 at 25% read rollout -> phase 3 at 5% read rollout",
    )

    page = product.get(reverse("admin:migration_guardcheck_changelist"))

    assert page.status_code == 200
    assert "fallback_rate 2.000% &gt; 1.000%" in page.content.decode()


def test_the_list_shows_each_alerts_figures_in_a_line(support: Client) -> None:
    alerts.raise_alert(
        Alert.Kind.RECONCILIATION_MISMATCH,
        case=alerts.wallet_case(KEY),
        wallet=KEY,
        figures={
            "currency": "USD",
            "fields": ["credit", "debit", "historical_credit"],
            "mongo_minor": [1000, 0, 1000],
            "tigerbeetle_minor": [999, 1, 1000],
        },
    )
    alerts.raise_alert(
        Alert.Kind.GUARD_THRESHOLD,
        case="outbox_age in phase 4",
        figures={"breach": {"threshold": "outbox_age", "value": "3600 s", "maximum": "900 s"}},
    )

    html = support.get(ALERTS).content.decode()

    assert "available: MongoDB $10.00, TigerBeetle $9.99; spent: MongoDB $0.00" in html
    assert "outbox_age 3600 s &gt; 900 s" in html
