"""The TigerBeetle data model (ledger/tb_model.py): what each operation posts, and how a
wallet's three balance fields are read back from its account."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tigerbeetle import AccountFlags, Transfer, TransferFlags

from domain.ids import IdSpace, WalletKey
from domain.money import BALANCE_MINOR_MAX, ledger_for_currency
from domain.wallets import WalletBalance
from ledger.tb_model import (
    TRANSFER_CODE_CREDIT,
    TRANSFER_CODE_DEBIT,
    TRANSFER_CODE_LIMIT_RESERVATION,
    TRANSFER_CODE_OPENING_BALANCE,
    TRANSFER_CODE_VOID,
    WALLET_ACCOUNT_FLAGS,
    AccountCodes,
    LedgerScope,
    credit_transfer,
    debit_transfer,
    imported_wallet_account,
    is_limit_bookkeeping,
    limit_reservation,
    opening_pair,
    stamp_import,
    void_transfer,
    wallet_balance,
    wallet_limit_account,
)

KEY = WalletKey("client-1", "FRA", "EUR")
LEDGER = ledger_for_currency("EUR")
SCOPE = LedgerScope(
    ids=IdSpace("test:tb-model"), codes=AccountCodes(wallet=7101, system=7102, limit=9)
)


@dataclass(frozen=True)
class Ids:
    account: int
    system: int


@pytest.fixture
def ids() -> Ids:
    """The wallet's and the ledger's system account ids, in the tests' scope."""
    return Ids(account=SCOPE.ids.account_id(KEY), system=SCOPE.ids.system_account_id(LEDGER))


def posted_on(account_id: int, transfers: list[Transfer]) -> tuple[int, int]:
    """The account's credits_posted and debits_posted after the transfers."""
    credits = sum(t.amount for t in transfers if t.credit_account_id == account_id)
    debits = sum(t.amount for t in transfers if t.debit_account_id == account_id)
    return credits, debits


def test_the_balance_formula_reads_available_spent_and_total_received_from_posted() -> None:
    balance = wallet_balance(KEY, credits_posted=1_300, debits_posted=300)

    assert balance.fields_minor() == (1_000, 300, 1_300)


def opening_pair_of(legacy: WalletBalance, ids: Ids) -> list[Transfer]:
    return opening_pair(
        legacy,
        ids=SCOPE.ids,
        wallet_seq=7,
        created_ms=1_700_000_000_000,
        account_id=ids.account,
        system_id=ids.system,
        ledger=LEDGER,
    )


@pytest.mark.parametrize(
    ("credit_minor", "debit_minor"), [(1_000, 300), (1_000, 0), (0, 250), (0, 0)]
)
def test_an_opening_pair_gives_back_the_legacy_balance_field_by_field(
    credit_minor: int, debit_minor: int, ids: Ids
) -> None:
    legacy = WalletBalance(
        key=KEY,
        credit_minor=credit_minor,
        debit_minor=debit_minor,
        historical_credit_minor=credit_minor + debit_minor,
    )

    pair = opening_pair_of(legacy, ids)

    credits, debits = posted_on(ids.account, pair)
    assert wallet_balance(KEY, credits_posted=credits, debits_posted=debits) == legacy
    assert all(t.amount > 0 for t in pair)  # a zero side is left out, never posted as 0
    assert all(t.code == TRANSFER_CODE_OPENING_BALANCE for t in pair)
    assert all(t.flags == TransferFlags.IMPORTED and t.user_data_128 == 7 for t in pair)


def test_an_imported_wallet_account_keeps_the_wallet_flags_and_is_marked_imported(ids: Ids) -> None:
    account = imported_wallet_account(KEY, account_id=ids.account, ledger=LEDGER, scope=SCOPE)

    assert account.flags == WALLET_ACCOUNT_FLAGS | AccountFlags.IMPORTED
    assert (account.id, account.code) == (ids.account, 7101)


