"""What support staff see of one wallet: both stores side by side, and what is behind them.

Each store is read independently, so a store that is down shows as unavailable (with the
reason) next to the other store's figures, never as a zero balance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ledger import errors
from ledger.ids import WalletKey, u128_to_hex
from ledger.money import from_minor_units
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import (
    TRANSFER_CODE_CREDIT,
    TRANSFER_CODE_DEBIT,
    TRANSFER_CODE_OPENING_BALANCE,
    TRANSFER_CODE_VOID,
    TigerBeetleWalletStore,
)
from ledger.wallets import WalletBalance
from registry import accounts as account_registry
from registry.models import WalletTransfer

FIELDS = ("credit", "debit", "historical_credit")
CODE_NAMES = {
    TRANSFER_CODE_CREDIT: "credit",
    TRANSFER_CODE_DEBIT: "debit",
    TRANSFER_CODE_VOID: "void",
    TRANSFER_CODE_OPENING_BALANCE: "opening balance",
}


@dataclass(frozen=True)
class StoreBalance:
    store: str
    balance: WalletBalance | None
    error: str = ""


@dataclass(frozen=True)
class LedgerLine:
    """One TigerBeetle transfer of the wallet account, seen from the wallet."""

    at: datetime
    tb_transfer_id_hex: str
    kind: str
    amount: Decimal
    into_wallet: bool
    transaction_id: str


@dataclass(frozen=True)
class LogLine:
    """One MongoDB transaction log entry of the wallet."""

    transaction_id: str
    kind: str
    amount: Decimal
    state: str
    mirror_state: str
    created_at: datetime
    made_by: str
    voided_by: str
    void_reason: str
    mirror_error: str


@dataclass
class WalletOverview:
    key: WalletKey
    mongo: StoreBalance
    tigerbeetle: StoreBalance
    ledger_lines: list[LedgerLine] = field(default_factory=list)
    log_lines: list[LogLine] = field(default_factory=list)
    history: list[WalletBalance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def differing_fields(self) -> list[str]:
        """Fields whose values differ, when both stores answered."""
        mongo, tb = self.mongo.balance, self.tigerbeetle.balance
        if mongo is None or tb is None:
            return []
        return [
            name
            for name, a, b in zip(FIELDS, mongo.fields_minor(), tb.fields_minor(), strict=True)
            if a != b
        ]


def _at(tb_timestamp: int) -> datetime:
    return datetime.fromtimestamp(tb_timestamp / 1e9, tz=UTC)


def wallet_overview(
    key: WalletKey,
    mongo: MongoWalletStore,
    tigerbeetle: TigerBeetleWalletStore,
    limit: int = 20,
) -> WalletOverview:
    overview = WalletOverview(
        key=key,
        mongo=_read(mongo.name, lambda: mongo.get_balance(key)),
        tigerbeetle=_read(tigerbeetle.name, lambda: tigerbeetle.get_balance(key)),
    )
    try:
        overview.log_lines = [_log_line(entry, key) for entry in mongo.recent_log(key, limit)]
    except errors.StoreUnavailable as exc:
        overview.notes.append(f"MongoDB transaction log unavailable: {exc.message}")
    registered = account_registry.find_account(key)
    if registered is None:
        overview.notes.append("Not in TigerBeetle yet (no registry row).")
        return overview
    try:
        transfers = tigerbeetle.recent_transfers(key, limit)
        overview.history = tigerbeetle.balance_history(key, limit)
    except errors.StoreUnavailable as exc:
        overview.notes.append(f"TigerBeetle history unavailable: {exc.message}")
        return overview
    account_id = registered.tb_account_id
    ids = [u128_to_hex(transfer.id) for transfer in transfers]
    names = dict(
        WalletTransfer.objects.filter(tb_transfer_id_hex__in=ids).values_list(
            "tb_transfer_id_hex", "transaction_id"
        )
    )
    voided = dict(
        WalletTransfer.objects.filter(void_tb_transfer_id_hex__in=ids).values_list(
            "void_tb_transfer_id_hex", "transaction_id"
        )
    )
    overview.ledger_lines = [
        LedgerLine(
            at=_at(transfer.timestamp),
            tb_transfer_id_hex=u128_to_hex(transfer.id),
            kind=CODE_NAMES.get(transfer.code, f"code {transfer.code}"),
            amount=from_minor_units(transfer.amount, key.currency),
            into_wallet=transfer.credit_account_id == account_id,
            transaction_id=names.get(u128_to_hex(transfer.id))
            or (
                f"void of {voided[u128_to_hex(transfer.id)]}"
                if u128_to_hex(transfer.id) in voided
                else ""
            ),
        )
        for transfer in transfers
    ]
    return overview


def _read(store: str, read: Any) -> StoreBalance:
    try:
        return StoreBalance(store, read())
    except errors.WalletNotFound:
        return StoreBalance(store, None, "no such wallet in this store")
    except errors.StoreUnavailable as exc:
        return StoreBalance(store, None, f"unavailable: {exc.message}")


def _log_line(entry: dict[str, Any], key: WalletKey) -> LogLine:
    return LogLine(
        transaction_id=entry.get("voided_transaction_id", entry["_id"])
        if entry.get("kind") == "void"
        else entry["_id"],
        kind=entry.get("kind", ""),
        amount=from_minor_units(int(entry.get("amount_minor", 0)), key.currency),
        state=entry.get("state", ""),
        mirror_state=entry.get("mirror_state", ""),
        created_at=entry["created_at"],
        made_by=entry.get("made_by", ""),
        voided_by=entry.get("voided_by", ""),
        void_reason=entry.get("void_reason", ""),
        mirror_error=entry.get("mirror_error", ""),
    )
