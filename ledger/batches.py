"""The migration jobs' one port onto the ledger: batches of up to BATCH_EVENTS_MAX events.

The mirror, the backfill, the reconciliation, the shadow reads and the copy back reach
TigerBeetle through a `LedgerBatches` (and, for a wallet's accounts, through the account
set-up it carries, `wallet_accounts`), never through the TigerBeetle store, whose wallet
operations speak the wallet stores' error contract.

Error contract: every method raises `LedgerUnavailable` when the ledger does not answer, and
nothing of its own besides: TigerBeetle's refusals come back as results (one per event, in
order), and a lookup leaves out what does not exist. Each job decides itself whether to
retry, count or stop; the account set-up keeps the same contract toward them. The history
selectors (`ledger.history`) read through this port too, and keep theirs (StoreUnavailable).
"""

from __future__ import annotations

from tigerbeetle import (
    Account,
    AccountBalance,
    AccountFilter,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
)

from ledger.backends import LedgerBackend
from ledger.tb_model import LedgerScope, accounts_filter, latest_event_filter
from ledger.wallet_accounts import WalletAccounts


class LedgerBatches:
    """Batch writes, lookups and queries over one ledger backend, for the migration's jobs."""

    def __init__(self, backend: LedgerBackend, *, scope: LedgerScope) -> None:
        """`scope`: the deployment's id namespace (the jobs derive their transfers' ids in
        it) and account codes (the wallet-accounts page reads only its wallet code)."""
        self._backend = backend
        self.scope = scope
        self.wallet_accounts = WalletAccounts(backend, scope=scope)

    @property
    def callable_from_any_thread(self) -> bool:
        """Whether a job may call this port from a thread of its own (the real client), or
        only from the thread whose database transaction it works in (the embedded engine)."""
        return bool(getattr(self._backend, "callable_from_any_thread", False))

    def create_transfers(self, transfers: list[Transfer]) -> list[CreateTransferResult]:
        """create_transfers for a prepared batch: one result per transfer, in order."""
        return self._backend.create_transfers(transfers)

    def create_accounts(self, accounts: list[Account]) -> list[CreateAccountResult]:
        """create_accounts for a prepared batch: one result per account, in order."""
        return self._backend.create_accounts(accounts)

    def lookup_accounts(self, tb_account_ids: list[int]) -> list[Account]:
        """The accounts that exist among `tb_account_ids` (missing ids left out)."""
        return self._backend.lookup_accounts(tb_account_ids)

    def lookup_transfers(self, tb_transfer_ids: list[int]) -> list[Transfer]:
        """The transfers that exist among `tb_transfer_ids` (missing ids left out)."""
        return self._backend.lookup_transfers(tb_transfer_ids)

    def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]:
        """One account's transfers (the history selectors' read)."""
        return self._backend.get_account_transfers(account_filter)

    def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]:
        """One account's balance after each of its transfers (the history selectors' read)."""
        return self._backend.get_account_balances(account_filter)

    def wallet_accounts_page(self, *, timestamp_min: int, limit: int) -> list[Account]:
        """This application's wallet accounts (its wallet code only, never another
        application's on a shared cluster), oldest first from `timestamp_min`; the next page
        starts after the last one's timestamp."""
        return self._backend.query_accounts(
            accounts_filter(code=self.scope.codes.wallet, limit=limit, timestamp_min=timestamp_min)
        )

    def latest_timestamp(self) -> int:
        """The timestamp of the newest account or transfer in the cluster (0 when empty)."""
        query = latest_event_filter()
        latest = [account.timestamp for account in self._backend.query_accounts(query)]
        latest += [transfer.timestamp for transfer in self._backend.query_transfers(query)]
        return max(latest, default=0)
