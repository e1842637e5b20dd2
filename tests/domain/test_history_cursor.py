"""A history cursor names its point by transaction, void mark or hold event, so either store
reads the other's; anything else is InvalidCursor."""

from __future__ import annotations

import base64
import json

import pytest

from domain import errors
from domain.history import PointKind, PointRef, decode_cursor, encode_cursor, wallet_fingerprint
from domain.ids import WalletKey

KEY = WalletKey(client_id="client-1", country="USA", currency="USD", issuer=None)


@pytest.mark.parametrize(
    "ref",
    [
        PointRef(transaction_id="tx-1", void=False),
        PointRef(transaction_id="tx-1", void=True),
        PointRef(transaction_id="hold-1", void=False, hold_event=PointKind.HOLD),
        PointRef(transaction_id="hold-1", void=False, hold_event=PointKind.EXPIRE),
    ],
)
def test_a_cursor_reads_back_as_the_point_it_names(ref: PointRef) -> None:
    assert decode_cursor(KEY, encode_cursor(KEY, ref)) == ref


@pytest.mark.parametrize("event", ["credit", "opening_balance", "held", True, ["hold"], {"k": 1}])
def test_a_cursor_naming_an_event_no_hold_has_is_invalid(event: object) -> None:
    body = {"v": 1, "w": wallet_fingerprint(KEY), "t": "hold-1", "hold": event}
    token = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")

    with pytest.raises(errors.InvalidCursor):
        decode_cursor(KEY, token)
