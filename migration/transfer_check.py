"""Reconciliation's transfer pass: the transfer registry against TigerBeetle, both ways.

1. registry -> TigerBeetle: every registered transfer that is posted or voided is looked up
   (lookup_transfers, up to BATCH_EVENTS_MAX ids a request) and must be there on its wallet's
   account, as its kind, with its amount; a voided one's void too, pointing at it, with the
   same amount. A transaction the backfill registered from MongoDB's log (no transfer of its
   own: `tb_timestamp` empty, on an imported wallet) is in its wallet's opening balance and is
   not looked for.
2. TigerBeetle -> registry: every credit, debit and void TigerBeetle holds on this deployment's
   wallet accounts must be registered. Reading each account's transfers would cost one request
   per wallet, so the pass first adds up, per wallet account, what the registry explains: the
   transfers found in step 1 and, for an imported wallet, its opening pair (the amounts the
   backfill kept in the registry; for a wallet imported before it kept them, looked up by
   their derived ids). Every wallet transaction moves a positive amount and the limit's bookkeeping
   moves none, so an account whose posted credits and debits equal what is explained holds no
   unregistered transaction. An account written to while the run read the registry gets a
   second look (its rows, then the account, read again moments apart). Only the others are
   read (get_account_transfers, paged, at most TRANSFER_WALK_ACCOUNTS_MAX accounts a run),
   and a transfer the registry does not name is looked for once more IN_FLIGHT_S after the
   read (a write registers its row just after TigerBeetle posts it), so one in flight is not
   reported.

Each difference is a ReconciliationMismatch of its own kind (`TRANSFER_KINDS`): a registered
transfer TigerBeetle lacks (an error: nothing to repair in the registry without inventing
money), one TigerBeetle holds otherwise, a transfer no row names, a void of a transfer the
registry still has as posted. The repairs are `migration.registry_repair`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

from tigerbeetle import Transfer, TransferFlags

from domain.ids import WalletKey, hex_to_u128, u128_to_hex
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.batches import LedgerBatches
from ledger.tb_model import (
    TRANSFER_CODE_CREDIT,
    TRANSFER_CODE_DEBIT,
    TRANSFER_CODE_VOID,
    history_filter,
)
from migration.models import ReconciliationMismatch, ReconciliationRun
from registry.models import WalletTransfer

# Wallet accounts whose transfers one run reads one by one (those the registry does not
# explain); the rest wait for the next run, and the run's note says so.
TRANSFER_WALK_ACCOUNTS_MAX = 1000
# Pages of one account's transfers a run reads (BATCH_EVENTS_MAX each).
TRANSFER_WALK_PAGES_MAX = 100
# Unexplained accounts given a second look (their registry rows and accounts read again).
SECOND_LOOK_ACCOUNTS_MAX = 10 * TRANSFER_WALK_ACCOUNTS_MAX
WALLET_CODES = (TRANSFER_CODE_CREDIT, TRANSFER_CODE_DEBIT, TRANSFER_CODE_VOID)
CODE_NAMES = {
    TRANSFER_CODE_CREDIT: "credit",
    TRANSFER_CODE_DEBIT: "debit",
    TRANSFER_CODE_VOID: "void",
}
# How long after reading an account's transfers one no registry row names is looked for
# again before it is reported: the gap between a write's post and its row's commit.
IN_FLIGHT_S = 2.0
AMOUNT_KEPT_MAX = 2**63 - 1  # a BigIntegerField's range
QUERY_IDS_MAX = 900  # ids in one registry query (SQLite's bound parameters)
_REFUSED = WalletTransfer.State.FAILED.value
_VOID = "void"

Kind = ReconciliationMismatch.Kind


@dataclass(frozen=True)
class WalletLedger:
    """A registered wallet as reconciliation's first pass saw its TigerBeetle account."""

    registry_pk: int
    key: WalletKey
    tb_account_id: int
    imported: bool
    credits_posted: int
    debits_posted: int
    # What its opening pair posted, as the registry keeps it (None: to be looked up).
    opening: tuple[int, int] | None = None

    @property
    def opening_unknown(self) -> bool:
        return self.imported and self.opening is None


@dataclass(frozen=True)
class _Row:
    """The registry's columns of one registered transfer this pass reads."""

    pk: int
    wallet_pk: int
    transaction_id: str
    kind: str
    amount_minor: int
    state: str
    tb_transfer_id_hex: str
    void_tb_transfer_id_hex: str
    tb_timestamp: int | None

    @property
    def is_credit(self) -> bool:
        return self.kind == WalletTransfer.Kind.CREDIT


