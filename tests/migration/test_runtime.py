"""The process runtime (migration/runtime.py, built by wallet_site/wiring.py): settings read
once when it is built, one of everything per runtime, and a loud failure without one."""

from __future__ import annotations

import pybreaker
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from domain.ids import IdSpace
from migration.runtime import install_process_runtime, process_runtime
from wallet_site.wiring import build_runtime


def test_asking_for_the_runtime_before_one_is_installed_fails_loudly() -> None:
    previous = install_process_runtime(None)
    try:
        with pytest.raises(ImproperlyConfigured, match="No process runtime is installed"):
            process_runtime()
    finally:
        install_process_runtime(previous)


def test_a_runtime_keeps_the_settings_it_was_built_with() -> None:
    with override_settings(TB_ID_NAMESPACE="tenant-a", WALLET_STORE="tigerbeetle"):
        runtime = build_runtime()

    assert runtime.scope.ids == IdSpace("tenant-a")
    assert runtime.wallet_store() is runtime.tigerbeetle
    assert runtime.tigerbeetle.scope == runtime.scope


def test_an_unknown_wallet_store_is_refused_when_the_runtime_is_built() -> None:
    with (
        override_settings(WALLET_STORE="redis"),
        pytest.raises(ImproperlyConfigured, match="WALLET_STORE must be one of"),
    ):
        build_runtime()


def test_each_runtime_has_a_read_breaker_of_its_own() -> None:
    first, second = build_runtime(), build_runtime()
    first.phased.breaker.open()

    assert first.phased.breaker.current_state == pybreaker.STATE_OPEN
    assert second.phased.breaker.current_state == pybreaker.STATE_CLOSED


def test_the_stores_outbox_and_scan_of_a_runtime_share_one_mongodb_database() -> None:
    runtime = build_runtime()

    assert runtime.mongo.database is runtime.mongo_database
    assert runtime.phased.outbox is runtime.outbox
    assert (
        runtime.phased.mongo is runtime.mongo and runtime.phased.tigerbeetle is runtime.tigerbeetle
    )


def test_each_test_runs_in_a_ledger_scope_of_its_own() -> None:
    """tests/conftest.py installs a runtime per test: its namespace names the test."""
    assert "test_each_test_runs_in_a_ledger_scope_of_its_own" in (
        process_runtime().scope.ids.namespace
    )