def test_an_import_is_timed_account_first_then_its_opening_pair_1_and_2_ns_after(
    ids: Ids,
) -> None:
    account = imported_wallet_account(KEY, account_id=ids.account, ledger=LEDGER, scope=SCOPE)
    legacy = WalletBalance(key=KEY, credit_minor=700, debit_minor=300, historical_credit_minor=1000)
    pair = opening_pair_of(legacy, ids)

    last = stamp_import(account, pair, timestamp=100)

    assert (account.timestamp, [t.timestamp for t in pair], last) == (100, [101, 102], 102)


def test_a_credit_moves_money_from_the_system_account_to_the_wallet(ids: Ids) -> None:
    transfer = credit_transfer(
        "tx-1", ids=SCOPE.ids, tb_account_id=ids.account, ledger=LEDGER, amount_minor=500
    )

    assert (transfer.debit_account_id, transfer.credit_account_id) == (ids.system, ids.account)
    assert transfer.code == TRANSFER_CODE_CREDIT


def test_a_debit_takes_the_id_a_credit_on_the_same_id_would_have(ids: Ids) -> None:
    debit = debit_transfer(
        "tx-1", ids=SCOPE.ids, tb_account_id=ids.account, ledger=LEDGER, amount_minor=500
    )

    assert (
        debit.id
        == credit_transfer(
            "tx-1", ids=SCOPE.ids, tb_account_id=ids.account, ledger=LEDGER, amount_minor=500
        ).id
    )
    assert (debit.debit_account_id, debit.credit_account_id) == (ids.account, ids.system)
    assert debit.code == TRANSFER_CODE_DEBIT


@pytest.mark.parametrize("voided_credit", [True, False])
def test_a_void_undoes_the_voided_transfer_and_points_at_it(voided_credit: bool, ids: Ids) -> None:
    voided = (credit_transfer if voided_credit else debit_transfer)(
        "tx-1", ids=SCOPE.ids, tb_account_id=ids.account, ledger=LEDGER, amount_minor=500
    )

    void = void_transfer(
        voided.id,
        ids=SCOPE.ids,
        voided_credit=voided_credit,
        tb_account_id=ids.account,
        ledger=LEDGER,
        amount_minor=500,
        attempt=0,
    )

    assert (void.debit_account_id, void.credit_account_id) == (
        voided.credit_account_id,
        voided.debit_account_id,
    )
    assert (void.code, void.user_data_128, void.amount) == (TRANSFER_CODE_VOID, voided.id, 500)
    assert (
        void.id
        != void_transfer(
            voided.id,
            ids=SCOPE.ids,
            voided_credit=voided_credit,
            tb_account_id=ids.account,
            ledger=LEDGER,
            amount_minor=500,
            attempt=1,
        ).id
    )


def test_a_limit_reservation_holds_all_but_the_limit_pending_on_the_wallet_for_good() -> None:
    wallet_id = SCOPE.ids.account_id(KEY)

    reservation = limit_reservation(wallet_id, ids=SCOPE.ids, ledger=LEDGER)

    assert reservation.flags == TransferFlags.PENDING and reservation.timeout == 0
    assert reservation.amount == 2**128 - 1 - BALANCE_MINOR_MAX
    assert reservation.credit_account_id == wallet_id
    assert (
        reservation.debit_account_id
        == wallet_limit_account(wallet_id, ledger=LEDGER, scope=SCOPE).id
    )
    assert reservation.code == TRANSFER_CODE_LIMIT_RESERVATION
    assert is_limit_bookkeeping(reservation)


def test_each_wallet_has_a_limit_account_and_reservation_of_its_own() -> None:
    first, second = SCOPE.ids.account_id(KEY), SCOPE.ids.account_id(KEY, nonce=1)

    assert (
        limit_reservation(first, ids=SCOPE.ids, ledger=LEDGER).id
        == limit_reservation(first, ids=SCOPE.ids, ledger=LEDGER).id
    )
    assert (
        limit_reservation(first, ids=SCOPE.ids, ledger=LEDGER).id
        != limit_reservation(second, ids=SCOPE.ids, ledger=LEDGER).id
    )
    assert (
        wallet_limit_account(first, ledger=LEDGER, scope=SCOPE).id
        != wallet_limit_account(second, ledger=LEDGER, scope=SCOPE).id
    )
