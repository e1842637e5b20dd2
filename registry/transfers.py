"""The transfer registry's writes: the only module that changes a WalletTransfer row.

Every state transition of a registered transaction is one function here: registered (by the
TigerBeetle store, the mirror or the backfill, or by reconciliation's repair from what
TigerBeetle holds), voided, a void refused for funds, copied back to MongoDB, its amount
corrected to TigerBeetle's. The database's CHECK constraints (registry/models.py) refuse a
row that breaks an invariant whichever way it is written; keeping the writes in one place keeps
the transitions readable in one file. Reads stay with their readers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import (
    BooleanField,
    CharField,
    DateTimeField,
    Field,
    ForeignKey,
    IntegerField,
    TextField,
)

from domain.errors import InsufficientFunds
from domain.ids import WalletKey, u128_to_hex
from domain.wallets import TransactionKind, TransactionRecord, TransactionState
from registry.models import StoreMovement, WalletAccount, WalletTransfer
from registry.movements import (
    NewMovement,
    insert_with_movements,
    record_movement,
    record_movements,
)


@dataclass(frozen=True, kw_only=True)
class NewTransfer:
    """A transaction to register as TigerBeetle (or its opening balance) holds it."""

    transaction_id: str
    wallet: WalletAccount
    kind: str
    amount_minor: int
    tb_transfer_id: int
    created_at: datetime
    made_by: str = ""
    tb_timestamp: int | None = None
    state: str = WalletTransfer.State.POSTED
    voided_by: str = ""
    void_reason: str = ""
    voided_at: datetime | None = None

    def row(self) -> WalletTransfer:
        return WalletTransfer(
            transaction_id=self.transaction_id,
            wallet=self.wallet,
            kind=self.kind,
            amount_minor=self.amount_minor,
            state=self.state,
            made_by=self.made_by,
            tb_transfer_id_hex=u128_to_hex(self.tb_transfer_id),
            tb_timestamp=self.tb_timestamp,
            created_at=self.created_at,
            voided_by=self.voided_by,
            void_reason=self.void_reason,
            voided_at=self.voided_at,
        )


def record_store_write(
    *,
    transaction_id: str,
    wallet_pk: int,
    kind: str,
    amount_minor: int,
    tb_transfer_id: int,
    tb_timestamp: int | None,
    created_at: datetime,
    failure_code: str = "",
    made_by: str = "",
    refused_tb_timestamp: int | None = None,
) -> WalletTransfer:
    """A credit or debit the TigerBeetle store posted (or TigerBeetle refused, with its
    `failure_code`, and the timestamp TigerBeetle gave the refused event: its place in the
    wallet's order, for the event feed). A posted one is due to be copied back to MongoDB.
    Idempotent: the row of a concurrent or earlier insert of the same transaction id is
    returned."""
    state = WalletTransfer.State.FAILED if failure_code else WalletTransfer.State.POSTED
    # The row and its event outbox row (registry.movements) commit together; inside the
    # caller's transaction, a savepoint keeps a refusal from spoiling it.
    try:
        with transaction.atomic():
            row = _inserted(
                WalletTransfer(
                    transaction_id=transaction_id,
                    created_at=created_at,
                    wallet_id=wallet_pk,
                    kind=kind,
                    amount_minor=amount_minor,
                    state=state,
                    failure_code=failure_code,
                    made_by=made_by,
                    tb_transfer_id_hex=u128_to_hex(tb_transfer_id),
                    tb_timestamp=tb_timestamp,
                    needs_copy_back=not failure_code,
                )
            )
            _record_write_movement(
                row,
                failure_code=failure_code,
                tb_transfer_id=tb_transfer_id,
                refused_tb_timestamp=refused_tb_timestamp,
            )
            return row
    except IntegrityError:
        # Same TigerBeetle id under another transaction id cannot happen (ids derive
        # from transaction ids); a concurrent insert of this one (or a row a crashed
        # request left) is re-read here.
        return WalletTransfer.objects.select_related("wallet").get(transaction_id=transaction_id)


def _record_write_movement(
    row: WalletTransfer,
    *,
    failure_code: str,
    tb_transfer_id: int,
    refused_tb_timestamp: int | None,
) -> None:
    """A posted credit or debit, or a debit refused for funds, as the event outbox's row."""
    refused = bool(failure_code)
    if refused and not (
        row.kind == WalletTransfer.Kind.DEBIT and failure_code == InsufficientFunds.code
    ):
        return  # no other refusal is a movement (the event feed's kinds, docs/events.md)
    record_movement(
        movement=StoreMovement.Movement.REFUSED if refused else StoreMovement.Movement.POSTED,
        reference_id=row.transaction_id,
        transaction_kind=row.kind,
        wallet_pk=row.wallet_id,
        amount_minor=row.amount_minor,
        occurred_at=row.created_at,
        actor=row.made_by,
        tb_transfer_id_hex="" if refused else u128_to_hex(tb_transfer_id),
        tb_timestamp=refused_tb_timestamp if refused else None,
    )


_INSERT_FIELDS = [field for field in WalletTransfer._meta.concrete_fields if not field.primary_key]
# The fields whose values the database takes only after the field converts them (times, for the
# time zone and, on SQLite, the text form); the others hold plain str, int, bool or None, which
# every driver takes as they are, as the ORM would pass them.
_CONVERTED = tuple(isinstance(field, DateTimeField) for field in _INSERT_FIELDS)
assert all(
    isinstance(field, (CharField, TextField, IntegerField, BooleanField, DateTimeField, ForeignKey))
    and not getattr(field, "auto_now", False)
    and not getattr(field, "auto_now_add", False)
    for field in _INSERT_FIELDS
), "a new kind of field: teach _inserted how the database takes it"


def _column(field: Field[Any, Any]) -> str:
    column = field.column
    assert column is not None, "concrete fields have a column"
    return column


_INSERT_COLUMNS = [_column(field) for field in _INSERT_FIELDS]
_INSERT_ATTNAMES = [field.attname for field in _INSERT_FIELDS]


@functools.cache
def _insert_sql(vendor: str) -> str:
    """The INSERT of one row, written once per database vendor (both speak RETURNING)."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in _INSERT_COLUMNS)
    placeholders = ", ".join(["%s"] * len(_INSERT_FIELDS))
    primary_key = _column(WalletTransfer._meta.pk)
    return (
        f"INSERT INTO {quote(WalletTransfer._meta.db_table)} ({columns}) "
        f"VALUES ({placeholders}) RETURNING {quote(primary_key)}"
    )


@functools.cache
def _insert_many_sql(vendor: str) -> str:
    """The INSERT of one row of a batch, for executemany, a row already registered left as
    it is (ON CONFLICT DO NOTHING)."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in _INSERT_COLUMNS)
    placeholders = ", ".join(["%s"] * len(_INSERT_FIELDS))
    return (
        f"INSERT INTO {quote(WalletTransfer._meta.db_table)} ({columns}) "
        f"VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    )


# A batch's row where it says nothing: each field's default (state posted, no void, no
# failure); the fields a batch sets are written at their positions (`_AT`).
_ROW_TEMPLATE: tuple[Any, ...] = tuple(
    field.get_default() if field.has_default() else None for field in _INSERT_FIELDS
)
_AT = {attname: position for position, attname in enumerate(_INSERT_ATTNAMES)}
_CREATED_AT = WalletTransfer._meta.get_field("created_at")


def _inserted(row: WalletTransfer) -> WalletTransfer:
    """`row` inserted as `Model.save()` would, from a statement written once: compiling
    the ORM's INSERT of this 17-column row cost a third of a millisecond, as much again as
    the database's own work, on every credit and debit. Time fields convert their values
    for the database exactly as the ORM does (`get_db_prep_save`), the plain ones go as
    they are; no signal listens to WalletTransfer (the one module that writes it is this
    one)."""
    values = [getattr(row, attname) for attname in _INSERT_ATTNAMES]
    params = [
        field.get_db_prep_save(value, connection) if converted else value
        for field, value, converted in zip(_INSERT_FIELDS, values, _CONVERTED, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(connection.vendor), params)
        (row.pk,) = cursor.fetchone()
    row._state.adding = False
    row._state.db = connection.alias
    return row


def record_all(transfers: Sequence[NewTransfer], *, batch_size: int | None = None) -> None:
    """Register transactions TigerBeetle holds (mirrored ones, or those a backfill's opening
    balance covers); one already registered is left as it is."""
    WalletTransfer.objects.bulk_create(
        [new.row() for new in transfers], ignore_conflicts=True, batch_size=batch_size
    )


class BatchWrite(NamedTuple):
    """A credit or debit the TigerBeetle store posted in a batch, as its registry row needs
    it (a tuple: a batch builds 8,189 of them)."""

    transaction_id: str
    wallet_pk: int
    kind: str
    amount_minor: int
    tb_transfer_id: int
    tb_timestamp: int
    created_at: datetime
    made_by: str


# A posted transfer's registry columns as its outbox row takes them (registry.movements).
_POSTED_SOURCE_COLUMNS = (
    "transaction_id",
    "kind",
    "wallet_id",
    "amount_minor",
    "tb_transfer_id_hex",
    "made_by",
    "created_at",
)


def record_store_writes(writes: Sequence[BatchWrite]) -> None:
    """Many credits and debits the TigerBeetle store posted in one batch, in one bulk
    insert; each is due to be copied back to MongoDB, as a single write is. One a concurrent
    request registered first (the same batch sent twice at once) is left as it is.

    Statements written once and sent with the rows' values (PostgreSQL: `registry.bulk_insert`
    through `insert_with_movements`; SQLite: `_insert_many_sql`), not the ORM's
    bulk_create: building 8,189 model instances and compiling their INSERT cost three times
    the database's own work. Values go as `_inserted` sends them."""
    if not writes:
        return
    rows = []
    hexes = []
    times: dict[datetime, Any] = {}  # many rows of a batch share a millisecond
    for write in writes:
        assert write.amount_minor > 0 and write.kind in ("credit", "debit")
        created_at = times.get(write.created_at)
        if created_at is None:
            created_at = times[write.created_at] = _CREATED_AT.get_db_prep_save(
                write.created_at, connection
            )
        row = list(_ROW_TEMPLATE)
        row[_AT["transaction_id"]] = write.transaction_id
        row[_AT["wallet_id"]] = write.wallet_pk
        row[_AT["kind"]] = write.kind
        row[_AT["amount_minor"]] = write.amount_minor
        tb_transfer_id_hex = u128_to_hex(write.tb_transfer_id)
        hexes.append(tb_transfer_id_hex)
        row[_AT["tb_transfer_id_hex"]] = tb_transfer_id_hex
        row[_AT["tb_timestamp"]] = write.tb_timestamp
        row[_AT["created_at"]] = created_at
        row[_AT["made_by"]] = write.made_by
        row[_AT["needs_copy_back"]] = True
        rows.append(row)
    if connection.vendor == "postgresql":
        insert_with_movements(
            WalletTransfer,
            _INSERT_FIELDS,
            rows,
            movement=StoreMovement.Movement.POSTED.value,
            source_columns=_POSTED_SOURCE_COLUMNS,
        )
        return
    # SQLite: one statement's executemany (three times faster than bulk_create there), in
    # one transaction with the outbox rows (SQLite would commit each row on its own).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_insert_many_sql(connection.vendor), rows)
        record_movements(
            [
                NewMovement(
                    StoreMovement.Movement.POSTED,
                    write.transaction_id,
                    write.kind,
                    write.wallet_pk,
                    write.amount_minor,
                    tb_transfer_id_hex,
                    write.made_by,
                    write.created_at,
                )
                for write, tb_transfer_id_hex in zip(writes, hexes, strict=True)
            ]
        )


def mark_voided(
    row: WalletTransfer,
    *,
    void_tb_transfer_id: int,
    voided_by: str,
    void_reason: str,
    voided_at: datetime,
    needs_copy_back: bool,
    from_store: bool = False,
) -> None:
    """The transaction's compensating transfer exists: the row is voided (`needs_copy_back`
    when MongoDB does not have the void yet). Saves the whole row, so an unsaved one (a
    voided transaction registered only now) is inserted. `from_store`: the TigerBeetle
    store's own void (phase 4), also written to the event outbox in the same transaction."""
    row.state = WalletTransfer.State.VOIDED
    row.void_tb_transfer_id_hex = u128_to_hex(void_tb_transfer_id)
    row.voided_by = voided_by
    row.void_reason = void_reason
    row.voided_at = voided_at
    if needs_copy_back:
        row.void_needs_copy_back = True
    with transaction.atomic():
        row.save()
        if from_store:
            record_movement(
                movement=StoreMovement.Movement.VOIDED,
                reference_id=row.transaction_id,
                transaction_kind=row.kind,
                wallet_pk=row.wallet_id,
                amount_minor=row.amount_minor,
                occurred_at=voided_at,
                actor=voided_by,
                tb_transfer_id_hex=row.void_tb_transfer_id_hex,
            )


def record_mirrored_void(
    *,
    voided_transaction_id: str,
    wallet: WalletAccount,
    voided_kind: str,
    amount_minor: int,
    void_tb_transfer_id: int,
    voided_tb_transfer_id: int,
    voided_by: str,
    void_reason: str,
    voided_at: datetime,
) -> None:
    """A void the mirror applied. A transaction older than the backfill snapshot has no row
    (its amount is in the opening balance, with no transfer of its own): it is registered
    as voided here. One already voided with its void transfer named is left as it is.

    One voided with no void transfer named is a transaction the backfill registered from
    its log entry, which said voided, while the void itself came after the wallet's
    snapshot (the void landed between the backfill's read of the wallet and its
    registration): the mirror posted that void, so the row names it, or the transfer check
    finds a void no row names ("a second void") on every run."""
    original = WalletTransfer.objects.filter(transaction_id=voided_transaction_id).first()
    if original is None:
        original = WalletTransfer(
            transaction_id=voided_transaction_id,
            wallet=wallet,
            kind=voided_kind,
            amount_minor=amount_minor,
            tb_transfer_id_hex=u128_to_hex(voided_tb_transfer_id),
        )
    if original.state == WalletTransfer.State.VOIDED and original.void_tb_transfer_id_hex:
        return
    mark_voided(
        original,
        void_tb_transfer_id=void_tb_transfer_id,
        voided_by=voided_by,
        void_reason=void_reason,
        voided_at=voided_at,
        needs_copy_back=False,
    )


def count_refused_void(row: WalletTransfer) -> None:
    """A void TigerBeetle refused for funds burnt its transfer id (`id_already_failed` on a
    retry): the next attempt uses the next one."""
    row.void_attempts += 1
    row.save(update_fields=["void_attempts"])


def mark_writes_copied_back(*, transfer_pks: Sequence[int]) -> None:
    """MongoDB now holds these credits and debits TigerBeetle took alone."""
    WalletTransfer.objects.filter(pk__in=transfer_pks).update(needs_copy_back=False)


def mark_voids_copied_back(*, transfer_pks: Sequence[int]) -> None:
    """MongoDB now holds the voids of these transactions, which TigerBeetle took alone."""
    WalletTransfer.objects.filter(pk__in=transfer_pks).update(void_needs_copy_back=False)


def register_from_ledger(
    new: NewTransfer,
    *,
    void_tb_transfer_id: int | None,
    needs_copy_back: bool,
    void_needs_copy_back: bool,
) -> WalletTransfer:
    """A transaction TigerBeetle holds that no row named (reconciliation's repair): its row
    as TigerBeetle holds it, voided too when TigerBeetle holds its void. Raises IntegrityError
    when the transaction id is registered already."""
    row = new.row()
    if void_tb_transfer_id is not None:
        row.void_tb_transfer_id_hex = u128_to_hex(void_tb_transfer_id)
    row.needs_copy_back = needs_copy_back
    row.void_needs_copy_back = void_needs_copy_back
    with transaction.atomic():
        row.save(force_insert=True)
    return row


def correct_amount(row: WalletTransfer, *, amount_minor: int) -> None:
    """The registered amount of a transaction set to what TigerBeetle holds for it
    (reconciliation's repair): the ledger's transfer is immutable, the registry follows it."""
    row.amount_minor = amount_minor
    row.save(update_fields=["amount_minor"])


def transaction_record(row: WalletTransfer, key: WalletKey | None = None) -> TransactionRecord:
    """The registry row as the stores answer a transaction (`key` saves loading the wallet
    row when the caller knows it)."""
    return TransactionRecord(
        transaction_id=row.transaction_id,
        kind=TransactionKind(row.kind),
        key=key or row.wallet.key,
        amount_minor=row.amount_minor,
        state=TransactionState(row.state),
        created_at=row.created_at,
        failure_code=row.failure_code,
        made_by=row.made_by,
        voided_at=row.voided_at,
        voided_by=row.voided_by,
        void_reason=row.void_reason,
    )
