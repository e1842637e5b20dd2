"""The shape of the MongoDB store's documents, shared by the store and the migration's view of
them (its outbox and legacy scan).

Wallet documents hold credit, debit and historical_credit as Decimal128 quantized to the
currency's exponent (never float); wallet documents and log entries carry the wallet key in
four fields (`issuer_type_identifier` "" for no issuer). These functions turn keys and amounts
into those fields and back, and log entries into the typed results the store returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from bson.objectid import ObjectId
from pymongo.collection import Collection

from domain import errors
from domain.ids import WalletKey
from domain.money import currency_exponent, from_minor_units
from domain.wallets import (
    TransactionKind,
    TransactionRecord,
    TransactionState,
    WalletBalance,
    WalletResult,
)

# The wallet key's fields as both collections name them, in WalletKey.FIELDS' order: the
# issuer is `issuer_type_identifier` here ("" for none). The wallets' unique index, the log's
# history index and the outbox's order list them in this order.
MONGO_KEY_FIELDS = ("client_id", "country", "currency", "issuer_type_identifier")
# Client ids one query about several wallets asks for ($in on the indexed field): never an $or
# of whole keys (secantusdb scans the whole collection for any $or) nor a round trip each;
# nor too long a list, which the embedded server answers worse than linearly (2,000 ids over
# 100,000 wallets: 5.3 s in one query, 0.83 s in twenty).
CLIENT_IDS_PER_QUERY = 100

# Every log entry is born with this field (True), written in the same transaction as the
# entry: the event feed's collector (events/) finds the entries it has not taken yet by it
# (a sparse index holds only those) and unsets it once the event is in its table. A field,
# not a time cursor: an expiry is logged at its hold's `expires_at` and a copied-back write
# at TigerBeetle's time, both earlier than entries logged before them.
EVENT_PENDING = "event_pending"
# On a refused debit's entry of a batch (which shares its time with the batch's other entries
# and takes no wallet_seq): the wallet_seq it was refused at, so the feed orders it there.
AFTER_WALLET_SEQ = "after_wallet_seq"


@dataclass(frozen=True)
class LogMarks:
    """The `mirror_state` each kind of log entry is born with, written in the same
    transaction as the entry: that is what makes the log the migration's durable outbox.
    The states are the migration's (`migration.outbox.LOG_MARKS`); the store only writes
    the values it is given."""

    new_write: str  # a client's credit, debit or void: to be mirrored to TigerBeetle
    copied_back: str  # a write copied back from TigerBeetle (leaving phase 4): held there
    refused: str  # a refused debit, kept so a retry is refused alike: nothing to mirror


@dataclass(frozen=True)
class LogEntry:
    """One transaction log entry as support's pages show it."""

    transaction_id: str  # a void's entry: the voided transaction's id; a hold event's: the hold's
    kind: str  # credit, debit, void; hold, capture, release, expire
    amount_minor: int
    state: str
    mirror_state: str
    created_at: datetime
    made_by: str
    voided_by: str
    void_reason: str
    mirror_error: str
    entry_id: str = ""  # the entry's own id: a void's is its own, not its transaction's


def decimal128(amount_minor: int, currency: str) -> Decimal128:
    """Minor units as the Decimal128 a wallet document stores (exact, in the exponent)."""
    return Decimal128(from_minor_units(amount_minor, currency))


def stored_decimal(value: Decimal128 | Decimal | int) -> Decimal:
    """A stored amount as it is stored, exactly."""
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)


def minor(value: Decimal128 | Decimal | int, currency: str) -> int:
    """A stored amount back in minor units; one finer than the currency allows is refused."""
    amount = stored_decimal(value)
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"stored amount {amount} is finer than {currency} allows")
    return int(scaled)


def key_filter(key: WalletKey) -> dict[str, str]:
    """The query (and the fields) that name a wallet in either collection."""
    return dict(zip(MONGO_KEY_FIELDS, key.column_values(), strict=True))


def key_of(document: dict[str, Any]) -> WalletKey:
    """The wallet key of a wallet document or a log entry."""
    return WalletKey.from_mapping(document, names=MONGO_KEY_FIELDS)


def of_wallets(
    collection: Collection[dict[str, Any]],
    keys: Iterable[WalletKey],
    query: Mapping[str, Any] | None = None,
    *,
    projection: Mapping[str, Any] | None = None,
) -> Iterator[tuple[WalletKey, dict[str, Any]]]:
    """The documents `query` finds of these wallets, each with its wallet's key: asked by
    client id, CLIENT_IDS_PER_QUERY ids a query, and kept when the whole key is one of
    them (a document without a whole key is nobody's). A projection names the key's fields."""
    wanted = set(keys)
    client_ids = sorted({key.client_id for key in wanted})
    for start in range(0, len(client_ids), CLIENT_IDS_PER_QUERY):
        chunk = client_ids[start : start + CLIENT_IDS_PER_QUERY]
        for document in collection.find({**(query or {}), "client_id": {"$in": chunk}}, projection):
            try:
                key = key_of(document)
            except KeyError:
                continue
            if key in wanted:
                yield key, document


def balance_of(wallet: dict[str, Any]) -> WalletBalance:
    """A wallet document's balance, in minor units."""
    key = key_of(wallet)
    return WalletBalance(
        key=key,
        credit_minor=minor(wallet["credit"], key.currency),
        debit_minor=minor(wallet["debit"], key.currency),
        historical_credit_minor=minor(wallet["historical_credit"], key.currency),
    )