_ROW_COLUMNS = (
    "pk",
    "wallet_id",
    "transaction_id",
    "kind",
    "amount_minor",
    "state",
    "tb_transfer_id_hex",
    "void_tb_transfer_id_hex",
    "tb_timestamp",
)


@dataclass
class _Explained:
    """Per wallet account: the posted credits and debits the registry explains."""

    credits: dict[int, int] = field(default_factory=dict)
    debits: dict[int, int] = field(default_factory=dict)

    def add(self, transfer: Transfer, *, tb_account_id: int) -> None:
        if transfer.flags & TransferFlags.PENDING:
            return  # posts nothing
        if transfer.credit_account_id == tb_account_id:
            self.credits[tb_account_id] = self.credits.get(tb_account_id, 0) + transfer.amount
        if transfer.debit_account_id == tb_account_id:
            self.debits[tb_account_id] = self.debits.get(tb_account_id, 0) + transfer.amount

    def add_opening(self, wallet: WalletLedger) -> None:
        """An imported wallet's opening pair, as the registry keeps its amounts."""
        if wallet.opening is None:
            return
        account = wallet.tb_account_id
        credits, debits = wallet.opening
        self.credits[account] = self.credits.get(account, 0) + credits
        self.debits[account] = self.debits.get(account, 0) + debits

    def explains(self, wallet: WalletLedger) -> bool:
        account = wallet.tb_account_id
        return (self.credits.get(account, 0), self.debits.get(account, 0)) == (
            wallet.credits_posted,
            wallet.debits_posted,
        )


