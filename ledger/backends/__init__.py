"""Ledger backends: the real TigerBeetle client when TB_ADDRESSES is set, else the embedded
engine."""

from __future__ import annotations

from django.conf import settings

from ledger.backends.base import BATCH_EVENTS_MAX, LedgerBackend, LedgerUnavailable

__all__ = ["BATCH_EVENTS_MAX", "LedgerBackend", "LedgerUnavailable", "get_ledger_backend"]


def get_ledger_backend() -> LedgerBackend:
    """The process's ledger backend, chosen by settings."""
    if settings.TB_ADDRESSES:
        # Cycle breaker: ledger.backends.tigerbeetle_client -> ledger.backends (this package).
        from ledger.backends.tigerbeetle_client import TigerBeetleBackend  # noqa: PLC0415

        return TigerBeetleBackend.for_process(
            cluster_id=settings.TB_CLUSTER_ID, addresses=settings.TB_ADDRESSES
        )
    # Cycle breaker: ledger.engine.backend -> ledger.backends (this package, via .base).
    from ledger.engine.backend import EngineBackend  # noqa: PLC0415

    return EngineBackend()
