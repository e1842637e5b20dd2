"""A wallet's balance history from the MongoDB transaction log (`domain.history`).

Each log entry carries the wallet's balance right after it (`balance_after`, written in the
same transaction as the balance), so a point needs no summing: a page is one indexed query
(`wallet_balance_history`: the wallet key, then `wallet_seq` descending) of at most
limit + 1 entries, plus the wallet's document and the entry a cursor names. Refused debits
(state failed) are no points; a void's entry is a point of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.collection import Collection

from domain import errors
from domain.history import HistoryPage, HistoryPoint, HistoryQuery, PointKind, PointRef
from domain.ids import WalletKey
from domain.wallets import TransactionState, WalletBalance
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_documents import key_filter, key_of


def log_history(database: MongoDatabase, query: HistoryQuery) -> HistoryPage:
    """The page `query` asks for, newest first by `wallet_seq`. Raises WalletNotFound,
    InvalidCursor; PyMongoError is left to the caller's guard (StoreUnavailable)."""
    key = query.key
    wallets, log = database.wallets(), database.log()
    if wallets.find_one(key_filter(key), {"_id": 1}) is None:
        raise errors.WalletNotFound(f"No wallet {key.describe()}.")
    condition: dict[str, Any] = {
        **key_filter(key),
        "state": {"$ne": TransactionState.FAILED.value},
    }
    if query.after is not None:
        condition["wallet_seq"] = {"$lt": _seq_of_point(log, key, query.after)}
    times: dict[str, datetime] = {}
    if query.from_time is not None:
        times["$gte"] = query.from_time
    if query.to_time is not None:
        times["$lt"] = query.to_time
    if times:
        condition["created_at"] = times
    found = log.find(condition).sort("wallet_seq", -1).limit(query.limit + 1)
    return HistoryPage.of([_point_of(entry, key) for entry in found], query)


def _seq_of_point(log: Collection[dict[str, Any]], key: WalletKey, ref: PointRef) -> int:
    """The wallet_seq of the entry a cursor names; InvalidCursor when the wallet has none."""
    entry = log.find_one(
        {"voided_transaction_id": ref.transaction_id} if ref.void else {"_id": ref.transaction_id}
    )
    if (
        entry is None
        or key_of(entry) != key
        or entry.get("state") == TransactionState.FAILED
        or "wallet_seq" not in entry
    ):
        raise errors.InvalidCursor("The cursor names no point of this wallet's history.")
    return int(entry["wallet_seq"])


def _point_of(entry: dict[str, Any], key: WalletKey) -> HistoryPoint:
    balance_after = entry["balance_after"]
    void = entry["kind"] == "void"
    return HistoryPoint(
        transaction_id=entry["voided_transaction_id"] if void else entry["_id"],
        kind=PointKind(entry["kind"]),
        amount_minor=int(entry["amount_minor"]),
        created_at=entry["created_at"],
        balance=WalletBalance(
            key=key,
            credit_minor=balance_after["credit_minor"],
            debit_minor=balance_after["debit_minor"],
            historical_credit_minor=balance_after["historical_credit_minor"],
        ),
    )
