"""The event feed's Celery tasks: beat collects the change records into the events table and
delivers what is due. Both keep their state in the databases (MongoDB's log marks, the
store's outbox rows, the deliveries), never in a message: a broker that is down delays the
feed and loses nothing, and a run that dies is redone by the next."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import shared_task
from django.conf import settings

from events.collector import EventCollector
from events.delivery import DeliveryPolicy, deliver_due
from flags.phases import current_state
from flags.write_lock import one_run_at_a_time
from migration.runtime import Runtime, process_runtime

# The lock one collector run holds (an advisory lock key, or a lock file beside SQLite's).
COLLECTOR_RUN_LOCK = "events-collector-run"


def collector_of(runtime: Runtime) -> EventCollector:
    return EventCollector(
        mongo=runtime.mongo_database,
        backend=runtime.tigerbeetle.backend,
        ids=runtime.scope.ids,
        batch_size=settings.EVENTS_COLLECT_BATCH,
        store_settle_s=settings.EVENTS_STORE_SETTLE_S,
    )


def delivery_policy() -> DeliveryPolicy:
    return DeliveryPolicy(
        timeout_s=settings.EVENTS_DELIVERY_TIMEOUT_S,
        max_attempts=settings.EVENTS_DELIVERY_MAX_ATTEMPTS,
        backoff_base_s=settings.EVENTS_DELIVERY_BACKOFF_BASE_S,
        backoff_max_s=settings.EVENTS_DELIVERY_BACKOFF_MAX_S,
    )


def collect_events_now(runtime: Runtime) -> dict[str, Any]:
    """One collector run on `runtime` (the task's; tests and commands call it directly)."""
    report = collector_of(runtime).collect(
        tigerbeetle_authoritative=current_state().tigerbeetle_only,
        max_batches=settings.EVENTS_COLLECT_MAX_BATCHES,
        learn_hold=runtime.tigerbeetle.get_hold,
    )
    return asdict(report)


@shared_task(name="events.collect")
def collect_events() -> dict[str, Any]:
    """Celery beat (EVENTS_COLLECT_INTERVAL_S): new movements into the feed, then deliver.
    A run that finds another still collecting does nothing: beat queues one every interval,
    and runs stacked on a slow MongoDB each re-read the same pending entries and re-send
    their updates, until the store serves nothing else (seen in the moonshot bench)."""
    with one_run_at_a_time(COLLECTOR_RUN_LOCK) as alone:
        if not alone:
            return {"read": 0, "inserted": 0, "skipped": "another collector run is in progress"}
        report = collect_events_now(process_runtime())
    if report["inserted"]:
        deliver_events.delay()
    return report


@shared_task(name="events.deliver")
def deliver_events() -> dict[str, Any]:
    """Celery beat (EVENTS_DELIVER_INTERVAL_S) and after a collection: due deliveries."""
    return asdict(deliver_due(delivery_policy(), limit=settings.EVENTS_DELIVER_BATCH))
