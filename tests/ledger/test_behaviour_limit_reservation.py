"""The balance limit's reservation (ledger.tb_model.limit_reservation) on every backend: a
wallet holding it takes credits up to BALANCE_MINOR_MAX and refuses, atomically, the one
that would pass it; the embedded engine answers as the real server does."""

from __future__ import annotations

from dataclasses import replace

import tigerbeetle as tb

from domain.money import BALANCE_MINOR_MAX
from ledger.backends.base import LedgerBackend
from ledger.tb_model import (
    LIMIT_RESERVATION_AMOUNT,
    TRANSFER_CODE_LIMIT_PROBE,
    WALLET_ACCOUNT_FLAGS,
    LedgerScope,
    limit_reservation,
    posted_balance_changes,
    wallet_limit_account,
)
from tests.conftest import ledger_scope
from tests.ledger.builders import (
    LEDGER,
    account,
    account_filter,
    balance_of,
    create_accounts,
    transfer,
)

S = tb.CreateTransferStatus
TF = tb.TransferFlags
LIMIT_ACCOUNT_CODE = 11


def scope() -> LedgerScope:
    """The test's scope, with a limit account code of these tests' own."""
    test_scope = ledger_scope()
    return replace(test_scope, codes=replace(test_scope.codes, limit=LIMIT_ACCOUNT_CODE))


def reserved_wallet(backend: LedgerBackend) -> tuple[int, int]:
    """A wallet-like account (history kept) holding its limit reservation, and a funding
    account."""
    wallet, funding = account(flags=WALLET_ACCOUNT_FLAGS), account()
    limit = wallet_limit_account(wallet.id, ledger=LEDGER, scope=scope())
    create_accounts(backend, wallet, funding, limit)
    assert statuses(backend, [limit_reservation(wallet.id, ids=scope().ids, ledger=LEDGER)]) == [
        S.CREATED
    ]
    return wallet.id, funding.id


def statuses(backend: LedgerBackend, events: list[tb.Transfer]) -> list[tb.CreateTransferStatus]:
    return [result.status for result in backend.create_transfers(events)]


def credits_posted(backend: LedgerBackend, wallet_id: int) -> int:
    return balance_of(backend, tb.Account(id=wallet_id))[3]


