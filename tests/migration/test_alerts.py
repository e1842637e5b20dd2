"""Alerts that mean money, once: a shadow mismatch raises one as reconciliation does; one
open alert per kind and case however often it is seen (counted, its figures the latest),
also when several processes see it at the same moment (the database's partial unique
constraint); the webhook (a real HTTP server on loopback) receives it once, with the figures
and absolute links; a resolved alert is opened anew by the next sighting; the old setting's
name still reaches the webhook."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from flags.phases import Phase
from migration import alerts
from migration.legacy_cases import acknowledge
from migration.models import Alert, ShadowComparison
from migration.reconciliation import Reconciliation
from migration.tasks import guard as guard_task
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

RACERS = 4


def shadow_mismatch(stores: Stores) -> Any:
    """A wallet whose TigerBeetle account moved money MongoDB never saw, in phase 2 with
    every read compared."""
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.tigerbeetle.subtract_credit(key, 1, tx())
    return key


def test_a_shadow_mismatch_raises_one_alert_however_often_the_wallet_is_read(
    stores: Stores, alert_webhook: list[dict[str, Any]]
) -> None:
    key = shadow_mismatch(stores)

    for _ in range(3):
        stores.phased.get_balance(key)  # each compared on TigerBeetle (eager task)

    assert ShadowComparison.objects.filter(outcome="mismatch").count() == 3
    alert = Alert.objects.get()
    assert (alert.kind, alert.case, alert.count) == (
        Alert.Kind.SHADOW_MISMATCH,
        key.describe(),
        3,
    )
    assert len(alert_webhook) == 1


def test_the_webhook_receives_the_figures_and_absolute_links_to_the_case_and_the_alert(
    stores: Stores, alert_webhook: list[dict[str, Any]]
) -> None:
    key = shadow_mismatch(stores)

    stores.phased.get_balance(key)

    comparison = ShadowComparison.objects.get()
    alert = Alert.objects.get()
    (body,) = alert_webhook
    assert body["alert"] == "shadow_mismatch"
    assert body["wallet"] == key.as_dict()
    assert body["count"] == 1
    assert body["figures"]["differs_in"] == "credit,debit"
    assert body["figures"]["mongo_minor"] == [1000, 0, 1000]
    assert body["figures"]["tigerbeetle_minor"] == [999, 1, 1000]
    assert body["link"] == (
        f"http://backoffice.test/admin/migration/shadowcomparison/{comparison.pk}/change/"
    )
    assert body["alert_link"] == f"http://backoffice.test/admin/migration/alert/{alert.pk}/change/"


def test_an_acknowledged_legacy_wallets_known_difference_raises_no_shadow_alert(
    stores: Stores,
) -> None:
    key = new_key()
    # MongoDB's own fields disagree: total received 1500, available 1000, spent 0. The backfill
    # imports the available and the spent, so TigerBeetle's total received is 1000.
    legacy_wallet(stores, key, credit_minor=1000, debit_minor=0, historical_credit_minor=1500)
    stores.runtime.backfill().run(progress=False)
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run()
    acknowledge(run.mismatches.get(), actor="support-lead", reason="legacy bug, ticket 42")

    stores.phased.get_balance(key)

    assert ShadowComparison.objects.get().outcome == ShadowComparison.Outcome.MISMATCH
    assert not Alert.objects.filter(kind=Alert.Kind.SHADOW_MISMATCH).exists()


def test_a_resolved_alert_is_opened_anew_by_the_next_sighting(
    db: None, alert_webhook: list[dict[str, Any]]
) -> None:
    first = alerts.raise_alert(Alert.Kind.GUARD_THRESHOLD, case="outbox_age", figures={"n": 1})
    assert alerts.resolve(first.alert, actor="lead", resolution="mirror fixed")
    assert not alerts.resolve(first.alert, actor="lead", resolution="twice")

    second = alerts.raise_alert(Alert.Kind.GUARD_THRESHOLD, case="outbox_age", figures={"n": 2})

    assert second.opened and second.alert.pk != first.alert.pk
    assert [body["figures"] for body in alert_webhook] == [{"n": 1}, {"n": 2}]
    resolved = Alert.objects.get(pk=first.alert.pk)
    assert (resolved.resolved_by, resolved.resolution) == ("lead", "mirror fixed")


def test_the_database_refuses_a_second_open_alert_for_a_case(db: None) -> None:
    from django.db import IntegrityError

    Alert.objects.create(kind=Alert.Kind.SHADOW_MISMATCH, case="wallet")
    Alert.objects.create(kind=Alert.Kind.SHADOW_MISMATCH, case="wallet", resolved_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(kind=Alert.Kind.SHADOW_MISMATCH, case="wallet")


def _see_the_mismatch(start: Any, seen: Any) -> None:
    """One process: wait for the others, then raise the same wallet's alert."""
    try:
        start.wait(timeout=60)
        raised = alerts.raise_alert(
            Alert.Kind.RECONCILIATION_MISMATCH, case="client-1 USA USD", figures={"n": 1}
        )
        seen.put("opened" if raised.opened else "counted")
    except Exception as exc:  # reported to the test, which fails on it
        seen.put(f"failed: {exc!r}")
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_processes_seeing_the_same_mismatch_at_once_make_one_alert_sent_once(
    alert_webhook: list[dict[str, Any]],
) -> None:
    connections.close_all()  # the children must not share the parent's connection
    context = multiprocessing.get_context("fork")
    start, seen = context.Barrier(RACERS), context.Queue()
    racers = [context.Process(target=_see_the_mismatch, args=(start, seen)) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    outcomes = sorted(seen.get(timeout=120) for _ in racers)
    for racer in racers:
        racer.join(timeout=30)

    assert outcomes == ["counted"] * (RACERS - 1) + ["opened"]
    alert = Alert.objects.get()
    assert alert.count == RACERS
    assert len(alert_webhook) == 1


@pytest.mark.django_db(transaction=True)
def test_an_insert_that_loses_the_race_counts_the_winners_alert(
    alert_webhook: list[dict[str, Any]],
) -> None:
    """PostgreSQL (CI): another process has inserted the open alert and not committed yet; a
    second one finds nothing to count, inserts, waits on the unique index, gets the conflict
    once the first commits, and counts the first's alert instead of opening its own."""
    if connection.vendor != "postgresql":
        pytest.skip("a row lock on an uncommitted insert needs PostgreSQL (CI runs it)")
    case = "client-2 USA USD"
    second: list[alerts.Raised] = []
    with transaction.atomic():
        Alert.objects.create(kind=Alert.Kind.SHADOW_MISMATCH, case=case)

        def see_it() -> None:
            try:
                second.append(
                    alerts.raise_alert(Alert.Kind.SHADOW_MISMATCH, case=case, figures={"n": 2})
                )
            finally:
                connections.close_all()

        thread = threading.Thread(target=see_it)
        thread.start()
        _wait_until_blocked_on_a_lock()
    thread.join()

    (raised,) = second
    assert not raised.opened
    alert = Alert.objects.get()
    assert (alert.count, alert.figures) == (2, {"n": 2})
    assert alert_webhook == []  # the first process's alert was opened without the webhook


def _wait_until_blocked_on_a_lock() -> None:
    """Until another backend of this database waits on a lock (bounded, never timed)."""
    with connections["default"].cursor() as cursor:
        for _ in range(100_000):
            # Inside a transaction the activity view is a snapshot unless cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            (waiting,) = cursor.fetchone()
            if waiting:
                return
    raise AssertionError("the second process never waited on the unique index")


def test_the_old_webhook_setting_name_still_reaches_the_webhook() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ALERT_WEBHOOK_URL", "RECONCILE_ALERT_WEBHOOK_URL")
    }
    env.update(
        RECONCILE_ALERT_WEBHOOK_URL="http://hooks.test/old",
        DJANGO_SETTINGS_MODULE="wallet_site.settings",
    )
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.ALERT_WEBHOOK_URL)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.strip() == "http://hooks.test/old"


