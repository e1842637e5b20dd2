"""Wallet keys of clients inside or outside a dual-write share, for the share's tests."""

from __future__ import annotations

from decimal import Decimal

from domain.ids import WalletKey
from flags.phases import in_share
from tests.migration.conftest import new_key

TRIES_MAX = 10_000


def key_inside(percent: Decimal | int, *, above: Decimal | int = 0) -> WalletKey:
    """A new wallet of a client inside a share of `percent` but outside one of `above`."""
    for _ in range(TRIES_MAX):
        key = new_key()
        if in_share(key.client_id, Decimal(percent)) and not in_share(
            key.client_id, Decimal(above)
        ):
            return key
    raise AssertionError(f"no client between {above}% and {percent}% in {TRIES_MAX} tries")


def key_outside(percent: Decimal | int) -> WalletKey:
    """A new wallet of a client outside a share of `percent`."""
    return key_inside(100, above=percent)
