"""What TigerBeetle's answers mean for the TigerBeetle store's credits and debits, single or
in a batch: the registry row a posted write leaves, the replay of an id seen before, the
refusal a status means. Module functions over a ledger's reads and the transfer registry, so
the store's single writes and its batches (`ledger.stores.tigerbeetle_batch`) answer alike.
"""

from __future__ import annotations

from django.utils import timezone
from tigerbeetle import CreateTransferResult, CreateTransferStatus, Transfer, TransferFlags

from domain import errors
from domain.ids import WalletKey
from domain.wallets import (
    TransactionKind,
    WalletResult,
    time_of_tb_timestamp,
    write_time,
)
from ledger.history import LedgerReads, balance_at, transfer_timestamps, transfers_by_id
from ledger.wallet_accounts import unexpected_refusal
from registry import transfers as transfer_registry
from registry.accounts import RegisteredAccount
from registry.models import WalletTransfer

CROSS_LEDGER = {
    CreateTransferStatus.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
    CreateTransferStatus.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
}
OVERFLOWS = {
    CreateTransferStatus.OVERFLOWS_CREDITS,
    CreateTransferStatus.OVERFLOWS_CREDITS_POSTED,
    CreateTransferStatus.OVERFLOWS_DEBITS,
    CreateTransferStatus.OVERFLOWS_DEBITS_POSTED,
}


def answer_not_created(
    ledger: LedgerReads,
    transfer: Transfer,
    result: CreateTransferResult,
    *,
    transaction_id: str,
    kind: TransactionKind,
    key: WalletKey,
    registered: RegisteredAccount,
    made_by: str,
) -> WalletResult:
    """What TigerBeetle's answer other than `created` to a posted credit or debit means for
    the client: the replay of a write it holds, or the refusal (raised)."""
    status = result.status
    posted_at = posted_timestamp(ledger, transfer, result)
    if posted_at:
        # Applied before, registry row lost in between (crash or race): repair, replay.
        remember_transfer(transfer, transaction_id, kind, registered, posted_at, made_by=made_by)
        replay = replay_if_known(ledger, transaction_id, kind, key, transfer.amount)
        assert replay is not None
        return replay
    if status.name.startswith("EXISTS_WITH_DIFFERENT_"):
        known = registered_transfer(transaction_id)
        raise errors.IdempotencyConflict(
            f"Id {transaction_id!r} was already used for a different {kind.value}.",
            original=transfer_registry.transaction_record(known) if known is not None else None,
        )
    if status == CreateTransferStatus.EXCEEDS_CREDITS:
        remember_transfer(
            transfer,
            transaction_id,
            kind,
            registered,
            None,
            failure_code="insufficient_funds",
            made_by=made_by,
            refused_tb_timestamp=int(result.timestamp) or None,
        )
        raise errors.InsufficientFunds(
            f"Wallet {key.describe()} has less available credit than the amount."
        )
    if status == CreateTransferStatus.ID_ALREADY_FAILED:
        replay = replay_if_known(ledger, transaction_id, kind, key, transfer.amount)
        if replay:
            return replay
        raise errors.IdempotencyConflict(
            f"Id {transaction_id!r} belongs to a request that failed; use a new id."
        )
    if status in CROSS_LEDGER:
        raise errors.CrossCurrency(f"Wallet {key.describe()} is in another currency.")
    if status in {
        CreateTransferStatus.DEBIT_ACCOUNT_NOT_FOUND,
        CreateTransferStatus.CREDIT_ACCOUNT_NOT_FOUND,
    }:
        raise errors.WalletNotFound(f"No ledger account for wallet {key.describe()}.")
    if status in OVERFLOWS:
        raise errors.InvalidAmount("The amount would overflow the wallet's balance.")
    raise unexpected_refusal(status, transfer)


