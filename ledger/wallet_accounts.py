"""Account set-up on TigerBeetle: a wallet's accounts, its limit reservation and its registry
row, made one way for every caller.

A wallet gets, on first use, its ledger's system account, its own account and its limit
account, then (unless told otherwise) its limit reservation (`ledger.tb_model`), then its
registry row. The account's fields encode the whole key, so TigerBeetle itself reports an id
that belongs to another wallet (`exists_with_different_*`): the nonce is then bumped. A wallet
registered before reservations is reserved before its next credit (`reserve_limit`).

The TigerBeetle store sets up a wallet on its first credit; the mirror sets up the wallets
born with MongoDB's log, without a reservation (the legacy store enforced the limit of every
write it replays).

Error contract, the same as the jobs' batch port (`ledger.batches`): a ledger that does not
answer raises `LedgerUnavailable` (the store turns it into StoreUnavailable). A reservation of
a wallet already past the balance limit raises BalanceLimitExceeded. An account or reservation
TigerBeetle refuses for any other reason, or a key with no free account id, raises
RuntimeError: a foreign account or a bug, which no retry mends.
"""

from __future__ import annotations

from tigerbeetle import Account, CreateAccountStatus, CreateTransferStatus, Transfer

from domain import errors
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX, ledger_for_currency
from ledger.backends import LedgerBackend
from ledger.tb_model import (
    COUNTRY_BITS,
    LedgerScope,
    limit_reservation,
    system_account,
    wallet_account,
    wallet_limit_account,
)
from registry import accounts as account_registry
from registry.accounts import RegisteredAccount

MAX_ACCOUNT_NONCE = 16

_ACCOUNT_ACCEPTED = {CreateAccountStatus.CREATED, CreateAccountStatus.EXISTS}
# The backfill may have imported the system account (flag `imported`): the same account.
_SYSTEM_ACCOUNT_ACCEPTED = _ACCOUNT_ACCEPTED | {CreateAccountStatus.EXISTS_WITH_DIFFERENT_FLAGS}
# A transfer crediting a wallet fails with one of these exactly when the wallet's credits would
# pass the limit (its reservation holds the rest of 128 bits); so does a reservation of a
# wallet already past it.
LIMIT_OVERFLOWS = {
    CreateTransferStatus.OVERFLOWS_CREDITS,
    CreateTransferStatus.OVERFLOWS_CREDITS_POSTED,
}
_RESERVATION_ACCEPTED = {CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS}


def limit_exceeded(key: WalletKey) -> errors.BalanceLimitExceeded:
    """The refusal of a credit (or reservation) that would take the wallet past the limit."""
    return errors.BalanceLimitExceeded(
        f"Wallet {key.describe()} would hold more than {BALANCE_MINOR_MAX} minor units "
        "of credit in all; the ledger's balance limit."
    )


def unexpected_refusal(status: CreateTransferStatus, transfer: Transfer) -> RuntimeError:
    """A refusal no caller expects: a bug or a foreign transfer, never the client's doing."""
    return RuntimeError(f"TigerBeetle refused transfer {transfer.id:#x}: {status.name}")


