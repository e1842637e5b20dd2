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