def test_a_reserved_wallet_holds_the_reservation_pending_and_nothing_posted(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, _ = reserved_wallet(ledger_backend)

    assert balance_of(ledger_backend, tb.Account(id=wallet_id)) == (
        0,
        0,
        LIMIT_RESERVATION_AMOUNT,
        0,
    )


def test_a_credit_up_to_the_limit_exactly_posts(ledger_backend: LedgerBackend) -> None:
    wallet_id, funding_id = reserved_wallet(ledger_backend)

    assert statuses(
        ledger_backend, [transfer(funding_id, credit=wallet_id, amount=BALANCE_MINOR_MAX)]
    ) == [S.CREATED]
    assert credits_posted(ledger_backend, wallet_id) == BALANCE_MINOR_MAX


def test_a_credit_past_the_limit_overflows_and_posts_nothing(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, funding_id = reserved_wallet(ledger_backend)
    ledger_backend.create_transfers(
        [transfer(funding_id, credit=wallet_id, amount=BALANCE_MINOR_MAX - 10)]
    )
    crossing = transfer(funding_id, credit=wallet_id, amount=11)

    assert statuses(ledger_backend, [crossing]) == [S.OVERFLOWS_CREDITS]
    assert ledger_backend.lookup_transfers([crossing.id]) == []
    assert credits_posted(ledger_backend, wallet_id) == BALANCE_MINOR_MAX - 10


def test_a_credit_refused_for_the_limit_burns_no_id(ledger_backend: LedgerBackend) -> None:
    """Overflows are not transient: the same id posts once the amount fits."""
    wallet_id, funding_id = reserved_wallet(ledger_backend)
    ledger_backend.create_transfers(
        [transfer(funding_id, credit=wallet_id, amount=BALANCE_MINOR_MAX - 10)]
    )
    crossing = transfer(funding_id, credit=wallet_id, amount=11)
    ledger_backend.create_transfers([crossing])
    crossing.amount = 10

    assert statuses(ledger_backend, [crossing]) == [S.CREATED]


def test_two_credits_at_the_limit_in_one_request_post_only_the_first(
    ledger_backend: LedgerBackend,
) -> None:
    wallet_id, funding_id = reserved_wallet(ledger_backend)
    ledger_backend.create_transfers(
        [transfer(funding_id, credit=wallet_id, amount=BALANCE_MINOR_MAX - 100)]
    )
    first, second = (
        transfer(funding_id, credit=wallet_id, amount=60),
        transfer(funding_id, credit=wallet_id, amount=60),
    )

    assert statuses(ledger_backend, [first, second]) == [S.CREATED, S.OVERFLOWS_CREDITS]
    assert credits_posted(ledger_backend, wallet_id) == BALANCE_MINOR_MAX - 40


def test_spending_does_not_lift_the_limit_on_credits(ledger_backend: LedgerBackend) -> None:
    wallet_id, funding_id = reserved_wallet(ledger_backend)
    ledger_backend.create_transfers(
        [transfer(funding_id, credit=wallet_id, amount=BALANCE_MINOR_MAX)]
    )

    assert statuses(ledger_backend, [transfer(wallet_id, credit=funding_id, amount=500)]) == [
        S.CREATED
    ]
    assert statuses(ledger_backend, [transfer(funding_id, credit=wallet_id, amount=1)]) == [
        S.OVERFLOWS_CREDITS
    ]


def test_the_reservation_leaves_the_whole_posted_balance_spendable(
    ledger_backend: LedgerBackend,
) -> None:
    """debits_must_not_exceed_credits counts posted credits only: the reservation, pending on
    the credit side, lends the wallet nothing."""
    wallet_id, funding_id = reserved_wallet(ledger_backend)
    ledger_backend.create_transfers([transfer(funding_id, credit=wallet_id, amount=300)])

    assert statuses(ledger_backend, [transfer(wallet_id, credit=funding_id, amount=301)]) == [
        S.EXCEEDS_CREDITS
    ]
    assert statuses(ledger_backend, [transfer(wallet_id, credit=funding_id, amount=300)]) == [
        S.CREATED
    ]


def test_reserving_a_wallet_again_answers_exists(ledger_backend: LedgerBackend) -> None:
    wallet_id, _ = reserved_wallet(ledger_backend)

    assert statuses(
        ledger_backend, [limit_reservation(wallet_id, ids=scope().ids, ledger=LEDGER)]
    ) == [S.EXISTS]


def test_a_wallet_already_past_the_limit_cannot_be_reserved(
    ledger_backend: LedgerBackend,
) -> None:
    wallet, funding = account(flags=WALLET_ACCOUNT_FLAGS), account()
    limit = wallet_limit_account(wallet.id, ledger=LEDGER, scope=scope())
    create_accounts(ledger_backend, wallet, funding, limit)
    ledger_backend.create_transfers(
        [transfer(funding, credit=wallet, amount=BALANCE_MINOR_MAX + 1)]
    )

    assert statuses(
        ledger_backend, [limit_reservation(wallet.id, ids=scope().ids, ledger=LEDGER)]
    ) == [S.OVERFLOWS_CREDITS_POSTED]


def test_one_limit_account_holds_only_one_reservation(ledger_backend: LedgerBackend) -> None:
    """Why each wallet has a limit account of its own: a reservation fills its debit
    account's 128-bit debits_pending."""
    wallet_id, _ = reserved_wallet(ledger_backend)
    other = create_accounts(ledger_backend, account(flags=WALLET_ACCOUNT_FLAGS))[0]
    second = limit_reservation(other.id, ids=scope().ids, ledger=LEDGER)
    second.debit_account_id = wallet_limit_account(wallet_id, ledger=LEDGER, scope=scope()).id

    assert statuses(ledger_backend, [second]) == [S.OVERFLOWS_DEBITS_PENDING]


def test_the_history_without_bookkeeping_keeps_one_snapshot_per_posted_transfer(
    ledger_backend: LedgerBackend,
) -> None:
    """A wallet credited in limit-probe chains before it was reserved: neither the probes,
    their voids nor the reservation count as its transactions."""
    wallet, funding, probes = account(flags=WALLET_ACCOUNT_FLAGS), account(), account()
    create_accounts(ledger_backend, wallet, funding, probes)
    ledger_backend.create_transfers(
        probe_chain(transfer(funding, credit=wallet, amount=7), probes.id)
    )
    ledger_backend.create_transfers([transfer(wallet, credit=funding, amount=2)])
    create_accounts(ledger_backend, wallet_limit_account(wallet.id, ledger=LEDGER, scope=scope()))
    ledger_backend.create_transfers([limit_reservation(wallet.id, ids=scope().ids, ledger=LEDGER)])
    ledger_backend.create_transfers([transfer(funding, credit=wallet, amount=5)])
    history = account_filter(
        wallet,
        flags=tb.AccountFilterFlags.DEBITS
        | tb.AccountFilterFlags.CREDITS
        | tb.AccountFilterFlags.REVERSED,
    )

    snapshots = ledger_backend.get_account_balances(history)
    changes = posted_balance_changes(snapshots, whole_history=True)

    assert len(snapshots) == 6
    assert [(s.debits_posted, s.credits_posted) for s in changes] == [(2, 12), (2, 7), (0, 7)]
    assert posted_balance_changes(snapshots[:3], whole_history=False) == changes[:1]


def probe_chain(credit: tb.Transfer, probe_account_id: int) -> list[tb.Transfer]:
    """How credits were posted before reservations: linked with a pending probe of the same
    amount from the ledger's probe account, and the probe's void."""
    probe_id = tb.id()
    probe = transfer(
        probe_account_id,
        credit=credit.credit_account_id,
        amount=LIMIT_RESERVATION_AMOUNT,
        id=probe_id,
        code=TRANSFER_CODE_LIMIT_PROBE,
        flags=TF.LINKED | TF.PENDING,
    )
    void = transfer(
        probe_account_id,
        credit=credit.credit_account_id,
        amount=LIMIT_RESERVATION_AMOUNT,
        pending_id=probe_id,
        code=TRANSFER_CODE_LIMIT_PROBE,
        flags=TF.VOID_PENDING_TRANSFER,
    )
    credit.flags = TF.LINKED
    return [credit, probe, void]
