"""A wallet key crosses to a Celery task as JSON: the same bytes as ever, so a task queued by
a process of the previous release is read alike, and the same key read back."""

from __future__ import annotations

import json

import pytest

from domain.ids import WalletKey
from migration.routing import key_from_dict, key_to_dict


@pytest.mark.parametrize(
    ("key", "wire"),
    [
        (
            WalletKey("alice", "USA", "USD"),
            '{"client_id": "alice", "country": "USA", "currency": "USD", "issuer": null}',
        ),
        (
            WalletKey("alice", "DEU", "EUR", "visa"),
            '{"client_id": "alice", "country": "DEU", "currency": "EUR", "issuer": "visa"}',
        ),
    ],
)
def test_a_key_is_sent_as_it_always_was_and_read_back(key: WalletKey, wire: str) -> None:
    assert json.dumps(key_to_dict(key)) == wire
    assert key_from_dict(json.loads(wire)) == key


def test_an_empty_or_missing_issuer_reads_as_none() -> None:
    three = {"client_id": "alice", "country": "USA", "currency": "USD"}
    assert key_from_dict({**three, "issuer": ""}) == WalletKey("alice", "USA", "USD")
    assert key_from_dict(dict(three)) == WalletKey("alice", "USA", "USD")
