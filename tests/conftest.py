"""Shared fixtures: the ledger backends under test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from ledger.backends.base import LedgerBackend
from ledger.wallets import WalletStore

BACKEND_NAMES = ["engine", "tigerbeetle"]
STORE_NAMES = ["mongo", "tigerbeetle"]


def make_backend(name: str) -> LedgerBackend:
    """A backend under test; the real cluster only when TB_ADDRESSES names one. The caller
    provides database access for the engine."""
    if name == "tigerbeetle":
        addresses = os.environ.get("TB_ADDRESSES", "")
        if not addresses:
            pytest.skip("TB_ADDRESSES is not set: no TigerBeetle cluster to run the real client on")
        from ledger.backends.tigerbeetle_client import TigerBeetleBackend

        return TigerBeetleBackend(
            cluster_id=int(os.environ.get("TB_CLUSTER_ID", "0")), addresses=addresses
        )
    from ledger.engine.backend import EngineBackend

    return EngineBackend()


@pytest.fixture(params=BACKEND_NAMES)
def ledger_backend(request: pytest.FixtureRequest, db: None) -> Iterator[LedgerBackend]:
    """Each behaviour test runs once per backend: the embedded engine and the real client."""
    backend = make_backend(request.param)
    yield backend
    if request.param == "tigerbeetle":
        backend.close()


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
    from django.core.cache import caches

    for alias in ("default", "registry_local"):
        caches[alias].clear()
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
        from ledger.stores.mongo_store import MongoWalletStore

        return MongoWalletStore(
            request.getfixturevalue("mongo_url"),
            database=request.getfixturevalue("mongo_database_name"),
        )
    from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore

    return TigerBeetleWalletStore(backend=request.getfixturevalue("wallet_ledger_backend"))


@pytest.fixture
def wallet_ledger_backend() -> LedgerBackend:
    """The ledger backend behind the TigerBeetle store: the real cluster when TB_ADDRESSES
    is set, else the embedded engine on the test database."""
    return make_backend("tigerbeetle" if os.environ.get("TB_ADDRESSES") else "engine")


@pytest.fixture(params=STORE_NAMES)
def wallet_store(request: pytest.FixtureRequest, db: None) -> WalletStore:
    """Each wallet behaviour once per store."""
    return build_store(request.param, request)


@pytest.fixture(params=STORE_NAMES)
def committed_wallet_store(request: pytest.FixtureRequest, transactional_db: None) -> WalletStore:
    """Each store with real commits, for tests where threads share the database."""
    return build_store(request.param, request)


def token_api_client() -> object:
    """A REST client signed in with a fresh user's token (the API's authentication)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    user = get_user_model().objects.create_user(f"api-{uuid.uuid4().hex[:8]}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client
