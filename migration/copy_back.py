"""The copy back: leaving phase 4, every write TigerBeetle took as the only store goes into
MongoDB, so MongoDB is complete again before it takes writes (`migration.phase_change` runs
it in the step back's pause; the outbox sweeper runs it for any that land later).

The registry flags what is due: credits and debits (`WalletTransfer.needs_copy_back`),
voids (`void_needs_copy_back`), holds TigerBeetle placed alone
(`WalletHold.place_needs_copy_back`) and the captures and releases it took alone
(`needs_copy_back`). They go into MongoDB in TigerBeetle's timestamp order, as log entries
marked copied back (TigerBeetle holds them: the mirror never sends them again) that keep
TigerBeetle's time; docs/migration.md and docs/holds.md.

Writes wait while the pause copies, so on PostgreSQL the bulk goes before it, while phase 4
still takes writes (`copy_back_before_the_pause`), in passes that each copy a prefix of
TigerBeetle's order no write in flight can still precede: a write's rows commit after
TigerBeetle took it, so one it took earlier may commit after one it took later, and the
movement fence (`registry.movement_fence`) is what says when every earlier one is in
(`_settled_timestamp`). The pause then copies what the last pass left (and what phase 4
took meanwhile), with the holds' passes and the sweep. On SQLite, no fence: the pause
copies everything.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Max
from django.utils import timezone

from domain import errors
from domain.ids import hex_to_u128
from domain.wallets import TransactionKind
from flags.phases import InvalidPhaseChange
from ledger import history
from ledger.batches import LedgerBatches
from ledger.stores.mongo_copy_back import (
    CopiedEvent,
    CopiedHoldEvent,
    CopiedVoid,
    CopiedWrite,
    NotOneBatch,
)
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_holds import hold_of_row
from registry import holds as hold_registry
from registry import transfers as transfer_registry
from registry.models import WalletHold, WalletTransfer
from registry.movement_fence import fence_available, wait_for_every_write

log = logging.getLogger(__name__)
# Registry rows read per query while copying phase-4 writes back (writes and voids each).
COPY_BACK_PAGE_ROWS = 1000
# Rounds of one copy-back: each copies at least one event, so this bounds the rows too.
COPY_BACK_ROUNDS_MAX = 1_000_000
# Passes made before the step back's pause, while phase 4 still takes writes: each copies
# what was due when it started, so each is about as long as the writes the last one took.
COPY_BACK_EARLY_PASSES_MAX = 10
# Events copied back per MongoDB transaction (a copy of its own was 30-50 ms on a server
# carrying client traffic; a batch's entries are one insert).
COPY_BACK_BATCH_EVENTS = 500
# The pause starts once at most this many events are left for it (some 10 ms each here).
COPY_BACK_LEFT_FOR_THE_PAUSE = 20
TB_TIMESTAMP_MAX = 2**64 - 1
NS_PER_MS = 1_000_000
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _flagged() -> dict[str, Any]:
    """The rows flagged for the copy back, a query per kind of event (`CopiedRows`' kinds)."""
    return {
        "write": WalletTransfer.objects.filter(needs_copy_back=True),
        "void": WalletTransfer.objects.filter(void_needs_copy_back=True),
        "place": WalletHold.objects.filter(place_needs_copy_back=True),
        "resolve": WalletHold.objects.filter(needs_copy_back=True),
    }


def copy_back_due() -> bool:
    """Whether TigerBeetle holds writes MongoDB has not been given yet."""
    return any(rows.exists() for rows in _flagged().values())


def copy_back_tigerbeetle_writes(
    mongo: MongoWalletStore,
    tigerbeetle: LedgerBatches,
    *,
    page_rows: int = COPY_BACK_PAGE_ROWS,
) -> int:
    """Copy phase-4 writes (credits, debits, voids) and hold events (placed, captured,
    released) into MongoDB in TigerBeetle's order; the expiries among them are MongoDB's own
    (each copied event first expires the holds due by its time), and the sweep at the end
    expires the holds due since the last one. Then what rows from before the hold events
    were flagged leave: captures and releases of holds MongoDB holds open, holds still open.

    Idempotent: MongoDB answers a replay for an id it already has, and each row is marked
    done once its copy committed (with the rest of its round, `CopiedRows`), so an
    interrupted copy-back resumes where it stopped, replaying at most a round. Read in
    bounded rounds (`_next_copy_back_round`), each copying the events no unread row can
    precede, so the whole run keeps TigerBeetle's timestamp order.
    """
    assert page_rows > 0
    copied = _copy_back_in_order(mongo, tigerbeetle, page_rows=page_rows)
    copied += _copy_back_captured_holds(mongo, page_rows=page_rows)
    copied += _copy_back_released_holds(mongo)
    copied += _copy_back_open_holds(mongo, page_rows=page_rows)
    if copied:
        mongo.sweep_expired_holds()
    log.info("copied %d TigerBeetle-only writes back to MongoDB", copied)
    return copied


def copy_back_before_the_pause(
    mongo: MongoWalletStore,
    tigerbeetle: LedgerBatches,
    *,
    page_rows: int = COPY_BACK_PAGE_ROWS,
    left_for_the_pause: int = COPY_BACK_LEFT_FOR_THE_PAUSE,
) -> int:
    """The bulk of a step back's copy back, while phase 4 still takes writes (PostgreSQL), so
    the pause copies only what the last pass left; how many events it copied.

    Outside the pause a write's rows can commit after those of a write TigerBeetle took
    later, so a pass copies only a prefix of TigerBeetle's order that can no longer gain an
    earlier row (`_settled_timestamp`), in the rounds the pause's copy uses. Passes go on
    while the events due shrink, until at most `left_for_the_pause` are left. Nothing here
    on SQLite (no movement fence): the pause copies everything, as it always did.
    """
    assert page_rows > 0 and left_for_the_pause >= 0
    if not fence_available():
        return 0
    copied, due = 0, events_due()
    for _ in range(COPY_BACK_EARLY_PASSES_MAX):
        if due <= left_for_the_pause:
            break
        settled = _settled_timestamp(tigerbeetle)
        if settled is None:
            break
        copied += _copy_back_in_order(mongo, tigerbeetle, page_rows=page_rows, up_to=settled)
        due, due_before = events_due(), due
        if due >= due_before:
            break  # the writes outpace the copy: the pause takes the rest
    log.info("copied %d TigerBeetle-only writes back before the pause; %d left", copied, due)
    return copied


def events_due() -> int:
    """The events the copy back has still to copy in order (rows flagged, a kind each)."""
    return sum(rows.count() for rows in _flagged().values())


def _settled_timestamp(tigerbeetle: LedgerBatches) -> int | None:
    """A TigerBeetle timestamp no event at or before which can still gain a row: the latest
    event flagged now, once the store writes in flight have committed (None: nothing due,
    or writes in flight still running after PHASE_CHANGE_WRITES_WAIT_S).

    Every store write holds its wallets' movement fence from before it sends to TigerBeetle
    until its rows committed (`registry.movement_fence`). An event TigerBeetle took no
    later than one whose row is read here was sent before the read, so its write held the
    fence then: it has committed once every fence held now has been let go. A write that
    takes the fence later sends later, after all of them."""
    latest = _latest_flagged_timestamp(tigerbeetle)
    if latest is None:
        return None
    if not wait_for_every_write(timeout_s=settings.PHASE_CHANGE_WRITES_WAIT_S):
        log.warning("writes in flight did not finish before the pause; the pause copies the rest")
        return None
    return latest


def _latest_flagged_timestamp(tigerbeetle: LedgerBatches) -> int | None:
    """TigerBeetle's timestamp of the latest event flagged for the copy back (a void's and a
    resolution's read from TigerBeetle for the latest row by its millisecond)."""
    flagged = _flagged()
    latest = [flagged[what].aggregate(at=Max("tb_timestamp"))["at"] for what in ("write", "place")]
    void = flagged["void"].order_by(F("voided_at").desc(nulls_last=True), "-pk").first()
    resolved = flagged["resolve"].order_by(F("resolved_at").desc(nulls_last=True), "-pk").first()
    later_ids = [hex_to_u128(void.void_tb_transfer_id_hex)] if void else []
    later_ids += [hex_to_u128(resolved.resolution_tb_transfer_id_hex)] if resolved else []
    latest += history.transfer_timestamps(tigerbeetle, later_ids).values()
    known = [timestamp for timestamp in latest if timestamp]
    return max(known) if known else None


def _copy_back_in_order(
    mongo: MongoWalletStore,
    tigerbeetle: LedgerBatches,
    *,
    page_rows: int,
    up_to: int = TB_TIMESTAMP_MAX,
) -> int:
    """Every flagged event up to TigerBeetle's timestamp `up_to`, in rounds; how many."""
    copied = 0
    for _ in range(COPY_BACK_ROUNDS_MAX):
        events = _next_copy_back_round(tigerbeetle, page_rows=page_rows, up_to=up_to)
        if not events:
            return copied
        _copy_back_events(mongo, events)
        copied += len(events)
    raise InvalidPhaseChange(
        f"copying back did not finish in {COPY_BACK_ROUNDS_MAX} rounds; try again"
    )


def _copy_back_captured_holds(mongo: MongoWalletStore, *, page_rows: int) -> int:
    """Holds TigerBeetle captured alone that the rounds left (none: they copy every flagged
    capture in order), after every other write: a capture only lowers a wallet's available
    credit, so no copied write before it can be refused for it (docs/holds.md)."""
    copied = 0
    for _ in range(COPY_BACK_ROUNDS_MAX):
        rows = list(
            WalletHold.objects.select_related("wallet")
            .filter(needs_copy_back=True)
            .order_by("tb_timestamp", "pk")[:page_rows]
        )
        if not rows:
            return copied
        with CopiedRows() as done:
            for row in rows:
                mongo.copy_back_capture(hold_of_row(row))
                done.add("resolve", row)
        copied += len(rows)
    raise InvalidPhaseChange(
        f"copying back holds did not finish in {COPY_BACK_ROUNDS_MAX} rounds; try again"
    )


def _copy_back_released_holds(mongo: MongoWalletStore) -> int:
    """Mirrored holds (placed in phases 1-3) that MongoDB holds open and TigerBeetle released
    in phase 4: released in MongoDB too, so neither store holds money the other freed. (One
    that expired there expires in MongoDB no later: the cluster's timeout was what was left
    of MongoDB's expiry, docs/holds.md.)"""
    open_ids = mongo.open_hold_ids()
    copied = 0
    for start in range(0, len(open_ids), COPY_BACK_PAGE_ROWS):
        rows = WalletHold.objects.select_related("wallet").filter(
            hold_id__in=open_ids[start : start + COPY_BACK_PAGE_ROWS],
            state=WalletHold.State.RELEASED,
        )
        copied += sum(mongo.copy_back_resolution(hold_of_row(row)) for row in rows)
    return copied


def _copy_back_open_holds(mongo: MongoWalletStore, *, page_rows: int) -> int:
    """Holds TigerBeetle holds open that MongoDB lacks (placed in phase 4): copied as open,
    mirrored holds with the cluster's expiry, so phases 1-3 capture or release them (an
    ordinary post or void of the pending transfer, migration/hold_mirror.py) and phase 4
    again too. After every other write: a hold only lowers the available credit."""
    copied, after_pk = 0, 0
    for _ in range(COPY_BACK_ROUNDS_MAX):
        rows = list(
            WalletHold.objects.select_related("wallet")
            .filter(state=WalletHold.State.OPEN, expires_at__gt=timezone.now(), pk__gt=after_pk)
            .order_by("pk")[:page_rows]
        )
        if not rows:
            return copied
        known = mongo.known_hold_ids([row.hold_id for row in rows])  # one read a page
        copied += sum(
            mongo.copy_back_open(hold_of_row(row)) for row in rows if row.hold_id not in known
        )
        after_pk = rows[-1].pk
    raise InvalidPhaseChange(
        f"copying back holds did not finish in {COPY_BACK_ROUNDS_MAX} rounds; try again"
    )


CopyBackRow = WalletTransfer | WalletHold
CopyBackEvent = tuple[int, str, CopyBackRow]


def _next_copy_back_round(
    tigerbeetle: LedgerBatches, *, page_rows: int, up_to: int = TB_TIMESTAMP_MAX
) -> list[CopyBackEvent]:
    """The next events to copy back, in TigerBeetle's timestamp order, at most about four
    pages of rows: writes, voids, holds TigerBeetle placed alone and the captures and
    releases it took alone; none later than TigerBeetle's timestamp `up_to`.

    Writes and placements are read by their TigerBeetle timestamp. A void's or a hold
    resolution's timestamp lives in TigerBeetle only; the registry holds it to the
    millisecond (`voided_at`, `resolved_at`), so those are read by that time and their page
    is completed with the rest of its last millisecond. An event is copied in this round
    only when no row left unread can come before it: up to the last write or placement read
    (when its page was full) and up to the end of the last millisecond read of the others
    (when their page was full). Rows copied drop out of their queries, so every round makes
    progress and the next one starts where this one stopped. (An expiry is no event here:
    MongoDB expires a copied hold itself, before the first copied event past its expiry.)
    """
    flagged = {what: rows.select_related("wallet") for what, rows in _flagged().items()}
    by_timestamp = F("tb_timestamp").asc(nulls_first=True)
    writes = list(flagged["write"].order_by(by_timestamp, "pk")[:page_rows])
    placed = list(flagged["place"].order_by(by_timestamp, "pk")[:page_rows])
    horizon = TB_TIMESTAMP_MAX
    for page in (writes, placed):
        if len(page) == page_rows:
            horizon = min(horizon, page[-1].tb_timestamp or 0)
    voids, void_horizon = _page_by_millisecond(
        flagged["void"], field="voided_at", page_rows=page_rows
    )
    resolved, resolved_horizon = _page_by_millisecond(
        flagged["resolve"], field="resolved_at", page_rows=page_rows
    )
    horizon = min(horizon, void_horizon, resolved_horizon, up_to)
    later_ids = [hex_to_u128(row.void_tb_transfer_id_hex) for row in voids]
    later_ids += [hex_to_u128(row.resolution_tb_transfer_id_hex) for row in resolved]
    times = history.transfer_timestamps(tigerbeetle, later_ids)
    events: list[CopyBackEvent] = [(row.tb_timestamp or 0, "write", row) for row in writes]
    events += [(row.tb_timestamp or 0, "place", row) for row in placed]
    for row in voids:
        void_time = times.get(hex_to_u128(row.void_tb_transfer_id_hex), 0)
        assert (
            not void_time
            or row.voided_at is None
            or (void_time // NS_PER_MS == _epoch_ms(row.voided_at))
        ), f"void of {row.transaction_id!r}: voided_at is not TigerBeetle's time"
        events.append((void_time, "void", row))
    for hold in resolved:
        events.append(
            (times.get(hex_to_u128(hold.resolution_tb_transfer_id_hex), 0), "resolve", hold)
        )
    events.sort(key=lambda event: event[0])
    return [event for event in events if event[0] <= horizon]


def _page_by_millisecond(rows: Any, *, field: str, page_rows: int) -> tuple[list[Any], int]:
    """A page of `rows` by their millisecond `field`, completed with the rest of its last
    millisecond, and the horizon it sets (the end of that millisecond when the page was
    full, else none)."""
    page = list(rows.order_by(F(field).asc(nulls_first=True), "pk")[:page_rows])
    last_ms = getattr(page[-1], field) if page else None
    if len(page) < page_rows or last_ms is None:
        return page, TB_TIMESTAMP_MAX
    page += rows.filter(**{field: last_ms, "pk__gt": page[-1].pk}).order_by("pk")
    return page, (_epoch_ms(last_ms) + 1) * NS_PER_MS - 1


def _epoch_ms(moment: datetime) -> int:
    return (moment - UNIX_EPOCH) // timedelta(milliseconds=1)


class CopiedRows:
    """The rows of the events copied so far, marked done when the block ends, one statement
    a kind (a statement per event was a fifth of the copy back): after their copies
    committed, and also when a later copy failed, so a run resumes after the last event
    copied."""

    def __init__(self) -> None:
        self._pks: dict[str, list[int]] = {"write": [], "void": [], "place": [], "resolve": []}

    def __enter__(self) -> CopiedRows:
        return self

    def add(self, what: str, row: CopyBackRow) -> None:
        self._pks[what].append(row.pk)

    def __exit__(self, *exc_info: object) -> None:
        pks, self._pks = self._pks, {what: [] for what in self._pks}
        if pks["write"]:
            transfer_registry.mark_writes_copied_back(transfer_pks=pks["write"])
        if pks["void"]:
            transfer_registry.mark_voids_copied_back(transfer_pks=pks["void"])
        if pks["place"]:
            hold_registry.mark_placements_copied_back(hold_pks=pks["place"])
        if pks["resolve"]:
            hold_registry.mark_resolutions_copied_back(hold_pks=pks["resolve"])


def _copy_back_events(mongo: MongoWalletStore, events: list[CopyBackEvent]) -> None:
    """Events into MongoDB in TigerBeetle's order, in batches of COPY_BACK_BATCH_EVENTS (a
    transaction each, not one per event: the step back's passes kept pace with phase 4's
    writes only so), their rows marked done after each; a batch that cannot go as one
    (`NotOneBatch`) goes one by one, before the next."""
    for start in range(0, len(events), COPY_BACK_BATCH_EVENTS):
        batch = events[start : start + COPY_BACK_BATCH_EVENTS]
        try:
            _copy_back_batch(mongo, batch)
        except NotOneBatch as reason:
            log.info("copying %d events back one by one: %s", len(batch), reason)
            _copy_back_one_by_one(mongo, batch)  # before the next batch: a wallet's order


def _copy_back_one_by_one(mongo: MongoWalletStore, events: list[CopyBackEvent]) -> None:
    with CopiedRows() as done:
        for _, what, row in events:
            _copy_back(mongo, what, row)
            done.add(what, row)


def _copied_event(what: str, row: CopyBackRow) -> CopiedEvent:
    """A registry row's event as the MongoDB store copies it back."""
    if isinstance(row, WalletHold):
        return CopiedHoldEvent(hold_of_row(row), placed=what == "place")
    if what == "void":
        return CopiedVoid(
            key=row.wallet.key,
            transaction_id=row.transaction_id,
            voided_by=row.voided_by,
            reason=row.void_reason,
            voided_at=row.voided_at or timezone.now(),  # as its single copy: now
        )
    return CopiedWrite(
        key=row.wallet.key,
        kind=TransactionKind(row.kind),
        amount_minor=row.amount_minor,
        transaction_id=row.transaction_id,
        created_at=row.created_at,
        made_by=row.made_by,
    )


def _copy_back_batch(mongo: MongoWalletStore, batch: list[CopyBackEvent]) -> None:
    """Events into MongoDB in one transaction, their rows marked done after it."""
    events = [_copied_event(what, row) for _, what, row in batch]
    try:
        mongo.copy_back_events(events)
    except errors.WalletError as exc:
        first = batch[0][2]
        name = first.hold_id if isinstance(first, WalletHold) else first.transaction_id
        raise InvalidPhaseChange(
            f"copying {len(events)} events back to MongoDB, from {name!r},"
            f" failed: {exc.message} - TigerBeetle stays the only store; try again"
        ) from exc
    with CopiedRows() as done:
        for _, what, row in batch:
            done.add(what, row)


def _copy_back(mongo: MongoWalletStore, what: str, row: CopyBackRow) -> None:
    """One event into MongoDB (as already mirrored)."""
    if isinstance(row, WalletHold):
        _copy_back_hold_event(mongo, what, row)
        return
    key = row.wallet.key
    try:
        if what == "void":
            with contextlib.suppress(errors.AlreadyVoided):  # copied by an earlier run
                mongo.void_transaction(
                    row.transaction_id,
                    voided_by=row.voided_by,
                    reason=row.void_reason,
                    mirror=False,
                    voided_at=row.voided_at,
                )
        else:
            credit = row.kind == WalletTransfer.Kind.CREDIT
            write = mongo.add_credit if credit else mongo.subtract_credit
            write(
                key,
                row.amount_minor,
                row.transaction_id,
                mirror=False,
                created_at=row.created_at,
                made_by=row.made_by,
            )
    except errors.WalletError as exc:
        raise InvalidPhaseChange(
            f"copying {row.kind} {row.transaction_id!r} back to MongoDB failed: {exc.message}"
            " - TigerBeetle stays the only store; reconcile the wallet and try again"
        ) from exc


def _copy_back_hold_event(mongo: MongoWalletStore, what: str, row: WalletHold) -> None:
    """A hold TigerBeetle placed alone, or its capture or release, into MongoDB at its place
    among the copied writes (so MongoDB's history of it is TigerBeetle's: docs/holds.md)."""
    hold = hold_of_row(row)
    try:
        if what == "place":
            mongo.copy_back_placement(hold)
            return
        if row.state == WalletHold.State.CAPTURED:
            mongo.copy_back_capture(hold)
        else:
            mongo.copy_back_resolution(hold)
    except errors.WalletError as exc:
        raise InvalidPhaseChange(
            f"copying hold {row.hold_id!r} back to MongoDB failed: {exc.message}"
            " - TigerBeetle stays the only store; reconcile the wallet and try again"
        ) from exc
