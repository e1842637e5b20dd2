"""The TigerBeetle data model (ledger/tb_model.py): what each operation posts, and how a
wallet's three balance fields are read back from its account."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tigerbeetle import AccountFlags, Transfer, TransferFlags

from domain.ids import WalletKey, account_id_for, system_account_id
from domain.money import BALANCE_MINOR_MAX, ledger_for_currency
from domain.wallets import WalletBalance
from ledger.tb_model import (
    TRANSFER_CODE_CREDIT,
    TRANSFER_CODE_DEBIT,
    TRANSFER_CODE_LIMIT_PROBE,
    TRANSFER_CODE_OPENING_BALANCE,
    TRANSFER_CODE_VOID,
    WALLET_ACCOUNT_FLAGS,
    credit_transfer,
    debit_transfer,
    imported_wallet_account,
    limit_guarded_chain,
    limit_probe_account,
    opening_pair,
    void_transfer,
    wallet_balance,
)

KEY = WalletKey("client-1", "FRA", "EUR")
LEDGER = ledger_for_currency("EUR")


@dataclass(frozen=True)
class Ids:
    account: int
    system: int


@pytest.fixture
def ids() -> Ids:
    """Derived inside the test, under its id namespace (TB_ID_NAMESPACE is set per test)."""
    return Ids(account=account_id_for(KEY), system=system_account_id(LEDGER))


def posted_on(account_id: int, transfers: list[Transfer]) -> tuple[int, int]:
    """The account's credits_posted and debits_posted after the transfers."""
    credits = sum(t.amount for t in transfers if t.credit_account_id == account_id)
    debits = sum(t.amount for t in transfers if t.debit_account_id == account_id)
    return credits, debits


def test_the_balance_formula_reads_available_spent_and_total_received_from_posted() -> None:
    balance = wallet_balance(KEY, credits_posted=1_300, debits_posted=300)

    assert balance.fields_minor() == (1_000, 300, 1_300)


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

    pair = opening_pair(
        legacy,
        wallet_seq=7,
        created_ms=1_700_000_000_000,
        account_id=ids.account,
        system_id=ids.system,
        ledger=LEDGER,
        opening_ts=100,
    )

    credits, debits = posted_on(ids.account, pair)
    assert wallet_balance(KEY, credits_posted=credits, debits_posted=debits) == legacy
    assert all(t.amount > 0 for t in pair)  # a zero side is left out, never posted as 0
    assert all(t.code == TRANSFER_CODE_OPENING_BALANCE for t in pair)
    assert all(t.flags == TransferFlags.IMPORTED and t.user_data_128 == 7 for t in pair)


def test_an_imported_wallet_account_keeps_the_wallet_flags_and_is_marked_imported(ids: Ids) -> None:
    account = imported_wallet_account(
        KEY, account_id=ids.account, ledger=LEDGER, code=7101, timestamp=42
    )

    assert account.flags == WALLET_ACCOUNT_FLAGS | AccountFlags.IMPORTED
    assert (account.id, account.code, account.timestamp) == (ids.account, 7101, 42)


def test_a_credit_moves_money_from_the_system_account_to_the_wallet(ids: Ids) -> None:
    transfer = credit_transfer("tx-1", ids.account, LEDGER, 500)

    assert (transfer.debit_account_id, transfer.credit_account_id) == (ids.system, ids.account)
    assert transfer.code == TRANSFER_CODE_CREDIT


def test_a_debit_takes_the_id_a_credit_on_the_same_id_would_have(ids: Ids) -> None:
    debit = debit_transfer("tx-1", ids.account, LEDGER, 500)

    assert debit.id == credit_transfer("tx-1", ids.account, LEDGER, 500).id
    assert (debit.debit_account_id, debit.credit_account_id) == (ids.account, ids.system)
    assert debit.code == TRANSFER_CODE_DEBIT


@pytest.mark.parametrize("voided_credit", [True, False])
def test_a_void_undoes_the_voided_transfer_and_points_at_it(voided_credit: bool, ids: Ids) -> None:
    voided = (credit_transfer if voided_credit else debit_transfer)(
        "tx-1", ids.account, LEDGER, 500
    )

    void = void_transfer(
        voided.id,
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
            voided_credit=voided_credit,
            tb_account_id=ids.account,
            ledger=LEDGER,
            amount_minor=500,
            attempt=1,
        ).id
    )


def test_a_limit_guarded_chain_links_the_transfer_to_a_probe_and_its_void() -> None:
    credit = credit_transfer("tx-1", account_id_for(KEY), LEDGER, 500)

    guarded, probe, probe_void = limit_guarded_chain(credit)

    assert credit.flags == TransferFlags.NONE  # the caller's transfer is left as it was
    assert (guarded.id, guarded.amount, guarded.flags) == (credit.id, 500, TransferFlags.LINKED)
    assert probe.flags == TransferFlags.LINKED | TransferFlags.PENDING
    assert probe_void.flags == TransferFlags.VOID_PENDING_TRANSFER
    assert probe_void.pending_id == probe.id
    assert probe.amount == probe_void.amount == 2**128 - 1 - BALANCE_MINOR_MAX
    assert probe.credit_account_id == probe_void.credit_account_id == credit.credit_account_id
    assert probe.debit_account_id == limit_probe_account(LEDGER, code=9).id
    assert {probe.code, probe_void.code} == {TRANSFER_CODE_LIMIT_PROBE}
    assert probe.user_data_128 == probe_void.user_data_128 == credit.id


def test_each_attempt_of_a_limit_guarded_chain_has_probe_ids_of_its_own() -> None:
    credit = credit_transfer("tx-1", account_id_for(KEY), LEDGER, 500)

    first, again, second = (
        limit_guarded_chain(credit),
        limit_guarded_chain(credit),
        limit_guarded_chain(credit, attempt=1),
    )

    assert [t.id for t in first] == [t.id for t in again]
    assert first[0].id == second[0].id
    assert {first[1].id, first[2].id}.isdisjoint({second[1].id, second[2].id})