def balance_fields(balance: WalletBalance) -> dict[str, int]:
    """The balance a log entry records (int64 minor units), so a retry answers it again."""
    return {
        "credit_minor": balance.credit_minor,
        "debit_minor": balance.debit_minor,
        "historical_credit_minor": balance.historical_credit_minor,
        "held_minor": balance.held_minor,
    }


@dataclass(frozen=True)
class PostedWrite:
    """A credit or debit MongoDB posts: what its log entry records besides the wallet's
    state after it."""

    transaction_id: str
    kind: TransactionKind
    key: WalletKey
    amount_minor: int
    made_by: str
    created_at: datetime


def posted_entry(
    write: PostedWrite, *, balance: WalletBalance, wallet_seq: int, mirror_state: str
) -> dict[str, Any]:
    """A posted credit's or debit's log entry, as a single write, a client's batch and a
    copy back all write it (they differ in the mirror state only): the wallet's balance
    after it (a retry answers it again) and its place in the wallet's order."""
    key = write.key
    return {
        "_id": write.transaction_id,
        "kind": write.kind.value,
        **key_filter(key),
        "amount": decimal128(write.amount_minor, key.currency),
        "amount_minor": write.amount_minor,
        "state": TransactionState.POSTED.value,
        "failure_code": "",
        "made_by": write.made_by,
        "balance_after": balance_fields(balance),
        "wallet_seq": wallet_seq,
        "mirror_state": mirror_state,
        "created_at": write.created_at,
        EVENT_PENDING: True,
    }


@dataclass(frozen=True)
class PostedVoid:
    """A void as its log entry records it: the voided entry (as read), who voided it, why,
    and when (a whole-millisecond write time)."""

    voided: Mapping[str, Any]
    voided_by: str
    reason: str
    voided_at: datetime

    @property
    def fields(self) -> dict[str, Any]:
        """What the voided entry is updated with."""
        return {
            "state": TransactionState.VOIDED.value,
            "voided_by": self.voided_by,
            "void_reason": self.reason,
            "voided_at": self.voided_at,
        }


def void_entry(
    void: PostedVoid, *, balance: WalletBalance, wallet_seq: int, mirror_state: str
) -> dict[str, Any]:
    """A void's own log entry (`_id` an ObjectId; it names the voided transaction), as a
    single void and a copy back's batch both write it: the reversal of the voided entry's
    amount on its wallet, with the balance after it and its place in the wallet's order."""
    voided = void.voided
    key = key_of(dict(voided))
    amount_minor = int(voided["amount_minor"])
    assert amount_minor > 0, "a logged transaction moves a positive amount"
    return {
        "_id": ObjectId(),
        "kind": "void",
        "voided_transaction_id": voided["_id"],
        "voided_kind": voided["kind"],
        **key_filter(key),
        "amount": decimal128(amount_minor, key.currency),
        "amount_minor": amount_minor,
        "state": TransactionState.POSTED.value,
        "voided_by": void.voided_by,
        "void_reason": void.reason,
        "balance_after": balance_fields(balance),
        "wallet_seq": wallet_seq,
        "mirror_state": mirror_state,
        "created_at": void.voided_at,
        EVENT_PENDING: True,
    }


def log_entry_of(entry: dict[str, Any]) -> LogEntry:
    """A log entry for support's pages; fields an older entry lacks read as empty."""
    kind = entry.get("kind", "")
    return LogEntry(
        transaction_id=entry.get("voided_transaction_id", entry["_id"])
        if kind == "void"
        else entry.get("hold_id", entry["_id"]),  # a hold event: its hold's id
        kind=kind,
        amount_minor=int(entry.get("amount_minor", 0)),
        state=entry.get("state", ""),
        mirror_state=entry.get("mirror_state", ""),
        created_at=entry["created_at"],
        made_by=entry.get("made_by", ""),
        voided_by=entry.get("voided_by", ""),
        void_reason=entry.get("void_reason", ""),
        mirror_error=entry.get("mirror_error", ""),
        entry_id=str(entry["_id"]),
    )


def record_of(entry: dict[str, Any]) -> TransactionRecord:
    """A credit's or debit's log entry as the transaction every store returns."""
    return TransactionRecord(
        transaction_id=entry["_id"],
        kind=TransactionKind(entry["kind"]),
        key=key_of(entry),
        amount_minor=int(entry["amount_minor"]),
        state=TransactionState(entry["state"]),
        created_at=entry["created_at"],
        failure_code=entry.get("failure_code", ""),
        made_by=entry.get("made_by", ""),
        voided_at=entry.get("voided_at"),
        voided_by=entry.get("voided_by", ""),
        void_reason=entry.get("void_reason", ""),
    )


def known_answer(
    entry: dict[str, Any], kind: TransactionKind, key: WalletKey, amount_minor: int
) -> WalletResult | errors.WalletError:
    """What a write of an id its log entry holds answers: the original result replayed, the
    refusal of a debit refused then, or an idempotency conflict for other content."""
    if (
        entry.get("kind") != kind.value
        or key_of(entry) != key
        or int(entry["amount_minor"]) != amount_minor
    ):
        return errors.IdempotencyConflict(
            f"Id {entry['_id']!r} was already used for a different request.",
            original=record_of(entry),
        )
    if entry["state"] == TransactionState.FAILED:
        return errors.InsufficientFunds(
            f"Wallet {key.describe()} had less available credit than the amount."
        )
    balance_after = entry["balance_after"]
    return WalletResult(
        transaction=record_of(entry),
        balance=WalletBalance(
            key=key,
            credit_minor=balance_after["credit_minor"],
            debit_minor=balance_after["debit_minor"],
            historical_credit_minor=balance_after["historical_credit_minor"],
            held_minor=balance_after.get("held_minor", 0),
        ),
        replayed=True,
    )
