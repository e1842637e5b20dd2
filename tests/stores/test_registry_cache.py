"""The registry's key -> account cache: the process's own copy answers before the shared one."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from domain.ids import WalletKey
from registry import accounts as account_registry

pytestmark = pytest.mark.django_db

KEY = WalletKey("cache-client", "USA", "USD")


def test_a_wallet_read_once_is_found_again_without_a_query_or_the_shared_cache(
    django_assert_num_queries,
) -> None:
    account_registry.register_account(KEY, tb_account_id=0xABC, ledger=840, nonce=0)
    account_registry.find_account(KEY)
    caches["default"].clear()  # only the process's own copy is left

    with django_assert_num_queries(0):
        found = account_registry.find_account(KEY)

    assert found is not None and (found.tb_account_id, found.ledger) == (0xABC, 840)


def test_forgetting_a_wallet_drops_the_process_copy_too(django_assert_num_queries) -> None:
    account_registry.register_account(KEY, tb_account_id=0xABC, ledger=840, nonce=0)
    account_registry.forget(KEY)

    with django_assert_num_queries(1):
        found = account_registry.find_account(KEY)

    assert found is not None and found.tb_account_id == 0xABC


def forget_everywhere(keys: list[WalletKey]) -> None:
    for key in keys:
        account_registry.forget(key)


def test_many_wallets_neither_cache_holds_are_read_in_one_query(
    django_assert_num_queries,
) -> None:
    keys = [WalletKey(f"many-{n}", "USA", "USD") for n in range(40)]
    for n, key in enumerate(keys):
        account_registry.register_account(key, tb_account_id=0x1000 + n, ledger=840, nonce=0)
    forget_everywhere(keys)
    unknown = WalletKey("many-unknown", "USA", "USD")

    with django_assert_num_queries(1):
        found = account_registry.find_accounts([*keys, unknown])

    assert {key: registered.tb_account_id for key, registered in found.items()} == {
        key: 0x1000 + n for n, key in enumerate(keys)
    }


def test_wallets_found_together_are_found_again_alone_without_a_query(
    django_assert_num_queries,
) -> None:
    keys = [WalletKey(f"again-{n}", "USA", "EUR", issuer="bank") for n in range(3)]
    for n, key in enumerate(keys):
        account_registry.register_account(key, tb_account_id=0x2000 + n, ledger=978, nonce=0)
    forget_everywhere(keys)
    account_registry.find_accounts(keys)

    with django_assert_num_queries(0):
        found = [account_registry.find_account(key) for key in keys]

    assert [registered.tb_account_id for registered in found if registered] == [
        0x2000,
        0x2001,
        0x2002,
    ]


def test_wallets_are_found_together_from_a_generator_too() -> None:
    key = WalletKey("generated", "USA", "USD")
    account_registry.register_account(key, tb_account_id=0x3000, ledger=840, nonce=0)

    found = account_registry.find_accounts(k for k in [key])

    assert found[key].tb_account_id == 0x3000
