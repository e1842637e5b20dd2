"""Shared fixtures: the ledger backends under test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ledger.backends.base import LedgerBackend

BACKEND_NAMES = ["engine", "tigerbeetle"]


def make_backend(name: str, request: pytest.FixtureRequest) -> LedgerBackend:
    """A backend under test; the real cluster only when TB_ADDRESSES names one."""
    if name == "tigerbeetle":
        addresses = os.environ.get("TB_ADDRESSES", "")
        if not addresses:
            pytest.skip("TB_ADDRESSES is not set: no TigerBeetle cluster to run the real client on")
        from ledger.backends.tigerbeetle_client import TigerBeetleBackend

        return TigerBeetleBackend(
            cluster_id=int(os.environ.get("TB_CLUSTER_ID", "0")), addresses=addresses
        )
    request.getfixturevalue("db")
    from ledger.engine.backend import EngineBackend

    return EngineBackend()


@pytest.fixture(params=BACKEND_NAMES)
def ledger_backend(request: pytest.FixtureRequest) -> Iterator[LedgerBackend]:
    """Each behaviour test runs once per backend: the embedded engine and the real client."""
    backend = make_backend(request.param, request)
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