def test_a_rate_setting_is_a_fraction_not_a_float() -> None:
    from django.conf import settings

    assert isinstance(settings.GUARD_MAX_FALLBACK_RATE, Decimal)


UNREACHABLE = "http://127.0.0.1:9/alerts"  # the discard port: nothing listens


def test_an_alert_the_webhook_did_not_take_is_sent_by_the_guards_next_minute(
    stores: Stores, alert_webhook: list[dict[str, Any]], settings: Any
) -> None:
    listening = settings.ALERT_WEBHOOK_URL
    settings.ALERT_WEBHOOK_URL = UNREACHABLE
    raised = alerts.raise_alert(Alert.Kind.GUARD_THRESHOLD, case="outbox_age", figures={"n": 1})
    assert raised.opened and not raised.sent

    settings.ALERT_WEBHOOK_URL = listening
    result = guard_task.delay().get()

    assert result["alerts_delivered"] == 1
    assert [body["case"] for body in alert_webhook] == ["outbox_age"]
    alert = Alert.objects.get()
    assert alert.sent_at is not None and alert.send_attempts == 2


def test_once_the_webhook_fails_a_runs_other_wallets_wait_for_the_next_delivery(
    stores: Stores, alert_webhook: list[dict[str, Any]], settings: Any
) -> None:
    listening = settings.ALERT_WEBHOOK_URL
    enter_phase(Phase.DUAL_WRITE)
    keys = [new_key() for _ in range(3)]
    for key in keys:
        stores.phased.add_credit(key, 1_000, tx())
        stores.tigerbeetle.subtract_credit(key, 1, tx())
    settings.ALERT_WEBHOOK_URL = UNREACHABLE

    Reconciliation(stores.scan, stores.outbox, stores.batches).run()

    # The run's alert tried the webhook once; the wallets' did not wait on it.
    assert sorted(Alert.objects.values_list("send_attempts", flat=True)) == [0, 0, 0, 1]
    settings.ALERT_WEBHOOK_URL = listening
    assert alerts.deliver_unsent() == 4
    assert sorted(body["alert"] for body in alert_webhook) == [
        "reconciliation_mismatch",
        "reconciliation_mismatch",
        "reconciliation_mismatch",
        "reconciliation_run",
    ]
    assert alerts.deliver_unsent() == 0