def posted_timestamp(ledger: LedgerReads, transfer: Transfer, result: CreateTransferResult) -> int:
    """The timestamp of `transfer` when TigerBeetle holds it (created now, or `exists`),
    else 0. The same write posted with another `linked` flag, which TigerBeetle keeps (in a
    limit probe's chain, before reservations; alone, as now and as the mirror replays
    it), is answered `exists_with_different_flags`, and counts as `exists` here."""
    if result.status in (CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS):
        return int(result.timestamp)
    if result.status != CreateTransferStatus.EXISTS_WITH_DIFFERENT_FLAGS:
        return 0
    stored = transfers_by_id(ledger, [transfer.id]).get(transfer.id)
    if stored is None:
        return 0
    fields = ("debit_account_id", "credit_account_id", "amount", "user_data_128", "ledger")
    same = (
        all(getattr(stored, name) == getattr(transfer, name) for name in fields)
        and stored.code == transfer.code
        and stored.flags & ~TransferFlags.LINKED == transfer.flags & ~TransferFlags.LINKED
    )
    return int(stored.timestamp) if same else 0


def replay_if_known(
    ledger: LedgerReads,
    transaction_id: str,
    kind: TransactionKind,
    key: WalletKey,
    amount_minor: int,
) -> WalletResult | None:
    """The original result of an id seen before, or IdempotencyConflict if it differs."""
    row = registered_transfer(transaction_id)
    if row is None:
        return None
    check_replay(row, kind=kind, key=key, amount_minor=amount_minor)
    timestamp = row.tb_timestamp or transfer_timestamp(ledger, row.tb_transfer_id)
    return WalletResult(
        transaction=transfer_registry.transaction_record(row),
        balance=balance_at(
            ledger, key, tb_account_id=row.wallet.tb_account_id, tb_timestamp=timestamp
        ),
        replayed=True,
    )


def check_replay(
    row: WalletTransfer, *, kind: TransactionKind, key: WalletKey, amount_minor: int
) -> None:
    """Raises what a write of `row`'s id answers when it is not its replay: the id used for
    a different request, or the write refused for funds the first time."""
    if row.kind != kind.value or row.wallet.key != key or row.amount_minor != amount_minor:
        raise errors.IdempotencyConflict(
            f"Id {row.transaction_id!r} was already used for a different request.",
            original=transfer_registry.transaction_record(row),
        )
    if row.state == WalletTransfer.State.FAILED:
        raise errors.InsufficientFunds(
            f"Wallet {key.describe()} had less available credit than the amount."
        )


def transfer_timestamp(ledger: LedgerReads, tb_transfer_id: int) -> int:
    timestamp = transfer_timestamps(ledger, [tb_transfer_id]).get(tb_transfer_id)
    if timestamp is None:
        raise errors.TransactionNotFound("The transaction's transfer is not in the ledger.")
    return timestamp


def registered_transfer(transaction_id: str) -> WalletTransfer | None:
    """The registry row of `transaction_id`, with its wallet."""
    return (
        WalletTransfer.objects.select_related("wallet")
        .filter(transaction_id=transaction_id)
        .first()
    )


def remember_transfer(
    transfer: Transfer,
    transaction_id: str,
    kind: TransactionKind,
    registered: RegisteredAccount,
    tb_timestamp: int | None,
    *,
    failure_code: str = "",
    made_by: str = "",
    refused_tb_timestamp: int | None = None,
) -> WalletTransfer:
    """The write's registry row; its time is TigerBeetle's (also when a retry repairs a lost
    row; for a refused write, which TigerBeetle never holds, the time TigerBeetle refused it
    at, `refused_tb_timestamp`), or now when TigerBeetle gave none."""
    stamp = tb_timestamp or refused_tb_timestamp
    created_at = time_of_tb_timestamp(stamp) if stamp else write_time(timezone.now())
    return transfer_registry.record_store_write(
        transaction_id=transaction_id,
        wallet_pk=registered.registry_pk,
        kind=kind.value,
        amount_minor=transfer.amount,
        tb_transfer_id=transfer.id,
        tb_timestamp=tb_timestamp,
        created_at=created_at,
        failure_code=failure_code,
        made_by=made_by,
        refused_tb_timestamp=refused_tb_timestamp,
    )
