"""Account set-up on TigerBeetle (ledger/wallet_accounts.py): the deployment's account codes,
a wallet's accounts, reservation and registry row, and what it raises toward its callers."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import replace

import pytest
from django.test import override_settings
from tigerbeetle import CreateAccountStatus

from domain.ids import IdSpace, WalletKey
from domain.money import ledger_for_currency
from ledger.backends import LedgerBackend, LedgerUnavailable
from ledger.tb_model import AccountCodes, LedgerScope, deployment_stamp_of, wallet_account
from ledger.wallet_accounts import WalletAccounts
from registry.accounts import find_account
from registry.models import WalletAccount
from tests.conftest import ledger_scope
from tests.ledger.builders import UnreachableLedger
from wallet_site.wiring import scope_from_settings


def new_key() -> WalletKey:
    return WalletKey(client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD")


def test_the_wiring_reads_the_ledger_scope_from_the_settings() -> None:
    with override_settings(
        TB_ID_NAMESPACE="tenant-a",
        TB_WALLET_ACCOUNT_CODE=4001,
        TB_SYSTEM_ACCOUNT_CODE=4002,
        TB_LIMIT_ACCOUNT_CODE=4003,
    ):
        scope = scope_from_settings()

    assert scope == LedgerScope(
        ids=IdSpace("tenant-a"), codes=AccountCodes(wallet=4001, system=4002, limit=4003)
    )


def test_account_codes_cannot_be_changed_once_read() -> None:
    codes = ledger_scope().codes
    with pytest.raises(dataclasses.FrozenInstanceError):
        codes.wallet = 1  # type: ignore[misc]  # frozen: the refusal is the test


def test_a_new_wallet_gets_its_accounts_reservation_and_row_once(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    accounts = WalletAccounts(wallet_ledger_backend, scope=ledger_scope())
    key = new_key()

    registered = accounts.registered_account(key)

    assert registered == find_account(key)
    assert registered.tb_account_id == ledger_scope().ids.account_id(key)
    assert registered.limit_reserved is True
    assert wallet_ledger_backend.lookup_accounts(
        [ledger_scope().ids.limit_account_id(registered.tb_account_id)]
    )
    assert wallet_ledger_backend.lookup_transfers(
        [ledger_scope().ids.limit_reservation_transfer_id(registered.tb_account_id)]
    )
    assert accounts.registered_account(key) == registered
    assert accounts.ensure_wallet_account(key) == registered.tb_account_id
    assert WalletAccount.objects.filter(client_id=key.client_id).count() == 1


def test_a_wallet_set_up_without_reservation_is_registered_unreserved(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    key = new_key()

    account_id = WalletAccounts(wallet_ledger_backend, scope=ledger_scope()).ensure_wallet_account(
        key, reserve_limit=False
    )

    registered = find_account(key)
    assert registered is not None and registered.tb_account_id == account_id
    assert registered.limit_reserved is False
    assert wallet_ledger_backend.lookup_accounts([ledger_scope().ids.limit_account_id(account_id)])
    assert (
        wallet_ledger_backend.lookup_transfers(
            [ledger_scope().ids.limit_reservation_transfer_id(account_id)]
        )
        == []
    )


def test_an_account_id_another_wallet_holds_bumps_the_nonce(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    key, other = new_key(), new_key()
    ledger = ledger_for_currency(key.currency)
    taken = wallet_account(
        other,
        account_id=ledger_scope().ids.account_id(key, nonce=0),
        ledger=ledger,
        scope=ledger_scope(),
    )
    assert wallet_ledger_backend.create_accounts([taken])[0].status == CreateAccountStatus.CREATED

    account_id = WalletAccounts(wallet_ledger_backend, scope=ledger_scope()).ensure_wallet_account(
        key
    )

    assert account_id == ledger_scope().ids.account_id(key, nonce=1)
    assert WalletAccount.objects.get(client_id=key.client_id).nonce == 1


def test_a_wallet_account_carries_its_deployments_stamp_above_its_country(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    key = new_key()

    account_id = WalletAccounts(wallet_ledger_backend, scope=ledger_scope()).ensure_wallet_account(
        key
    )

    (account,) = wallet_ledger_backend.lookup_accounts([account_id])
    assert account.user_data_32 & 0x3FF == 840  # USA
    assert deployment_stamp_of(account) == ledger_scope().ids.deployment_stamp() != 0


def test_an_account_created_before_stamps_is_kept_when_its_registry_row_was_lost(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    key = new_key()
    ledger = ledger_for_currency(key.currency)
    stamped = wallet_account(
        key, account_id=ledger_scope().ids.account_id(key), ledger=ledger, scope=ledger_scope()
    )
    unstamped = replace(stamped, user_data_32=840)
    assert wallet_ledger_backend.create_accounts([unstamped])[0].status == (
        CreateAccountStatus.CREATED
    )

    account_id = WalletAccounts(wallet_ledger_backend, scope=ledger_scope()).ensure_wallet_account(
        key
    )

    assert account_id == stamped.id
    assert WalletAccount.objects.get(client_id=key.client_id).nonce == 0


def test_a_wallet_is_set_up_in_the_scope_it_is_given(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    """Another deployment's scope on the same cluster: its own ids and its own codes."""
    mine = ledger_scope()
    other = LedgerScope(
        ids=IdSpace(f"{mine.ids.namespace}:other"),
        codes=replace(mine.codes, wallet=mine.codes.wallet - 1, limit=mine.codes.limit - 1),
    )
    key = new_key()

    account_id = WalletAccounts(wallet_ledger_backend, scope=other).ensure_wallet_account(key)

    assert account_id == other.ids.account_id(key) != mine.ids.account_id(key)
    (account,) = wallet_ledger_backend.lookup_accounts([account_id])
    (limit_account,) = wallet_ledger_backend.lookup_accounts(
        [other.ids.limit_account_id(account_id)]
    )
    assert (account.code, limit_account.code) == (other.codes.wallet, other.codes.limit)


def test_a_ledger_that_does_not_answer_raises_ledger_unavailable_and_registers_nothing(
    db: None,
) -> None:
    key = new_key()

    with pytest.raises(LedgerUnavailable):
        WalletAccounts(UnreachableLedger(), scope=ledger_scope()).registered_account(key)

    assert find_account(key) is None
