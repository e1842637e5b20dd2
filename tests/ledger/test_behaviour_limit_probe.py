"""The balance limit's linked chain (ledger.tb_model.limit_guarded_chain) on every backend:
TigerBeetle posts a transfer and its limit probe together or not at all, the probe fails
exactly past the limit, and the embedded engine answers as the real server does."""

from __future__ import annotations

import tigerbeetle as tb

from domain.money import BALANCE_MINOR_MAX
from ledger.backends.base import LedgerBackend
from ledger.tb_model import (
    LIMIT_PROBE_AMOUNT,
    TRANSFER_CODE_LIMIT_PROBE,
    WALLET_ACCOUNT_FLAGS,
    limit_guarded_chain,
    limit_probe_account,
    posted_balance_changes,
)
from tests.ledger.builders import LEDGER, account, balance_of, create_accounts, transfer

S = tb.CreateTransferStatus
TF = tb.TransferFlags
PROBE_ACCOUNT_CODE = 11


def wallet_and_funding(backend: LedgerBackend, *, probe: bool = True) -> tuple[int, int]:
    """A wallet-like account (history kept), a funding account, and the ledger's probe
    account unless `probe` is false."""
    wallet, funding = account(flags=WALLET_ACCOUNT_FLAGS), account()
    accounts = [wallet, funding]
    if probe:
        accounts.append(limit_probe_account(LEDGER, code=PROBE_ACCOUNT_CODE))
    results = backend.create_accounts(accounts)
    accepted = {tb.CreateAccountStatus.CREATED, tb.CreateAccountStatus.EXISTS}
    assert all(result.status in accepted for result in results)
    return wallet.id, funding.id


def credit(wallet_id: int, funding_id: int, amount: int) -> tb.Transfer:
    return transfer(funding_id, wallet_id, amount)


def statuses(backend: LedgerBackend, events: list[tb.Transfer]) -> list[tb.CreateTransferStatus]:
    return [result.status for result in backend.create_transfers(events)]


