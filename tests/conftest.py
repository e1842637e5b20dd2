"""Shared fixtures: the ledger backends under test."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
import tigerbeetle as tb
from django.conf import settings
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from domain.ids import IdSpace
from domain.wallets import WalletStore
from ledger.backends import LedgerBackend, get_ledger_backend
from ledger.tb_model import LedgerScope

# Hypothesis's health check on how fast inputs are generated measures the machine, not the
# code: on a loaded CI machine a plain strategy once took 1 s for 8 inputs and failed a test
# of id derivation. Every other health check stays.
hypothesis_settings.register_profile("wallet", suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("wallet")

if TYPE_CHECKING:  # the models and the test clients load once Django is set up
    from django.contrib.auth.models import AbstractUser
    from django.test import Client
    from rest_framework.test import APIClient

BACKEND_NAMES = ["engine", "tigerbeetle"]
STORE_NAMES = ["mongo", "tigerbeetle"]


RUN_TOKEN = uuid.uuid4().hex[:12]
FREE_CODE_ATTEMPTS = 64
CLIENT_CLOSE_WAIT_S = 5.0


# CI runs the suite twice (.ci/run sets CI_PASS): on the embedded engine, then on a real
# server. A case whose parameters keep it off the cluster (the MongoDB store, the engine
# backend) answers the same in both passes, so the second one leaves it out. The first leaves
# the second what is about the real server whichever backend the pass has: the schema
# contract's TigerBeetle run (two minutes on its own), `make run`'s local server (TB_BINARY),
# and phase 3's reads against a server the test starts and stops itself (TB_BINARY too). The
# browser tests run in the first pass only: they drive the same back-office views through
# Chromium as tests/backoffice/ does through Django's client, which runs in both passes, and
# they were the real-server pass's largest share after the fault matrix (the passes run at
# once on two cores: the longer one is CI's time). `make test` alone (no CI_PASS) runs
# everything.
_STORE_PARAMS = ("wallet_store", "committed_wallet_store", "store", "server")
_OFF_THE_CLUSTER = {"ledger_backend": "engine", **dict.fromkeys(_STORE_PARAMS, "mongo")}
_CONTRACT_ON_THE_SERVER = "tests/api/contract/test_schema_contract.py"
_BROWSER = "tests/browser/"
_OWN_SERVERS = (
    "tests/ledger/test_local_tigerbeetle.py",
    "tests/migration/test_read_retries_on_a_real_server.py",
)


def _left_to_the_other_pass(item: pytest.Item, ci_pass: str) -> bool:
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if ci_pass == "real-server":
        return item.nodeid.startswith(_BROWSER) or any(
            params.get(name) == value for name, value in _OFF_THE_CLUSTER.items()
        )
    if ci_pass == "embedded":
        return item.nodeid.startswith(_OWN_SERVERS) or (
            item.nodeid.startswith(_CONTRACT_ON_THE_SERVER) and params.get("store") == "tigerbeetle"
        )
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ci_pass = os.environ.get("CI_PASS", "")
    if ci_pass not in ("", "embedded", "real-server"):
        raise pytest.UsageError(f"CI_PASS={ci_pass!r}: expected embedded or real-server")
    left = [item for item in items if _left_to_the_other_pass(item, ci_pass)]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = [item for item in items if not _left_to_the_other_pass(item, ci_pass)]


def real_cluster_configured() -> bool:
    return bool(settings.TB_ADDRESSES)


def make_backend(name: str) -> LedgerBackend:
    """A backend under test. The real cluster is the process's one client (one session per
    process, as in production), only when TB_ADDRESSES names a cluster; the caller provides
    database access for the engine."""
    if name == "tigerbeetle":
        if not real_cluster_configured():
            pytest.skip("TB_ADDRESSES is not set: no TigerBeetle cluster to run the real client on")
        return get_ledger_backend()
    from ledger.engine.backend import EngineBackend

    return EngineBackend()


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hasher() -> Iterator[None]:
    """Passwords hashed in microseconds, not PBKDF2's 0.3 s a hash: most tests make someone
    with a password and sign them in, and the hasher is not what they check (it was a
    quarter of a back-office test's time). A process a test starts keeps production's
    hashers; it signs in only people it made itself."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(scope="session", autouse=True)
def _close_the_process_ledger_client() -> Iterator[None]:
    """The suite's one TigerBeetle client (TigerBeetleBackend.for_process) is closed when the
    session ends, not left to the interpreter's exit."""
    yield
    from ledger.backends.tigerbeetle_client import TigerBeetleBackend

    TigerBeetleBackend.close_process_backend()


def leaked_ledger_clients() -> list[object]:
    """Open TigerBeetle clients other than the process backend's one (the client library keeps
    a registry of live clients; close() removes a client from it)."""
    from tigerbeetle.client import Client

    from ledger.backends.tigerbeetle_client import TigerBeetleBackend

    process_backend = TigerBeetleBackend._process_instance
    own = process_backend._client if process_backend is not None else None
    return [client for client in list(Client._clients.values()) if client is not own]


@pytest.fixture(autouse=True)
def _no_leaked_ledger_clients() -> Iterator[None]:
    """Each client holds one of the cluster's 32 sessions until closed: a test (and its
    fixtures) closes every client it opens. A client discarded after a timeout closes on a
    thread of its own, so it gets a moment."""
    yield
    deadline = time.monotonic() + CLIENT_CLOSE_WAIT_S
    while leaked_ledger_clients() and time.monotonic() < deadline:
        time.sleep(0.05)
    leaked = leaked_ledger_clients()
    assert not leaked, f"{len(leaked)} TigerBeetle client(s) left open"


@pytest.fixture(autouse=True)
def _ledger_scope_of_its_own(request: pytest.FixtureRequest) -> Iterator[None]:
    """A real cluster keeps every account and transfer of every test and every run, while the
    test database rolls back. So each test derives its ids in a namespace of its own (two tests
    using client "alice" or transaction "tx-1" never meet), and on a real cluster it also marks
    its wallet accounts with a code no account on the cluster has yet, as another application
    sharing the cluster would: reconciliation then sees this test's accounts only. The test
    runs on a process runtime of its own in that scope (`ledger_scope()` reads it), built as
    the wiring builds a deployment's, and the process's own runtime is put back afterwards.

    Tests on a real Celery worker keep the process's runtime, whose scope the worker shares
    (CI sets TB_ID_NAMESPACE for both); they use fresh client and transaction ids instead."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    from migration.runtime import install_process_runtime
    from wallet_site.wiring import build_runtime, scope_from_settings

    settled = scope_from_settings()
    prefix = settled.ids.namespace or "test"
    codes = settled.codes
    if real_cluster_configured():
        codes = replace(codes, wallet=unused_wallet_account_code(get_ledger_backend()))
    scope = LedgerScope(ids=IdSpace(f"{prefix}:{RUN_TOKEN}:{request.node.nodeid}"), codes=codes)
    runtime = build_runtime(scope=scope)
    previous = install_process_runtime(runtime)
    try:
        yield
    finally:
        install_process_runtime(previous)
        runtime.close()


def ledger_scope() -> LedgerScope:
    """The running test's ledger scope: its id namespace and account codes."""
    from migration.runtime import process_runtime

    return process_runtime().scope


def unused_wallet_account_code(backend: LedgerBackend) -> int:
    """A random account code that no account on the cluster carries yet."""
    reserved = {
        settings.TB_WALLET_ACCOUNT_CODE,
        settings.TB_SYSTEM_ACCOUNT_CODE,
        settings.TB_LIMIT_ACCOUNT_CODE,
    }
    for _ in range(FREE_CODE_ATTEMPTS):
        code = secrets.randbelow(2**16 - 1000) + 1000
        if code in reserved:
            continue
        taken = backend.query_accounts(
            tb.QueryFilter(
                user_data_128=0,
                user_data_64=0,
                user_data_32=0,
                ledger=0,
                code=code,
                timestamp_min=0,
                timestamp_max=0,
                limit=1,
                flags=tb.QueryFilterFlags.NONE,
            )
        )
        if not taken:
            return code
    raise RuntimeError(
        f"no unused account code in {FREE_CODE_ATTEMPTS} tries: format a new cluster"
    )


@pytest.fixture(params=BACKEND_NAMES)
def ledger_backend(request: pytest.FixtureRequest, db: None) -> LedgerBackend:
    """Each behaviour test runs once per backend: the embedded engine and the real client."""
    return make_backend(request.param)


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """MONGO_URL when set (CI's server), else an embedded secantusdb on a free port."""
    configured = os.environ.get("MONGO_URL", "")
    if configured:
        yield configured
        return
    from wallet_site.embedded_mongo import start_embedded_mongo

    server = start_embedded_mongo()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Test databases roll back; the registry cache must not remember rolled-back rows."""
    from django.core.cache import cache

    from registry.accounts import forget_local_mappings

    cache.clear()
    forget_local_mappings()
    yield


@pytest.fixture
def mongo_database_name(mongo_url: str) -> Iterator[str]:
    """A fresh MongoDB database per test, dropped afterwards."""
    import pymongo

    name = f"wallet_test_{uuid.uuid4().hex[:12]}"
    yield name
    client = pymongo.MongoClient(mongo_url)
    client.drop_database(name)
    client.close()


def build_store(name: str, request: pytest.FixtureRequest) -> WalletStore:
    if name == "mongo":
        from ledger.stores.mongo_database import MongoDatabase
        from ledger.stores.mongo_store import MongoWalletStore
        from migration.outbox import LOG_MARKS

        return MongoWalletStore(
            MongoDatabase(
                request.getfixturevalue("mongo_url"),
                name=request.getfixturevalue("mongo_database_name"),
            ),
            marks=LOG_MARKS,
        )
    from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore

    return TigerBeetleWalletStore(
        backend=request.getfixturevalue("wallet_ledger_backend"), scope=ledger_scope()
    )


@pytest.fixture
def wallet_ledger_backend() -> LedgerBackend:
    """The ledger backend behind the TigerBeetle store: the real cluster when TB_ADDRESSES
    is set, else the embedded engine on the test database."""
    return make_backend("tigerbeetle" if real_cluster_configured() else "engine")


@pytest.fixture(params=STORE_NAMES)
def wallet_store(request: pytest.FixtureRequest, db: None) -> WalletStore:
    """Each wallet behaviour once per store."""
    return build_store(request.param, request)


@pytest.fixture(params=STORE_NAMES)
def committed_wallet_store(request: pytest.FixtureRequest, transactional_db: None) -> WalletStore:
    """Each store with real commits, for tests where threads share the database."""
    return build_store(request.param, request)


@pytest.fixture
def admin_client(client: Client, admin_user: AbstractUser) -> Client:
    """pytest-django's superuser client, signed in as an enrolled superuser is: with the
    second factor the admin asks of every superuser (STAFF_2FA_REQUIRED stays on)."""
    from tests.second_factor import signed_in_with_second_factor

    return signed_in_with_second_factor(client, admin_user)


# What token_api_client() grants by default: the five wallet operations and voids.
WALLET_API_PERMISSIONS = (
    "registry.read_wallets",
    "registry.credit_wallets",
    "registry.debit_wallets",
    "registry.void_wallettransfer",
)


def grant(user: AbstractUser, *permissions: str) -> None:
    """Give a user model permissions by their "app_label.codename" names."""
    from django.contrib.auth.models import Permission

    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


def api_client_for(user: AbstractUser) -> APIClient:
    """A REST client carrying a fresh API token (knox) of `user`."""
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def permitted_user(permissions: tuple[str, ...] = WALLET_API_PERMISSIONS) -> AbstractUser:
    """A fresh user holding `permissions` (by default the five wallet operations and voids)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(f"api-{uuid.uuid4().hex[:8]}")
    grant(user, *permissions)
    return user


def api_token(permissions: tuple[str, ...] = WALLET_API_PERMISSIONS) -> str:
    """A fresh user's API token (knox), for clients outside Django's test client."""
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=permitted_user(permissions))
    return str(token)


def token_api_client(permissions: tuple[str, ...] = WALLET_API_PERMISSIONS) -> APIClient:
    """A REST client signed in with a fresh user's token (the API's authentication), the
    user holding `permissions` (by default the five wallet operations and voids)."""
    return api_client_for(permitted_user(permissions))