class WalletAccounts:
    """A wallet's accounts on one ledger backend: found in the registry, or created."""

    def __init__(self, backend: LedgerBackend, *, scope: LedgerScope) -> None:
        """`scope`: the deployment's id namespace and account codes."""
        self._backend = backend
        self._scope = scope

    def registered_account(self, key: WalletKey) -> RegisteredAccount:
        """The wallet's registry entry, creating its accounts and reservation on first use."""
        registered = account_registry.find_account(key)
        if registered is not None:
            return registered
        self.ensure_wallet_account(key)
        registered = account_registry.find_account(key)
        assert registered is not None, "a wallet account was registered just now"
        return registered

    def ensure_wallet_account(self, key: WalletKey, *, reserve_limit: bool = True) -> int:
        """The wallet's account id, creating the system, wallet and limit accounts and, with
        `reserve_limit`, the wallet's limit reservation on first use (without it, the
        store reserves before the wallet's first credit of its own)."""
        registered = account_registry.find_account(key)
        if registered is not None:
            return registered.tb_account_id
        ledger = ledger_for_currency(key.currency)
        scope = self._scope
        system = system_account(ledger, scope=scope)
        for nonce in range(MAX_ACCOUNT_NONCE):
            wallet = wallet_account(
                key, account_id=scope.ids.account_id(key, nonce=nonce), ledger=ledger, scope=scope
            )
            limit_account = wallet_limit_account(wallet.id, ledger=ledger, scope=scope)
            system_result, wallet_result, limit_result = self._backend.create_accounts(
                [system, wallet, limit_account]
            )
            if system_result.status not in _SYSTEM_ACCOUNT_ACCEPTED:
                raise RuntimeError(f"system account of ledger {ledger}: {system_result.status!r}")
            if wallet_result.status not in _ACCOUNT_ACCEPTED and not (
                wallet_result.status == CreateAccountStatus.EXISTS_WITH_DIFFERENT_USER_DATA_32
                and self._created_before_stamps(wallet)
            ):
                continue  # the id belongs to another wallet: next nonce
            if limit_result.status not in _ACCOUNT_ACCEPTED:
                raise RuntimeError(
                    f"limit account of wallet {key.describe()}: {limit_result.status!r}"
                )
            if reserve_limit:
                self._post_reservation(key, tb_account_id=wallet.id, ledger=ledger)
            try:
                return account_registry.register_account(
                    key,
                    tb_account_id=wallet.id,
                    ledger=ledger,
                    nonce=nonce,
                    limit_reserved=reserve_limit,
                ).tb_account_id
            except account_registry.AccountIdTaken:
                continue
        raise RuntimeError(f"no free account id for {key.describe()} in {MAX_ACCOUNT_NONCE} nonces")

    def _created_before_stamps(self, wallet: Account) -> bool:
        """Whether the account under `wallet`'s id is this very wallet's, created before
        deployment stamps (user_data_32 the bare country code; TigerBeetle compares flags,
        user_data_128 and user_data_64 before it, so those are equal). Its registry row was
        lost: the wallet keeps its account, never a second one under the next nonce."""
        found = self._backend.lookup_accounts([wallet.id])
        if not found:
            return False
        existing = found[0]
        country_mask = (1 << COUNTRY_BITS) - 1
        return (
            existing.user_data_32 == wallet.user_data_32 & country_mask
            and existing.ledger == wallet.ledger
            and existing.code == wallet.code
        )

    def reserve_limit(self, key: WalletKey, registered: RegisteredAccount) -> None:
        """Give a wallet registered before limit reservations its limit account and
        reservation, then mark it reserved. Repeating it (another process, a stale cache
        entry) is answered `exists`; a wallet already past the limit cannot be reserved,
        and no credit of it can post."""
        limit_account = wallet_limit_account(
            registered.tb_account_id, ledger=registered.ledger, scope=self._scope
        )
        (account_result,) = self._backend.create_accounts([limit_account])
        if account_result.status not in _ACCOUNT_ACCEPTED:
            raise RuntimeError(
                f"limit account of wallet {key.describe()}: {account_result.status!r}"
            )
        self._post_reservation(
            key, tb_account_id=registered.tb_account_id, ledger=registered.ledger
        )
        account_registry.mark_limit_reserved(key, registry_pk=registered.registry_pk)

    def _post_reservation(self, key: WalletKey, *, tb_account_id: int, ledger: int) -> None:
        reservation = limit_reservation(tb_account_id, ids=self._scope.ids, ledger=ledger)
        (result,) = self._backend.create_transfers([reservation])
        if result.status in LIMIT_OVERFLOWS:
            raise limit_exceeded(key)
        if result.status not in _RESERVATION_ACCEPTED:
            raise unexpected_refusal(result.status, reservation)