def test_a_chain_within_the_limit_posts_the_credit_and_leaves_nothing_pending(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, funding_id = wallet_and_funding(ledger_backend)
    chain = limit_guarded_chain(credit(wallet_id, funding_id, 500))

    assert statuses(ledger_backend, chain) == [S.CREATED] * 3
    assert balance_of(ledger_backend, tb.Account(id=wallet_id)) == (0, 0, 0, 500)
    stored = {t.id: t for t in ledger_backend.lookup_transfers([t.id for t in chain])}
    assert [stored[t.id].flags for t in chain] == [
        TF.LINKED,
        TF.LINKED | TF.PENDING,
        TF.VOID_PENDING_TRANSFER,
    ]
    assert [stored[t.id].code for t in chain[1:]] == [TRANSFER_CODE_LIMIT_PROBE] * 2
    assert stored[chain[1].id].amount == LIMIT_PROBE_AMOUNT


def test_a_chain_up_to_the_limit_exactly_posts(ledger_backend: LedgerBackend) -> None:
    wallet_id, funding_id = wallet_and_funding(ledger_backend)

    assert (
        statuses(
            ledger_backend, limit_guarded_chain(credit(wallet_id, funding_id, BALANCE_MINOR_MAX))
        )
        == [S.CREATED] * 3
    )

    assert balance_of(ledger_backend, tb.Account(id=wallet_id)) == (0, 0, 0, BALANCE_MINOR_MAX)


def test_a_chain_past_the_limit_fails_at_the_probe_and_posts_nothing(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, funding_id = wallet_and_funding(ledger_backend)
    ledger_backend.create_transfers(
        limit_guarded_chain(credit(wallet_id, funding_id, BALANCE_MINOR_MAX - 10))
    )
    chain = limit_guarded_chain(credit(wallet_id, funding_id, 11))

    assert statuses(ledger_backend, chain) == [
        S.LINKED_EVENT_FAILED,
        S.OVERFLOWS_CREDITS_POSTED,
        S.LINKED_EVENT_FAILED,
    ]
    assert ledger_backend.lookup_transfers([t.id for t in chain]) == []
    assert balance_of(ledger_backend, tb.Account(id=wallet_id)) == (
        0,
        0,
        0,
        BALANCE_MINOR_MAX - 10,
    )


def test_a_chain_refused_for_the_limit_burns_no_id(ledger_backend: LedgerBackend) -> None:
    """Overflows are not transient: the same ids post once the amount fits (the store
    derives the probe's ids from the transfer's)."""
    wallet_id, funding_id = wallet_and_funding(ledger_backend)
    ledger_backend.create_transfers(
        limit_guarded_chain(credit(wallet_id, funding_id, BALANCE_MINOR_MAX - 10))
    )
    crossing = credit(wallet_id, funding_id, 11)
    ledger_backend.create_transfers(limit_guarded_chain(crossing))
    crossing.amount = 10

    assert statuses(ledger_backend, limit_guarded_chain(crossing)) == [S.CREATED] * 3


def test_two_chains_at_the_limit_in_one_request_post_only_the_first(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, funding_id = wallet_and_funding(ledger_backend)
    ledger_backend.create_transfers(
        limit_guarded_chain(credit(wallet_id, funding_id, BALANCE_MINOR_MAX - 100))
    )
    first = limit_guarded_chain(credit(wallet_id, funding_id, 60))
    second = limit_guarded_chain(credit(wallet_id, funding_id, 60))

    assert statuses(ledger_backend, first + second) == [
        *[S.CREATED] * 3,
        S.LINKED_EVENT_FAILED,
        S.OVERFLOWS_CREDITS_POSTED,
        S.LINKED_EVENT_FAILED,
    ]
    assert balance_of(ledger_backend, tb.Account(id=wallet_id)) == (
        0,
        0,
        0,
        BALANCE_MINOR_MAX - 40,
    )


def test_a_chain_without_the_probe_account_fails_and_burns_the_probe_id(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, funding_id = wallet_and_funding(ledger_backend, probe=False)
    guarded = credit(wallet_id, funding_id, 5)
    chain = limit_guarded_chain(guarded)

    assert statuses(ledger_backend, chain) == [
        S.LINKED_EVENT_FAILED,
        S.DEBIT_ACCOUNT_NOT_FOUND,
        S.LINKED_EVENT_FAILED,
    ]
    create_accounts(ledger_backend, limit_probe_account(LEDGER, code=PROBE_ACCOUNT_CODE))
    assert statuses(ledger_backend, limit_guarded_chain(guarded)) == [
        S.LINKED_EVENT_FAILED,
        S.ID_ALREADY_FAILED,
        S.LINKED_EVENT_FAILED,
    ]
    assert statuses(ledger_backend, limit_guarded_chain(guarded, attempt=1)) == [S.CREATED] * 3


def test_the_history_without_probes_keeps_one_snapshot_per_posted_transfer(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, funding_id = wallet_and_funding(ledger_backend)
    ledger_backend.create_transfers(limit_guarded_chain(credit(wallet_id, funding_id, 7)))
    ledger_backend.create_transfers([transfer(wallet_id, funding_id, 2)])
    ledger_backend.create_transfers(limit_guarded_chain(credit(wallet_id, funding_id, 5)))
    history = tb.AccountFilter(
        account_id=wallet_id,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=100,
        flags=tb.AccountFilterFlags.DEBITS
        | tb.AccountFilterFlags.CREDITS
        | tb.AccountFilterFlags.REVERSED,
    )

    snapshots = ledger_backend.get_account_balances(history)

    assert len(snapshots) == 7
    assert [(s.debits_posted, s.credits_posted) for s in posted_balance_changes(snapshots)] == [
        (2, 12),
        (2, 7),
        (0, 7),
    ]
