"""Account set-up on TigerBeetle (ledger/wallet_accounts.py): the deployment's account codes,
a wallet's accounts, reservation and registry row, and what it raises toward its callers."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from django.test import override_settings
from tigerbeetle import CreateAccountStatus

from domain.ids import WalletKey, account_id_for, limit_account_id, limit_reservation_transfer_id
from domain.money import ledger_for_currency
from ledger.backends import LedgerBackend, LedgerUnavailable
from ledger.tb_model import AccountCodes, wallet_account
from ledger.wallet_accounts import WalletAccounts, account_codes
from registry.accounts import find_account
from registry.models import WalletAccount


def new_key() -> WalletKey:
    return WalletKey(client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD")


class Unreachable:
    """A ledger that never answers."""

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            raise LedgerUnavailable("connection refused (test: cluster down)")

        return call


def test_the_account_codes_come_from_settings_and_follow_an_override_at_once() -> None:
    with override_settings(
        TB_WALLET_ACCOUNT_CODE=4001, TB_SYSTEM_ACCOUNT_CODE=4002, TB_LIMIT_ACCOUNT_CODE=4003
    ):
        assert account_codes() == AccountCodes(wallet=4001, system=4002, limit=4003)
        with override_settings(TB_WALLET_ACCOUNT_CODE=4011):
            assert account_codes().wallet == 4011


def test_account_codes_cannot_be_changed_once_read() -> None:
    codes = account_codes()
    with pytest.raises(dataclasses.FrozenInstanceError):
        codes.wallet = 1  # type: ignore[misc]


def test_a_new_wallet_gets_its_accounts_reservation_and_row_once(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    accounts = WalletAccounts(wallet_ledger_backend)
    key = new_key()

    registered = accounts.registered_account(key)

    assert registered == find_account(key)
    assert registered.tb_account_id == account_id_for(key)
    assert registered.limit_reserved is True
    assert wallet_ledger_backend.lookup_accounts([limit_account_id(registered.tb_account_id)])
    assert wallet_ledger_backend.lookup_transfers(
        [limit_reservation_transfer_id(registered.tb_account_id)]
    )
    assert accounts.registered_account(key) == registered
    assert accounts.ensure_wallet_account(key) == registered.tb_account_id
    assert WalletAccount.objects.filter(client_id=key.client_id).count() == 1


def test_a_wallet_set_up_without_reservation_is_registered_unreserved(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    key = new_key()

    account_id = WalletAccounts(wallet_ledger_backend).ensure_wallet_account(
        key, reserve_limit=False
    )

    registered = find_account(key)
    assert registered is not None and registered.tb_account_id == account_id
    assert registered.limit_reserved is False
    assert wallet_ledger_backend.lookup_accounts([limit_account_id(account_id)])
    assert wallet_ledger_backend.lookup_transfers([limit_reservation_transfer_id(account_id)]) == []


def test_an_account_id_another_wallet_holds_bumps_the_nonce(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    key, other = new_key(), new_key()
    ledger = ledger_for_currency(key.currency)
    taken = wallet_account(
        other, account_id=account_id_for(key, 0), ledger=ledger, code=account_codes().wallet
    )
    assert wallet_ledger_backend.create_accounts([taken])[0].status == CreateAccountStatus.CREATED

    account_id = WalletAccounts(wallet_ledger_backend).ensure_wallet_account(key)

    assert account_id == account_id_for(key, 1)
    assert WalletAccount.objects.get(client_id=key.client_id).nonce == 1


def test_the_codes_given_to_the_constructor_are_asked_once_a_set_up(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    mine = account_codes()
    asked: list[AccountCodes] = []

    def given() -> AccountCodes:
        asked.append(mine)
        return mine

    account_id = WalletAccounts(wallet_ledger_backend, codes=given).ensure_wallet_account(new_key())

    (account,) = wallet_ledger_backend.lookup_accounts([account_id])
    assert account.code == mine.wallet
    assert asked == [mine]


def test_a_ledger_that_does_not_answer_raises_ledger_unavailable_and_registers_nothing(
    db: None,
) -> None:
    key = new_key()

    with pytest.raises(LedgerUnavailable):
        WalletAccounts(Unreachable()).registered_account(key)  # type: ignore[arg-type]

    assert find_account(key) is None
