"""Selectors for support staff: one wallet with both stores side by side, and finding a wallet
or a transaction by any id it is known by.

Each store is read independently, so a store that is down shows as unavailable (with the
reason) next to the other store's figures, never as a zero balance. Which store is
authoritative depends on the migration phase, and so does which difference between the
stores matters: the selectors say both, so the page never has to guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backoffice.notices import Notice, wallet_notice
from domain import errors
from domain.ids import WalletKey, u128_to_hex
from domain.wallets import TransactionRecord, WalletBalance
from flags.models import Milestone
from flags.phases import MigrationState, Phase
from ledger import history
from ledger.stores.mongo_documents import LogEntry
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from ledger.tb_model import (
    TRANSFER_CODE_CREDIT,
    TRANSFER_CODE_DEBIT,
    TRANSFER_CODE_OPENING_BALANCE,
    TRANSFER_CODE_VOID,
)
from migration.outbox import MirrorOutbox, WalletWaiting
from registry import accounts as account_registry
from registry.models import WalletAccount, WalletTransfer

FIELDS = ("credit", "debit", "historical_credit")
# The words support staff use for the seed's three balance fields, and what each means.
BALANCE_WORDS = {
    "credit": ("available", "what the client can spend now"),
    "debit": ("spent", "every debit ever taken, and every voided credit"),
    "historical_credit": ("total received", "every credit ever added, and every voided debit"),
}
VOID_EFFECT = (
    "A void never deletes anything: it posts the opposite movement. Voiding a debit gives "
    "the money back as a new credit (available and total received rise, spent keeps the "
    "debit); voiding a credit takes it back as a new debit (available falls, spent rises)."
)
CODE_NAMES = {
    TRANSFER_CODE_CREDIT: "credit",
    TRANSFER_CODE_DEBIT: "debit",
    TRANSFER_CODE_VOID: "void",
    TRANSFER_CODE_OPENING_BALANCE: "opening balance",
}
STORE_NAMES = {"mongo": "MongoDB", "tigerbeetle": "TigerBeetle"}
PAGE_SIZE = 20


@dataclass(frozen=True)
class StoreBalance:
    store: str
    balance: WalletBalance | None
    error: str = ""

    @property
    def label(self) -> str:
        return STORE_NAMES[self.store]


@dataclass(frozen=True)
class StoreRoles:
    """Which store is authoritative in this phase for this wallet, and why."""

    phase: Phase
    authoritative: str  # "mongo" or "tigerbeetle"
    reads_from: str  # where this client's balance reads are served from
    explanation: str

    @property
    def order(self) -> tuple[str, str]:
        """The stores, authoritative first (the order of the page's columns)."""
        if self.authoritative == "tigerbeetle":
            return ("tigerbeetle", "mongo")
        return ("mongo", "tigerbeetle")


def store_roles(state: MigrationState, client_id: str) -> StoreRoles:
    phase = state.phase
    reads = "tigerbeetle" if state.reads_from_tigerbeetle(client_id) else "mongo"
    if phase == Phase.TIGERBEETLE_ONLY:
        explanation = (
            "TigerBeetle is authoritative: it is the only store written. MongoDB is no longer "
            "written and falls behind until a step back copies TigerBeetle's writes into it."
        )
        return StoreRoles(phase, "tigerbeetle", "tigerbeetle", explanation)
    if phase == Phase.LEGACY:
        explanation = (
            "MongoDB is authoritative and the only store in use: TigerBeetle is not kept "
            "current before dual write (it holds what the backfill imported, if anything)."
        )
    elif not state.in_dual_write_share(client_id):
        explanation = (
            "MongoDB is authoritative and the only store written for this client: it is "
            f"outside the dual-write share ({state.dual_write_percent}% of clients), so "
            "TigerBeetle is not kept current for it until a raise of the share takes it in."
        )
    elif phase == Phase.READ_CUTOVER:
        explanation = (
            "MongoDB is authoritative: every write goes to it first and is mirrored into "
            f"TigerBeetle. This client's balance reads are served by {STORE_NAMES[reads]} "
            f"(read rollout {state.read_rollout_percent}% of clients)."
        )
    else:
        explanation = (
            "MongoDB is authoritative: every write goes to it first and is mirrored into "
            "TigerBeetle, which must end up holding the same balances."
        )
    return StoreRoles(phase, "mongo", reads, explanation)


@dataclass(frozen=True)
class Difference:
    """What the difference between the stores means in this phase: `warning` matters now,
    `info` is expected (lag, a store not in use), `none` is no difference."""

    level: str
    message: str


@dataclass(frozen=True)
class BalanceRow:
    field: str
    word: str
    meaning: str
    values: list[tuple[str, int | None, str]]  # (store, minor units or None, error)
    differs: bool


@dataclass(frozen=True)
class LedgerLine:
    """One TigerBeetle transfer of the wallet account, seen from the wallet."""

    at: datetime
    tb_timestamp: int
    tb_transfer_id_hex: str
    kind: str
    amount_minor: int
    into_wallet: bool
    transaction_id: str
    voidable: bool
    registry_pk: int | None
    state: str = ""  # the registry's state of its transaction: posted, voided, ...


@dataclass(frozen=True)
class LogLine:
    """One MongoDB transaction log entry of the wallet."""

    transaction_id: str
    kind: str
    amount_minor: int
    state: str
    mirror_state: str
    created_at: datetime
    made_by: str
    voided_by: str
    void_reason: str
    mirror_error: str
    voidable: bool
    entry_id: str = ""  # its own id in the log: a void's is not its transaction's


@dataclass
class WalletOverview:
    key: WalletKey
    mongo: StoreBalance
    tigerbeetle: StoreBalance
    roles: StoreRoles | None = None
    ledger_lines: list[LedgerLine] = field(default_factory=list)
    log_lines: list[LogLine] = field(default_factory=list)
    history: list[WalletBalance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log_page: int = 1
    log_has_more: bool = False
    tb_before: int = 0
    tb_next_before: int = 0  # 0: no older transfers
    has_voids: bool = False
    difference: Difference = Difference("none", "")
    waiting: WalletWaiting | None = None  # its outbox entries (None: MongoDB did not answer)
    mirror: Notice = field(default_factory=lambda: Notice("none", ""))

    @property
    def both_stores_hold_it(self) -> bool:
        return self.mongo.balance is not None and self.tigerbeetle.balance is not None

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

    @property
    def stores(self) -> list[StoreBalance]:
        """Both stores, authoritative first."""
        order = self.roles.order if self.roles else ("mongo", "tigerbeetle")
        by_name = {"mongo": self.mongo, "tigerbeetle": self.tigerbeetle}
        return [by_name[name] for name in order]

    @property
    def balance_rows(self) -> list[BalanceRow]:
        differing = self.differing_fields
        rows = []
        for index, name in enumerate(FIELDS):
            word, meaning = BALANCE_WORDS[name]
            values = [
                (
                    store.store,
                    store.balance.fields_minor()[index] if store.balance else None,
                    store.error,
                )
                for store in self.stores
            ]
            rows.append(BalanceRow(name, word, meaning, values, name in differing))
        return rows


def _at(tb_timestamp: int) -> datetime:
    return datetime.fromtimestamp(tb_timestamp / 1e9, tz=UTC)


def wallet_overview(
    key: WalletKey,
    mongo: MongoWalletStore,
    tigerbeetle: TigerBeetleWalletStore,
    *,
    state: MigrationState,
    log_page: int = 1,
    tb_before: int = 0,
    limit: int = PAGE_SIZE,
) -> WalletOverview:
    """The wallet in both stores, one page of each store's transactions (the MongoDB log by
    page number, TigerBeetle's transfers by timestamp cursor), and what a difference means."""
    overview = WalletOverview(
        key=key,
        mongo=_read(mongo.name, lambda: mongo.get_balance(key)),
        tigerbeetle=_read(tigerbeetle.name, lambda: tigerbeetle.get_balance(key)),
        roles=store_roles(state, key.client_id),
        log_page=max(1, log_page),
        tb_before=tb_before,
    )
    _read_log(overview, mongo, limit)
    registered = account_registry.find_account(key)
    if registered is None:
        overview.notes.append("Not in TigerBeetle yet (no registry row).")
    else:
        _read_transfers(overview, tigerbeetle, tb_account_id=registered.tb_account_id, limit=limit)
    overview.has_voids = any(line.state == "voided" for line in overview.log_lines) or (
        WalletTransfer.objects.filter(
            **key.as_columns("wallet__"),
            state=WalletTransfer.State.VOIDED,
        ).exists()
    )
    outbox = MirrorOutbox(mongo.database)
    try:
        overview.waiting = outbox.waiting_of(key)
        parked = outbox.parked(limit=10, keys=[key]) if overview.waiting.parked else []
    except errors.StoreUnavailable:
        parked = []
    overview.mirror = wallet_notice(overview.waiting, parked=parked)
    overview.difference = assess_difference(overview, state)
    return overview


def _read_log(overview: WalletOverview, mongo: MongoWalletStore, limit: int) -> None:
    try:
        entries = mongo.recent_log(
            overview.key, limit=limit + 1, skip=(overview.log_page - 1) * limit
        )
    except errors.StoreUnavailable as exc:
        overview.notes.append(f"MongoDB transaction log unavailable: {exc.message}")
        return
    overview.log_has_more = len(entries) > limit
    overview.log_lines = [_log_line(entry) for entry in entries[:limit]]


def _read_transfers(
    overview: WalletOverview,
    tigerbeetle: TigerBeetleWalletStore,
    *,
    tb_account_id: int,
    limit: int,
) -> None:
    key = overview.key
    try:
        transfers = history.recent_transfers(
            tigerbeetle.backend, key, limit=limit + 1, before_timestamp=overview.tb_before
        )
        overview.history = history.balance_history(
            tigerbeetle.backend, key, limit=limit, before_timestamp=overview.tb_before
        )
    except errors.StoreUnavailable as exc:
        overview.notes.append(f"TigerBeetle history unavailable: {exc.message}")
        return
    if len(transfers) > limit:
        transfers = transfers[:limit]
        overview.tb_next_before = transfers[-1].timestamp
    ids = [u128_to_hex(transfer.id) for transfer in transfers]
    rows = {
        row.tb_transfer_id_hex: row
        for row in WalletTransfer.objects.filter(tb_transfer_id_hex__in=ids)
    }
    voided = dict(
        WalletTransfer.objects.filter(void_tb_transfer_id_hex__in=ids).values_list(
            "void_tb_transfer_id_hex", "transaction_id"
        )
    )
    lines = []
    for transfer in transfers:
        hex_id = u128_to_hex(transfer.id)
        row = rows.get(hex_id)
        name = row.transaction_id if row else ""
        if not name and hex_id in voided:
            name = f"void of {voided[hex_id]}"
        lines.append(
            LedgerLine(
                at=_at(transfer.timestamp),
                tb_timestamp=transfer.timestamp,
                tb_transfer_id_hex=hex_id,
                kind=CODE_NAMES.get(transfer.code, f"code {transfer.code}"),
                amount_minor=int(transfer.amount),
                into_wallet=transfer.credit_account_id == tb_account_id,
                transaction_id=name,
                voidable=row is not None and row.state == WalletTransfer.State.POSTED,
                registry_pk=row.pk if row else None,
                state=row.state if row else ("void" if name else ""),
            )
        )
    overview.ledger_lines = lines


def assess_difference(overview: WalletOverview, state: MigrationState) -> Difference:
    """Whether the stores differ in a way that matters in this phase: as strongly as the
    outbox explains it (a parked write is an error, an old pending one a warning)."""
    mongo, tb = overview.mongo.balance, overview.tigerbeetle.balance
    if mongo is None and tb is None:
        return Difference("none", "")
    differing = overview.differing_fields
    if mongo is not None and tb is not None and not differing:
        return Difference("none", "")
    words = ", ".join(BALANCE_WORDS[name][0] for name in differing)
    what = f"The stores differ in {words}" if differing else _missing(overview)
    phase = state.phase
    if phase == Phase.LEGACY:
        return Difference(
            "info", f"{what}: expected, TigerBeetle is not kept current before dual write."
        )
    if phase == Phase.TIGERBEETLE_ONLY:
        waiting = copy_back_waiting(overview.key)
        if waiting or mongo is None:
            return Difference(
                "info",
                f"{what}: expected in phase 4, MongoDB is not written. {waiting} TigerBeetle-only "
                "writes of this wallet are waiting to be copied back if the migration steps back.",
            )
        return Difference(
            "warning",
            f"{what}, and no TigerBeetle-only write of this wallet explains it: re-check the "
            "wallet and see its reconciliation mismatches.",
        )
    if not state.in_dual_write_share(overview.key.client_id):
        return Difference(
            "info",
            f"{what}: expected, this client is outside the dual-write share "
            f"({state.dual_write_percent}% of clients), so TigerBeetle is not kept current "
            "for it; its writes wait in the outbox until a raise of the share takes it in.",
        )
    if overview.waiting is not None and overview.waiting.any:
        if overview.mirror.level == "error":
            return Difference("error", f"{what}: TigerBeetle lacks writes of this wallet.")
        return Difference(
            "warning" if overview.mirror.level == "warning" else "info",
            f"{what}: TigerBeetle is behind, MongoDB writes of this wallet are still waiting "
            "for the mirror (or, for a legacy wallet, for the backfill).",
        )
    if tb is None and account_registry.find_account(overview.key) is None:
        if not Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists():
            return Difference(
                "info",
                f"{what}: expected, a legacy wallet the backfill has not imported into "
                "TigerBeetle yet (its later writes wait in the outbox for it).",
            )
        return Difference(
            "warning",
            f"{what}, although the backfill has completed: see the wallet's reconciliation "
            "mismatches.",
        )
    return Difference(
        "warning",
        f"{what}: TigerBeetle should hold every MongoDB write in this phase. Re-check the "
        "wallet; if it still differs, see its reconciliation mismatches.",
    )


def _missing(overview: WalletOverview) -> str:
    absent = overview.mongo if overview.mongo.balance is None else overview.tigerbeetle
    return f"{absent.label} has no balance for this wallet ({absent.error})"


def copy_back_waiting(key: WalletKey) -> int:
    """The wallet's TigerBeetle-only writes and voids not yet copied back into MongoDB."""
    rows = WalletTransfer.objects.filter(**key.as_columns("wallet__"))
    return (
        rows.filter(needs_copy_back=True).count() + rows.filter(void_needs_copy_back=True).count()
    )


def _read(store: str, read: Any) -> StoreBalance:
    try:
        return StoreBalance(store, read())
    except errors.WalletNotFound:
        return StoreBalance(store, None, "no such wallet in this store")
    except errors.StoreUnavailable as exc:
        return StoreBalance(store, None, f"unavailable: {exc.message}")


def _log_line(entry: LogEntry) -> LogLine:
    return LogLine(
        transaction_id=entry.transaction_id,
        kind=entry.kind,
        amount_minor=entry.amount_minor,
        state=entry.state,
        mirror_state=entry.mirror_state,
        created_at=entry.created_at,
        made_by=entry.made_by,
        voided_by=entry.voided_by,
        void_reason=entry.void_reason,
        mirror_error=entry.mirror_error,
        voidable=entry.kind in ("credit", "debit") and entry.state == "posted",
        entry_id=entry.entry_id,
    )


# --- finding a wallet or a transaction -------------------------------------------------------

_HEX_ID = re.compile(r"^(0x)?[0-9a-fA-F]{1,32}$")


@dataclass
class WalletHit:
    key: WalletKey
    registry_pk: int | None = None
    in_mongo: bool = False
    mongo_balance: WalletBalance | None = None


@dataclass
class TransactionHit:
    transaction_id: str
    key: WalletKey
    kind: str
    amount_minor: int
    state: str
    registry_pk: int | None = None
    in_mongo: bool = False


@dataclass
class Found:
    query: str
    wallets: list[WalletHit] = field(default_factory=list)
    transactions: list[TransactionHit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def tigerbeetle_id_hex(text: str) -> str | None:
    """A TigerBeetle id as the registry stores it (32 hex digits), from hex or decimal."""
    text = text.strip()
    if text.isdigit() and len(text) <= 39:
        value = int(text)
        return u128_to_hex(value) if 0 < value < 2**128 else None
    if _HEX_ID.match(text):
        return text.lower().removeprefix("0x").rjust(32, "0")
    return None


def find(query: str, mongo: MongoWalletStore, *, limit: int = 50) -> Found:
    """Wallets by client id or TigerBeetle account id, transactions by transaction id or
    TigerBeetle transfer id: in the registry (TigerBeetle's side) and in MongoDB, so a
    wallet or a refused debit that only MongoDB holds is found too. Ids are case-sensitive."""
    query = query.strip()
    found = Found(query)
    if not query:
        return found
    wallets: dict[WalletKey, WalletHit] = {}
    hex_id = tigerbeetle_id_hex(query)
    accounts = list(WalletAccount.objects.filter(client_id=query)[:limit])
    if hex_id:
        accounts += list(WalletAccount.objects.filter(tb_account_id_hex=hex_id))
    for row in accounts:
        wallets.setdefault(row.key, WalletHit(row.key)).registry_pk = row.pk
    answering: MongoWalletStore | None = mongo
    try:
        for balance in mongo.get_balances(query)[:limit]:
            hit = wallets.setdefault(balance.key, WalletHit(balance.key))
            hit.in_mongo, hit.mongo_balance = True, balance
    except errors.StoreUnavailable as exc:
        found.notes.append(f"MongoDB was not searched: {exc.message}")
        answering = None  # not asked again: each ask waits out MongoDB's timeout (5 s)
    found.wallets = sorted(wallets.values(), key=lambda hit: hit.key.sort_key())
    found.transactions = _find_transactions(query, hex_id, answering)
    return found


def _find_transactions(
    query: str, hex_id: str | None, mongo: MongoWalletStore | None
) -> list[TransactionHit]:
    rows = list(WalletTransfer.objects.select_related("wallet").filter(transaction_id=query))
    if hex_id:
        rows += list(
            WalletTransfer.objects.select_related("wallet").filter(tb_transfer_id_hex=hex_id)
        )
        rows += list(
            WalletTransfer.objects.select_related("wallet").filter(void_tb_transfer_id_hex=hex_id)
        )
    hits = {
        row.transaction_id: TransactionHit(
            row.transaction_id, row.wallet.key, row.kind, row.amount_minor, row.state, row.pk
        )
        for row in rows
    }
    if mongo is None:
        return list(hits.values())
    try:
        record: TransactionRecord = mongo.get_transaction(query)
    except errors.TransactionNotFound:
        pass
    except errors.StoreUnavailable:
        pass  # said with the wallets' search, which MongoDB answered just before
    else:
        hit = hits.setdefault(
            record.transaction_id,
            TransactionHit(
                record.transaction_id,
                record.key,
                str(record.kind),
                record.amount_minor,
                str(record.state),
            ),
        )
        hit.in_mongo = True
    return list(hits.values())
