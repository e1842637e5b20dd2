"""The hold registry's writes: the only module that changes a WalletHold row.

Each transition of a hold is one function here: placed (TigerBeetle holds its pending
transfer), refused when placed, captured, released, expired. The database's CHECK constraints
(registry/models.py) refuse a row that breaks an invariant whichever way it is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction

from domain.ids import u128_to_hex
from registry.models import StoreMovement, WalletHold
from registry.movements import (
    NewMovement,
    insert_with_movements,
    record_movement,
    record_movements,
)


def record_placed(
    *,
    hold_id: str,
    wallet_pk: int,
    amount_minor: int,
    timeout_s: int,
    tb_transfer_id: int,
    tb_timestamp: int | None,
    created_at: datetime,
    expires_at: datetime,
    made_by: str,
    failure_code: str = "",
    copy_back: bool = False,
    from_store: bool = False,
) -> WalletHold:
    """A hold TigerBeetle holds (or refused, with its `failure_code`). Idempotent: the row of
    a concurrent or earlier insert of the same hold id is returned. `copy_back`: TigerBeetle
    took it alone (phase 4), so a step back copies its placement into MongoDB. `from_store`:
    the TigerBeetle store's own hold (phase 4), also written to the event outbox in the same
    transaction (registry.movements)."""
    assert amount_minor > 0 and timeout_s > 0, "the service validated the hold"
    state = WalletHold.State.FAILED if failure_code else WalletHold.State.OPEN
    try:
        with transaction.atomic():
            row = WalletHold.objects.create(
                hold_id=hold_id,
                wallet_id=wallet_pk,
                amount_minor=amount_minor,
                timeout_s=timeout_s,
                state=state,
                failure_code=failure_code,
                tb_transfer_id_hex=u128_to_hex(tb_transfer_id),
                tb_timestamp=tb_timestamp,
                created_at=created_at,
                expires_at=expires_at,
                made_by=made_by,
                place_needs_copy_back=copy_back and not failure_code,
            )
            if from_store and not failure_code:
                _record(row, StoreMovement.Movement.HELD, row.amount_minor, at=created_at)
            return row
    except IntegrityError:
        return WalletHold.objects.select_related("wallet").get(hold_id=hold_id)


@dataclass(frozen=True, kw_only=True)
class Placement:
    """A hold TigerBeetle created, for `record_placed_many`."""

    hold_id: str
    wallet_pk: int
    amount_minor: int
    timeout_s: int
    tb_transfer_id: int
    tb_timestamp: int
    created_at: datetime
    expires_at: datetime
    made_by: str


def record_placed_many(placements: list[Placement]) -> None:
    """Holds the TigerBeetle store placed (a batch's, in phase 4: so each is copied back on a
    step back, and each is in the event outbox), in one statement sent with every row's
    values: the ORM's bulk_create of 4,000 rows cost twice the rest of the batch (model
    instances, and on SQLite 61 rows a statement). A row already there is kept (ON CONFLICT
    DO NOTHING): only a concurrent write of the same hold id writes one, and TigerBeetle
    answered it the same hold. Values go as the ORM would send them (`get_db_prep_save`)."""
    if not placements:
        return
    rows = []
    hexes = []
    times: dict[tuple[str, Any], Any] = {}  # a batch's holds share a few milliseconds
    for placed in placements:
        assert placed.amount_minor > 0 and placed.timeout_s > 0, "the service validated it"
        tb_transfer_id_hex = u128_to_hex(placed.tb_transfer_id)
        hexes.append(tb_transfer_id_hex)
        values = {
            **_DEFAULTS,
            "hold_id": placed.hold_id,
            "wallet_id": placed.wallet_pk,
            "amount_minor": placed.amount_minor,
            "timeout_s": placed.timeout_s,
            "state": WalletHold.State.OPEN.value,
            "tb_transfer_id_hex": tb_transfer_id_hex,
            "tb_timestamp": placed.tb_timestamp,
            "created_at": placed.created_at,
            "expires_at": placed.expires_at,
            "made_by": placed.made_by,
            "place_needs_copy_back": True,  # the TigerBeetle store is primary only in phase 4
        }
        row = []
        for field in _FIELDS:
            value = values[field.attname]
            if field.attname in _TIMES:
                prepared = times.get((field.attname, value))
                if prepared is None:
                    prepared = times[(field.attname, value)] = field.get_db_prep_save(
                        value, connection
                    )
                value = prepared
            row.append(value)
        rows.append(row)
    if connection.vendor == "postgresql":
        insert_with_movements(
            WalletHold,
            _FIELDS,
            rows,
            movement=StoreMovement.Movement.HELD.value,
            source_columns=_HELD_SOURCE_COLUMNS,
        )
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in _FIELDS)
    placeholders = ", ".join(["%s"] * len(_FIELDS))
    table = quote(WalletHold._meta.db_table)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING",
            rows,
        )
        record_movements(
            [
                NewMovement(
                    movement=StoreMovement.Movement.HELD,
                    reference_id=placed.hold_id,
                    transaction_kind="",
                    wallet_id=placed.wallet_pk,
                    amount_minor=placed.amount_minor,
                    tb_transfer_id_hex=tb_transfer_id_hex,
                    actor=placed.made_by,
                    occurred_at=placed.created_at,
                )
                for placed, tb_transfer_id_hex in zip(placements, hexes, strict=True)
            ]
        )


# A placed hold's registry columns as its outbox row takes them (registry.movements).
_HELD_SOURCE_COLUMNS = (
    "hold_id",
    "''",
    "wallet_id",
    "amount_minor",
    "tb_transfer_id_hex",
    "made_by",
    "created_at",
)
_FIELDS = [field for field in WalletHold._meta.concrete_fields if not field.primary_key]
_DEFAULTS = {f.attname: f.get_default() if f.has_default() else None for f in _FIELDS}
_TIMES = frozenset({"created_at", "expires_at", "resolved_at"})


def mark_resolved(
    row: WalletHold,
    *,
    captured_minor: int | None,
    resolution_tb_transfer_id: int,
    resolved_at: datetime,
    resolved_by: str,
    copy_back: bool = True,
    from_store: bool = False,
) -> None:
    """TigerBeetle holds the hold's capture (`captured_minor` posted) or, None, its release.
    `copy_back` False: MongoDB took the resolution first (the mirror carried it), so nothing
    is copied back."""
    assert row.state == WalletHold.State.OPEN, "only an open hold resolves"
    if captured_minor is None:
        row.state = WalletHold.State.RELEASED
    else:
        assert 0 < captured_minor <= row.amount_minor, "a capture takes at most the hold"
        row.state = WalletHold.State.CAPTURED
        row.captured_minor = captured_minor
    # TigerBeetle's capture (a debit) or release MongoDB lacks: copied back on a step back.
    row.needs_copy_back = copy_back
    row.resolution_tb_transfer_id_hex = u128_to_hex(resolution_tb_transfer_id)
    row.resolved_at = resolved_at
    row.resolved_by = resolved_by
    with transaction.atomic():
        row.save(
            update_fields=[
                "state",
                "captured_minor",
                "resolution_tb_transfer_id_hex",
                "resolved_at",
                "resolved_by",
                "needs_copy_back",
            ]
        )
        if from_store:
            captured = captured_minor is not None
            _record(
                row,
                StoreMovement.Movement.CAPTURED if captured else StoreMovement.Movement.RELEASED,
                captured_minor if captured_minor is not None else row.amount_minor,
                at=resolved_at,
                actor=resolved_by,
                tb_transfer_id_hex=row.resolution_tb_transfer_id_hex,
            )


def mark_expired(
    row: WalletHold, *, expired_at: datetime | None = None, from_store: bool = False
) -> None:
    """TigerBeetle voided the hold by itself when its timeout passed (at the row's expiry),
    or MongoDB expired it at `expired_at` and the mirror carried that expiry (its void, or
    the cluster's timeout if that came first): MongoDB's time is the expiry's, as its log
    and the balance history say."""
    assert row.state == WalletHold.State.OPEN, "only an open hold expires"
    row.state = WalletHold.State.EXPIRED
    row.resolved_at = expired_at or row.expires_at
    with transaction.atomic():
        row.save(update_fields=["state", "resolved_at"])
        if from_store:
            _record(row, StoreMovement.Movement.EXPIRED, row.amount_minor, at=row.resolved_at)


def _record(
    row: WalletHold,
    movement: str,
    amount_minor: int,
    *,
    at: datetime,
    actor: str | None = None,
    tb_transfer_id_hex: str | None = None,
) -> None:
    """The hold's movement in the event outbox (registry.movements), inside the caller's
    transaction."""
    record_movement(
        movement=movement,
        reference_id=row.hold_id,
        wallet_pk=row.wallet_id,
        amount_minor=amount_minor,
        occurred_at=at,
        actor=row.made_by if actor is None else actor,
        tb_transfer_id_hex=row.tb_transfer_id_hex
        if tb_transfer_id_hex is None
        else tb_transfer_id_hex,
    )


def mark_resolutions_copied_back(*, hold_pks: Sequence[int]) -> None:
    """MongoDB now holds these holds' captures (or releases), which TigerBeetle took alone."""
    WalletHold.objects.filter(pk__in=hold_pks).update(needs_copy_back=False)


def mark_placements_copied_back(*, hold_pks: Sequence[int]) -> None:
    """MongoDB now holds these holds TigerBeetle placed alone (and their `hold` points)."""
    WalletHold.objects.filter(pk__in=hold_pks).update(place_needs_copy_back=False)