class TransferCheck:
    """One run's transfer pass over the wallets the first pass found in TigerBeetle."""

    def __init__(
        self,
        tigerbeetle: LedgerBatches,
        *,
        run: ReconciliationRun,
        mismatches: list[ReconciliationMismatch],
        page_size: int = BATCH_EVENTS_MAX,
    ) -> None:
        assert 0 < page_size <= BATCH_EVENTS_MAX
        self.tigerbeetle = tigerbeetle
        self.run = run
        self.mismatches = mismatches
        self.page_size = page_size
        self.explained = _Explained()
        self.wallets: dict[int, WalletLedger] = {}
        self._openings: list[tuple[Transfer, int]] = []
        self._openings_future: Future[list[tuple[Transfer, int]]] | None = None

    def start(self, wallets: dict[int, WalletLedger], *, background: Executor | None) -> None:
        """Begin with what needs no registry: the imported wallets' opening pairs, as the
        registry keeps their amounts, or, for wallets imported before it kept them, looked
        up on `background` when given (the real client takes calls from any thread), so the
        lookups overlap the run's comparison of MongoDB; `finish` does the rest."""
        self.wallets = wallets
        for wallet in wallets.values():
            self.explained.add_opening(wallet)
        imported = [wallet for wallet in wallets.values() if wallet.opening_unknown]
        if background is None:
            self._openings = self._opening_pairs(imported)
        else:
            self._openings_future = background.submit(self._opening_pairs, imported)

    def finish(self) -> None:
        """Both directions over the wallets given to `start` (by registry pk): differences
        are appended to the run's mismatches and counted on the run."""
        for rows in self._registered_pages():
            self._check_registered(rows, self.wallets)
        if self._openings_future is not None:
            self._openings = self._openings_future.result()
        for transfer, tb_account_id in self._openings:
            self.explained.add(transfer, tb_account_id=tb_account_id)
        unexplained = [w for w in self.wallets.values() if not self.explained.explains(w)]
        unexplained = (
            self._second_look(unexplained[:SECOND_LOOK_ACCOUNTS_MAX])
            + unexplained[SECOND_LOOK_ACCOUNTS_MAX:]
        )
        if len(unexplained) > TRANSFER_WALK_ACCOUNTS_MAX:
            self.run.note = (
                f"{self.run.note} Transfers of {len(unexplained) - TRANSFER_WALK_ACCOUNTS_MAX} "
                "wallets the registry does not explain wait for the next run."
            ).strip()[:200]
        unnamed = [
            pair
            for wallet in unexplained[:TRANSFER_WALK_ACCOUNTS_MAX]
            for pair in self._unnamed(wallet)
        ]
        self._report_unnamed(unnamed, walked_at=time.monotonic())

    # --- registry -> TigerBeetle --------------------------------------------------------------

    def _registered_pages(self) -> Iterator[list[_Row]]:
        """Posted and voided registered transfers, a page at a time by primary key."""
        states = [WalletTransfer.State.POSTED, WalletTransfer.State.VOIDED]
        last_pk = 0
        while True:
            page = list(
                WalletTransfer.objects.filter(state__in=states, pk__gt=last_pk)
                .order_by("pk")
                .values_list(*_ROW_COLUMNS)[: self.page_size // 2]
            )
            if not page:
                return
            last_pk = page[-1][0]
            yield [_Row(*values) for values in page]

    def _check_registered(self, rows: list[_Row], wallets: dict[int, WalletLedger]) -> None:
        ids = [hex_to_u128(row.tb_transfer_id_hex) for row in rows]
        ids += [
            hex_to_u128(row.void_tb_transfer_id_hex) for row in rows if row.void_tb_transfer_id_hex
        ]
        found = {transfer.id: transfer for transfer in self.tigerbeetle.lookup_transfers(ids)}
        for row in rows:
            wallet = wallets.get(row.wallet_pk)
            if wallet is None:
                continue  # no account in TigerBeetle: reported by the first pass
            original = found.get(hex_to_u128(row.tb_transfer_id_hex))
            covered = original is None and row.tb_timestamp is None and wallet.imported
            if not covered:
                self._check_original(row, wallet, original)
            if row.state == WalletTransfer.State.VOIDED:
                self._check_void(row, wallet, covered=covered, found=found)

    def _check_original(self, row: _Row, wallet: WalletLedger, transfer: Transfer | None) -> None:
        if transfer is None:
            self._record(
                Kind.TRANSFER_MISSING,
                wallet,
                row=row,
                detail=f"TigerBeetle does not hold this registered {row.kind}.",
            )
            return
        self.run.transfers_checked += 1
        code = TRANSFER_CODE_CREDIT if row.is_credit else TRANSFER_CODE_DEBIT
        on_wallet = (
            transfer.credit_account_id if row.is_credit else transfer.debit_account_id
        ) == wallet.tb_account_id
        if transfer.code != code or not on_wallet:
            self._record(
                Kind.TRANSFER_DIFFERS,
                wallet,
                row=row,
                transfer=transfer,
                detail=f"TigerBeetle holds this id as a {_described(transfer)}, not as this "
                f"wallet's {row.kind}.",
            )
            return
        self.explained.add(transfer, tb_account_id=wallet.tb_account_id)
        if transfer.amount != row.amount_minor:
            self._record(
                Kind.TRANSFER_DIFFERS,
                wallet,
                row=row,
                transfer=transfer,
                detail=f"The registry says {row.amount_minor}, TigerBeetle holds "
                f"{transfer.amount} (minor units).",
            )

    def _check_void(
        self, row: _Row, wallet: WalletLedger, *, covered: bool, found: dict[int, Transfer]
    ) -> None:
        if not row.void_tb_transfer_id_hex:
            if not covered:  # voided in MongoDB before the backfill: in the opening balance
                self._record(
                    Kind.TRANSFER_MISSING,
                    wallet,
                    row=row,
                    detail="Registered as voided, with no void in TigerBeetle.",
                )
            return
        void = found.get(hex_to_u128(row.void_tb_transfer_id_hex))
        if void is None:
            self._record(
                Kind.TRANSFER_MISSING,
                wallet,
                row=row,
                tb_transfer_id_hex=row.void_tb_transfer_id_hex,
                detail="TigerBeetle does not hold this transaction's registered void.",
            )
            return
        self.run.transfers_checked += 1
        takes_back = void.debit_account_id if row.is_credit else void.credit_account_id
        points_at = u128_to_hex(void.user_data_128) == row.tb_transfer_id_hex
        if void.code != TRANSFER_CODE_VOID or takes_back != wallet.tb_account_id or not points_at:
            self._record(
                Kind.TRANSFER_DIFFERS,
                wallet,
                row=row,
                transfer=void,
                detail=f"TigerBeetle holds the void's id as a {_described(void)}, not as the "
                "void of this transaction on this wallet.",
            )
            return
        self.explained.add(void, tb_account_id=wallet.tb_account_id)
        if void.amount != row.amount_minor:
            self._record(
                Kind.TRANSFER_DIFFERS,
                wallet,
                row=row,
                transfer=void,
                detail=f"The void takes back {void.amount}, the transaction is "
                f"{row.amount_minor} (minor units).",
            )

    def _opening_pairs(self, imported: list[WalletLedger]) -> list[tuple[Transfer, int]]:
        """The imported wallets' opening pairs (ids derived from their accounts), each with
        its wallet's account. Touches nothing of the check's: it may run on another thread."""
        ids = self.tigerbeetle.scope.ids
        accounts: dict[int, int] = {}
        for wallet in imported:
            credit_id = ids.opening_balance_transfer_id(wallet.tb_account_id)
            accounts[credit_id] = wallet.tb_account_id
            accounts[credit_id ^ 1] = wallet.tb_account_id  # opening_debit_transfer_id
        return [(t, accounts[t.id]) for t in self._lookup_transfers(list(accounts))]

    # --- TigerBeetle -> registry --------------------------------------------------------------

    def _second_look(self, unexplained: list[WalletLedger]) -> list[WalletLedger]:
        """Of the accounts the registry did not explain, those it still does not explain
        when their registered transfers and then the accounts are read again, moments apart:
        a wallet written to while the run read the registry (its account read long before)
        is explained now, and is not read transfer by transfer."""
        if not unexplained:
            return []
        states = [WalletTransfer.State.POSTED, WalletTransfer.State.VOIDED]
        ids: list[int] = []
        pks = [wallet.registry_pk for wallet in unexplained]
        for start in range(0, len(pks), QUERY_IDS_MAX):
            pairs = WalletTransfer.objects.filter(
                wallet_id__in=pks[start : start + QUERY_IDS_MAX], state__in=states
            ).values_list("tb_transfer_id_hex", "void_tb_transfer_id_hex")
            ids += [hex_to_u128(hex_id) for pair in pairs for hex_id in pair if hex_id]
        again = _Explained()
        for wallet in unexplained:
            again.add_opening(wallet)
            if wallet.opening_unknown:
                credit_id = self.tigerbeetle.scope.ids.opening_balance_transfer_id(
                    wallet.tb_account_id
                )
                ids += [credit_id, credit_id ^ 1]
        wanted = {wallet.tb_account_id for wallet in unexplained}
        for transfer in self._lookup_transfers(ids):
            for side in {transfer.debit_account_id, transfer.credit_account_id} & wanted:
                again.add(transfer, tb_account_id=side)
        fresh = {
            found.id: found
            for start in range(0, len(unexplained), BATCH_EVENTS_MAX)
            for found in self.tigerbeetle.lookup_accounts(
                [wallet.tb_account_id for wallet in unexplained[start : start + BATCH_EVENTS_MAX]]
            )
        }
        still = []
        for wallet in unexplained:
            account = fresh.get(wallet.tb_account_id)
            if account is not None:
                wallet = replace(
                    wallet,
                    credits_posted=account.credits_posted,
                    debits_posted=account.debits_posted,
                )
            if not again.explains(wallet):
                still.append(wallet)
        return still

    def _lookup_transfers(self, ids: list[int]) -> list[Transfer]:
        found: list[Transfer] = []
        for start in range(0, len(ids), BATCH_EVENTS_MAX):
            found += self.tigerbeetle.lookup_transfers(ids[start : start + BATCH_EVENTS_MAX])
        return found

    def _unnamed(self, wallet: WalletLedger) -> list[tuple[WalletLedger, Transfer]]:
        """An unexplained account's wallet transfers that no registry row names yet."""
        candidates = [
            transfer
            for transfer in _account_transfers(self.tigerbeetle, wallet.tb_account_id)
            if transfer.code in WALLET_CODES
        ]
        names = _registry_names([u128_to_hex(transfer.id) for transfer in candidates])
        return [
            (wallet, t) for t in candidates if names.get(u128_to_hex(t.id), _REFUSED) == _REFUSED
        ]

    def _report_unnamed(
        self, unnamed: list[tuple[WalletLedger, Transfer]], *, walked_at: float
    ) -> None:
        """Report the transfers still unnamed once IN_FLIGHT_S has passed since they were
        read: a write registers its row just after TigerBeetle posts it, so a transfer read
        in between is named by then."""
        if not unnamed:
            return
        time.sleep(max(0.0, walked_at + IN_FLIGHT_S - time.monotonic()))
        names = _registry_names([u128_to_hex(transfer.id) for _, transfer in unnamed])
        still = [
            (wallet, transfer)
            for wallet, transfer in unnamed
            if names.get(u128_to_hex(transfer.id), _REFUSED) == _REFUSED
        ]
        voided = _registered_by_transfer_id(
            [u128_to_hex(t.user_data_128) for _, t in still if t.code == TRANSFER_CODE_VOID]
        )
        for wallet, transfer in still:
            refused = u128_to_hex(transfer.id) in names
            self._record_unregistered(wallet, transfer, voided=voided, refused=refused)

    def _record_unregistered(
        self,
        wallet: WalletLedger,
        transfer: Transfer,
        *,
        voided: dict[str, WalletTransfer],
        refused: bool,
    ) -> None:
        if transfer.code != TRANSFER_CODE_VOID:
            named = "the registry has as refused" if refused else "no registered transaction names"
            self._record(
                Kind.NOT_REGISTERED,
                wallet,
                transfer=transfer,
                detail=f"TigerBeetle holds a {CODE_NAMES[transfer.code]} on this wallet that "
                f"{named}.",
            )
            return
        original = voided.get(u128_to_hex(transfer.user_data_128))
        if original is not None and original.state == WalletTransfer.State.POSTED:
            self._record(
                Kind.VOID_NOT_MARKED,
                wallet,
                transfer=transfer,
                transaction_id=original.transaction_id,
                registered_amount_minor=original.amount_minor,
                detail=f"TigerBeetle holds a void of {original.transaction_id}, which the "
                "registry still has as posted.",
            )
            return
        detail = (
            f"TigerBeetle holds a second void of {original.transaction_id}."
            if original is not None
            else "TigerBeetle holds a void of a transaction the registry does not hold."
        )
        self._record(Kind.NOT_REGISTERED, wallet, transfer=transfer, detail=detail)

    # --- recording ----------------------------------------------------------------------------

    def _record(
        self,
        kind: str,
        wallet: WalletLedger,
        *,
        detail: str,
        row: _Row | None = None,
        transfer: Transfer | None = None,
        tb_transfer_id_hex: str = "",
        transaction_id: str = "",
        registered_amount_minor: int | None = None,
    ) -> None:
        if transfer is not None and not tb_transfer_id_hex:
            tb_transfer_id_hex = u128_to_hex(transfer.id)
        if row is not None and not tb_transfer_id_hex:
            tb_transfer_id_hex = row.tb_transfer_id_hex
        self.run.transfer_differences += 1
        self.mismatches.append(
            ReconciliationMismatch(
                run=self.run,
                kind=kind,
                **wallet.key.as_columns(),
                tb_account_id_hex=u128_to_hex(wallet.tb_account_id),
                transaction_id=row.transaction_id if row else transaction_id,
                tb_transfer_id_hex=tb_transfer_id_hex,
                registered_amount_minor=row.amount_minor if row else registered_amount_minor,
                tb_amount_minor=_kept(transfer.amount) if transfer else None,
                detail=detail[:300],
            )
        )


def _account_transfers(tigerbeetle: LedgerBatches, tb_account_id: int) -> Iterator[Transfer]:
    """One account's transfers, a page at a time, oldest first (at most TRANSFER_WALK_PAGES_MAX)."""
    timestamp_min = 0
    for _ in range(TRANSFER_WALK_PAGES_MAX):
        page = tigerbeetle.get_account_transfers(
            history_filter(
                tb_account_id,
                limit=BATCH_EVENTS_MAX,
                timestamp_min=timestamp_min,
                newest_first=False,
            )
        )
        yield from page
        if len(page) < BATCH_EVENTS_MAX:
            return
        timestamp_min = page[-1].timestamp + 1


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), QUERY_IDS_MAX):
        yield values[start : start + QUERY_IDS_MAX]


