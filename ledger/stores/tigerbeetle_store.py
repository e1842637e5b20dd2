"""The TigerBeetle wallet store: the wallet operations over a ledger backend and the registries.

It only stores: credit, debit, void, balance, balances and transaction, and what they need.
A wallet's accounts are set up by `ledger.wallet_accounts`, its history is read by the
selectors of `ledger.history`, and the migration's jobs reach the ledger through their own
batch port, `ledger.batches`. Every operation speaks the wallet stores' error contract
(`domain.errors`): a ledger that does not answer is StoreUnavailable.

Data model (design.md; its accounts, transfers and balance formula are `ledger.tb_model`): one
ledger per currency, one wallet account per wallet key (the application's wallet code), one
system account per ledger (its system code) on the other side of every credit and debit,
transfer ids derived from the client's ids so that a retry answers `exists` and posts nothing
twice, voids as compensating transfers.

Writes go to TigerBeetle first and to the registry after; a crash in between is repaired by
the retry, which gets `exists` from TigerBeetle and then writes the missing registry row.

The balance limit is TigerBeetle's own: each wallet holds a limit reservation
(`ledger.tb_model.limit_reservation`), so a credit past the limit is refused atomically, also
when two race, in the one round trip that posts it. A wallet created before reservations gets
its reservation before its next credit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from django.db import connection, transaction
from tigerbeetle import (
    AccountBalance,
    CreateTransferResult,
    CreateTransferStatus,
    Transfer,
)

from domain import errors
from domain.batches import BatchItem, BatchOutcome
from domain.history import HistoryPage, HistoryQuery
from domain.ids import WalletKey
from domain.wallets import (
    TransactionKind,
    TransactionRecord,
    WalletBalance,
    WalletResult,
    time_of_tb_timestamp,
)
from ledger.backends import LedgerBackend, get_ledger_backend
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.balance_history import wallet_history
from ledger.history import (
    balance_at,
    registered_wallet,
    store_call,
)
from ledger.stores.tigerbeetle_answers import answer_not_created
from ledger.stores.tigerbeetle_answers import posted_timestamp as _posted_timestamp
from ledger.stores.tigerbeetle_answers import registered_transfer as _registered_transfer
from ledger.stores.tigerbeetle_answers import remember_transfer as _remember_transfer
from ledger.stores.tigerbeetle_answers import replay_if_known as _replay_if_known
from ledger.stores.tigerbeetle_batch import TigerBeetleBatch
from ledger.stores.tigerbeetle_holds import TigerBeetleHoldOperations
from ledger.tb_model import (
    LedgerScope,
    accounts_filter,
    balance_from_account,
    balance_from_snapshot,
    credit_transfer,
    debit_transfer,
    history_filter,
    void_transfer,
)
from ledger.wallet_accounts import (
    LIMIT_OVERFLOWS,
    WalletAccounts,
    limit_exceeded,
    unexpected_refusal,
)
from registry import accounts as account_registry
from registry import transfers as transfer_registry
from registry.accounts import RegisteredAccount
from registry.models import WalletTransfer
from registry.movement_fence import MovementFence
from registry.transfers import transaction_record

# Balances read behind a write: its own snapshot, plus room for writes of other requests to
# the wallet landing in between.
_RECENT_BALANCES = 16
# Void attempts one request tries past ids burnt by refusals whose answers were lost: each
# takes an outage that rolled the request's count back, so a handful is already rare.
_VOID_ATTEMPTS_PER_REQUEST_MAX = 16


def _registered_id(transaction_id: str) -> bool:
    """Whether the registry holds the id: the write path's pre-check (a replay answers from
    the registry, also for ids whose transaction has no transfer of its own, such as those a
    backfilled opening balance covers). Plain SQL: building the ORM query cost more than
    the database round trip."""
    with connection.cursor() as cursor:
        cursor.execute(_REGISTERED_ID_SQL, [transaction_id])
        return cursor.fetchone() is not None


_REGISTERED_ID_SQL = (
    f"SELECT 1 FROM {WalletTransfer._meta.db_table} WHERE transaction_id = %s LIMIT 1"
)


class _BalancesBehind:
    """The wallet's newest balances, read right behind a write: collected once, and always
    (the client keeps a request registered until its answer is collected), also when the
    write fails on the way; `discard()` in a `finally` sees to that."""

    def __init__(self, answer: Callable[[], list[AccountBalance]]) -> None:
        self._answer: Callable[[], list[AccountBalance]] | None = answer
        self._found: list[AccountBalance] = []

    def collect(self) -> list[AccountBalance]:
        if self._answer is not None:
            answer, self._answer = self._answer, None
            self._found = answer()
        return self._found

    def discard(self) -> None:
        with contextlib.suppress(errors.StoreUnavailable):
            self.collect()


class TigerBeetleWalletStore(TigerBeetleHoldOperations):
    """Wallet store on TigerBeetle (the real cluster or the embedded engine)."""

    name = "tigerbeetle"

    def __init__(
        self,
        backend: LedgerBackend | None = None,
        *,
        scope: LedgerScope,
    ) -> None:
        """`backend`: the ledger backend (by default the process's, `get_ledger_backend`);
        `scope`: the deployment's id namespace and account codes."""
        self._backend = backend
        self.scope = scope

    @property
    def backend(self) -> LedgerBackend:
        if self._backend is None:
            self._backend = get_ledger_backend()
        return self._backend

    def _accounts(self) -> WalletAccounts:
        """Account set-up on this store's backend (a wrapper of no state, made per use)."""
        return WalletAccounts(self.backend, scope=self.scope)

    # --- writes ---------------------------------------------------------------------------

    def add_credit(
        self, key: WalletKey, amount_minor: int, transaction_id: str, *, made_by: str = ""
    ) -> WalletResult:
        assert amount_minor > 0, "the service refuses amounts that are not positive"
        if _registered_id(transaction_id):
            replay = _replay_if_known(
                self.backend, transaction_id, TransactionKind.CREDIT, key, amount_minor
            )
            if replay:
                return replay
        registered = store_call(self._accounts().registered_account, key)
        transfer = credit_transfer(
            transaction_id,
            ids=self.scope.ids,
            tb_account_id=registered.tb_account_id,
            ledger=registered.ledger,
            amount_minor=amount_minor,
        )
        return self._post(
            transfer, transaction_id, TransactionKind.CREDIT, key, registered, made_by
        )

    def subtract_credit(
        self, key: WalletKey, amount_minor: int, reference_id: str, *, made_by: str = ""
    ) -> WalletResult:
        assert amount_minor > 0, "the service refuses amounts that are not positive"
        if _registered_id(reference_id):
            replay = _replay_if_known(
                self.backend, reference_id, TransactionKind.DEBIT, key, amount_minor
            )
            if replay:
                return replay
        registered = registered_wallet(key)
        transfer = debit_transfer(
            reference_id,
            ids=self.scope.ids,
            tb_account_id=registered.tb_account_id,
            ledger=registered.ledger,
            amount_minor=amount_minor,
        )
        return self._post(transfer, reference_id, TransactionKind.DEBIT, key, registered, made_by)

    def post_batch(
        self, items: Sequence[BatchItem], *, atomic: bool, made_by: str = ""
    ) -> list[BatchOutcome]:
        """Many credits and debits in one create_transfers request
        (`ledger.stores.tigerbeetle_batch`)."""
        return TigerBeetleBatch(self.backend, scope=self.scope, balance=self.get_balance).post(
            items, atomic=atomic, made_by=made_by
        )

    def void_transaction(self, transaction_id: str, *, voided_by: str, reason: str) -> WalletResult:
        """Post the compensating transfer, at most once per transaction.

        The registry row is locked for the attempt so two voids of one transaction never
        race; a void refused for funds bumps the attempt number, because TigerBeetle never
        accepts a transfer id again once it failed (`id_already_failed`).
        """
        # The fence from the send until the void's rows committed (after the transaction).
        with MovementFence() as fence, transaction.atomic():
            row = (
                WalletTransfer.objects.select_for_update()
                .select_related("wallet")
                .filter(transaction_id=transaction_id)
                .first()
            )
            if row is None or row.state == WalletTransfer.State.FAILED:
                raise errors.TransactionNotFound(f"No posted transaction {transaction_id!r}.")
            if row.state == WalletTransfer.State.VOIDED:
                raise errors.AlreadyVoided(
                    f"Transaction {transaction_id!r} was already voided.",
                    original=transaction_record(row),
                )
            assert row.amount_minor > 0, "a registered transfer moves a positive amount"
            fence.cover([row.wallet_id])
            void, result, recent = self._send_void(row)
            try:
                outcome = self._answer_void(
                    row, void, result, recent, voided_by=voided_by, reason=reason
                )
            finally:
                recent.discard()
        if isinstance(outcome, errors.WalletError):
            raise outcome  # after the commit, so a refusal's attempt count is kept
        return outcome

    def _send_void(
        self, row: WalletTransfer
    ) -> tuple[Transfer, CreateTransferResult, _BalancesBehind]:
        """Post the void of `row` under its next unburnt attempt id. An attempt TigerBeetle
        refused while its answer was lost (the ledger went away, the request timed out and
        the transaction rolled back) left its id burnt and uncounted: `id_already_failed`
        counts it, and the void goes again under the next id."""
        for _ in range(_VOID_ATTEMPTS_PER_REQUEST_MAX):
            void = void_transfer(
                row.tb_transfer_id,
                ids=self.scope.ids,
                voided_credit=row.kind == WalletTransfer.Kind.CREDIT,
                tb_account_id=row.wallet.tb_account_id,
                ledger=row.wallet.ledger,
                amount_minor=row.amount_minor,
                attempt=row.void_attempts,
            )
            result, recent = self._send_transfer(
                void,
                row.wallet.key,
                account_registry.as_registered(row.wallet),
                credits_wallet=row.kind == WalletTransfer.Kind.DEBIT,
            )
            if result.status != CreateTransferStatus.ID_ALREADY_FAILED:
                return void, result, recent
            recent.discard()
            transfer_registry.count_refused_void(row)
        raise unexpected_refusal(result.status, void)

    def _answer_void(
        self,
        row: WalletTransfer,
        void: Transfer,
        result: CreateTransferResult,
        recent: _BalancesBehind,
        *,
        voided_by: str,
        reason: str,
    ) -> WalletResult | errors.WalletError:
        """What TigerBeetle's answer to a posted void means, inside the void's transaction:
        the result, or the refusal to raise once the transaction has committed."""
        posted_at = _posted_timestamp(self.backend, void, result)
        if posted_at:
            transfer_registry.mark_voided(
                row,
                void_tb_transfer_id=void.id,
                voided_by=voided_by,
                void_reason=reason,
                voided_at=time_of_tb_timestamp(posted_at),
                needs_copy_back=True,
                from_store=True,
            )
            return WalletResult(
                transaction=transaction_record(row),
                balance=self._balance_after(
                    row.wallet.key,
                    recent,
                    tb_account_id=row.wallet.tb_account_id,
                    tb_timestamp=posted_at,
                ),
            )
        if result.status == CreateTransferStatus.EXCEEDS_CREDITS:
            transfer_registry.count_refused_void(row)
            return errors.VoidWouldOverdraw(
                f"Voiding credit {row.transaction_id!r} would take the wallet below zero."
            )
        raise unexpected_refusal(result.status, void)

    # --- reads ------------------------------------------------------------------------------

    def get_balance(self, key: WalletKey) -> WalletBalance:
        registered = registered_wallet(key)
        accounts = store_call(self.backend.lookup_accounts, [registered.tb_account_id])
        if not accounts:
            raise errors.WalletNotFound(f"No ledger account for wallet {key.describe()}.")
        return balance_from_account(key, accounts[0])

    def get_balances(self, client_id: str) -> list[WalletBalance]:
        """One query_accounts on the client's user_data_128, names from one registry query."""
        registered = account_registry.accounts_of_client(client_id)
        if not registered:
            return []
        accounts = store_call(
            self.backend.query_accounts,
            accounts_filter(
                code=self.scope.codes.wallet,
                limit=BATCH_EVENTS_MAX,
                client_hash=self.scope.ids.client_hash_128(client_id),
            ),
        )
        balances = [
            balance_from_account(registered[account.id].key, account)
            for account in accounts
            if account.id in registered
        ]
        return sorted(balances, key=lambda balance: balance.key.sort_key())

    def get_transaction(self, transaction_id: str) -> TransactionRecord:
        row = _registered_transfer(transaction_id)
        if row is None:
            raise errors.TransactionNotFound(f"No transaction {transaction_id!r}.")
        return transaction_record(row)

    def history(self, query: HistoryQuery) -> HistoryPage:
        return wallet_history(self.backend, query, ids=self.scope.ids)  # ledger.balance_history

    # --- internals --------------------------------------------------------------------------

    def _send_transfer(
        self,
        transfer: Transfer,
        key: WalletKey,
        registered: RegisteredAccount,
        *,
        credits_wallet: bool,
    ) -> tuple[CreateTransferResult, _BalancesBehind]:
        """Post one transfer of the wallet: TigerBeetle's answer, and the wallet's balances
        read right behind it. One that credits the wallet is refused with
        BalanceLimitExceeded when it overflows the wallet's limit reservation, made first if
        the wallet has none yet."""
        if credits_wallet and not registered.limit_reserved:
            store_call(self._accounts().reserve_limit, key, registered)
        answer, recent = self._send_with_balance_read([transfer], registered.tb_account_id)
        try:
            (result,) = store_call(answer)
        except BaseException:
            recent.discard()
            raise
        if credits_wallet and result.status in LIMIT_OVERFLOWS:
            recent.collect()  # every request sent is answered
            raise limit_exceeded(key)
        return result, recent

    def _send_with_balance_read(
        self, transfers: list[Transfer], tb_account_id: int
    ) -> tuple[Callable[[], list[CreateTransferResult]], _BalancesBehind]:
        """Send the write and, right behind it, a read of the wallet's newest balances: the
        client sends the read the moment the write is answered, so the balance after the
        write costs no wait of ours between the two. The caller collects both answers."""
        answer = store_call(self.backend.begin_create_transfers, transfers)
        recent = store_call(
            self.backend.begin_get_account_balances,
            history_filter(tb_account_id, limit=_RECENT_BALANCES, newest_first=True),
        )
        return answer, _BalancesBehind(lambda: store_call(recent))

    def _balance_after(
        self,
        key: WalletKey,
        recent: _BalancesBehind,
        *,
        tb_account_id: int,
        tb_timestamp: int,
    ) -> WalletBalance:
        """The balance right after the transfer at `tb_timestamp`, found among the newest
        balances read behind it; asked exactly when more writes to the wallet landed in
        between than that read holds."""
        for snapshot in recent.collect():
            if snapshot.timestamp == tb_timestamp:
                return balance_from_snapshot(key, snapshot)
        return balance_at(self.backend, key, tb_account_id=tb_account_id, tb_timestamp=tb_timestamp)

    def _post(
        self,
        transfer: Transfer,
        transaction_id: str,
        kind: TransactionKind,
        key: WalletKey,
        registered: RegisteredAccount,
        made_by: str,
    ) -> WalletResult:
        with MovementFence() as fence:  # from the send until the registry row committed
            fence.cover([registered.registry_pk])
            result, recent = self._send_transfer(
                transfer, key, registered, credits_wallet=kind == TransactionKind.CREDIT
            )
            try:
                return self._answer_post(
                    transfer,
                    result,
                    recent,
                    transaction_id=transaction_id,
                    kind=kind,
                    key=key,
                    registered=registered,
                    made_by=made_by,
                )
            finally:
                recent.discard()

    def _answer_post(
        self,
        transfer: Transfer,
        result: CreateTransferResult,
        recent: _BalancesBehind,
        *,
        transaction_id: str,
        kind: TransactionKind,
        key: WalletKey,
        registered: RegisteredAccount,
        made_by: str,
    ) -> WalletResult:
        """What TigerBeetle's answer to a posted credit or debit means for the client."""
        status = result.status
        if status == CreateTransferStatus.CREATED:
            # The balance read travels while the registry row is written.
            row = _remember_transfer(
                transfer, transaction_id, kind, registered, result.timestamp, made_by=made_by
            )
            balance = self._balance_after(
                key, recent, tb_account_id=registered.tb_account_id, tb_timestamp=result.timestamp
            )
            return WalletResult(transaction=transaction_record(row, key), balance=balance)
        recent.collect()  # every request sent is answered
        return answer_not_created(
            self.backend,
            transfer,
            result,
            transaction_id=transaction_id,
            kind=kind,
            key=key,
            registered=registered,
            made_by=made_by,
        )