def _registry_names(hexes: list[str]) -> dict[str, str]:
    """Of these TigerBeetle transfer ids, those a registry row names: as its transfer (the
    row's state) or as its void (`_VOID`). Read after the account's transfers, so a write
    that registered its row meanwhile is named."""
    names: dict[str, str] = {}
    for chunk in _chunks(hexes):
        names.update(
            WalletTransfer.objects.filter(tb_transfer_id_hex__in=chunk).values_list(
                "tb_transfer_id_hex", "state"
            )
        )
        names.update(
            (void_hex, _VOID)
            for void_hex in WalletTransfer.objects.filter(
                void_tb_transfer_id_hex__in=chunk
            ).values_list("void_tb_transfer_id_hex", flat=True)
        )
    return names


def _registered_by_transfer_id(hexes: list[str]) -> dict[str, WalletTransfer]:
    found: dict[str, WalletTransfer] = {}
    for chunk in _chunks(hexes):
        found.update(
            (row.tb_transfer_id_hex, row)
            for row in WalletTransfer.objects.filter(tb_transfer_id_hex__in=chunk)
        )
    return found


def _described(transfer: Transfer) -> str:
    return f"{CODE_NAMES.get(transfer.code, f'code {transfer.code}')} of {transfer.amount}"


def _kept(amount: int) -> int | None:
    return amount if amount <= AMOUNT_KEPT_MAX else None
