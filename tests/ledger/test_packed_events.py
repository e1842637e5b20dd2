"""Transfers and accounts reach the native client byte for byte as the library would send
them (`packed_events`), and whatever the library refuses it still refuses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import tigerbeetle as tb
from hypothesis import given
from hypothesis import strategies as st
from tigerbeetle import bindings

from ledger.backends.tigerbeetle_client import DeadlineClient, packed_events

U128 = st.integers(min_value=0, max_value=2**128 - 1)
U64 = st.integers(min_value=0, max_value=2**64 - 1)
U32 = st.integers(min_value=0, max_value=2**32 - 1)
U16 = st.integers(min_value=0, max_value=2**16 - 1)

transfers = st.builds(
    tb.Transfer,
    id=U128,
    debit_account_id=U128,
    credit_account_id=U128,
    amount=U128,
    pending_id=U128,
    user_data_128=U128,
    user_data_64=U64,
    user_data_32=U32,
    timeout=U32,
    ledger=U32,
    code=U16,
    flags=U16.map(tb.TransferFlags),
    timestamp=U64,
)
accounts = st.builds(
    tb.Account,
    id=U128,
    debits_pending=U128,
    debits_posted=U128,
    credits_pending=U128,
    credits_posted=U128,
    user_data_128=U128,
    user_data_64=U64,
    user_data_32=U32,
    ledger=U32,
    code=U16,
    flags=U16.map(tb.AccountFlags),
    timestamp=U64,
)


def library_bytes(c_type: Any, events: Sequence[Any]) -> bytes:
    return bytes((c_type * len(events))(*map(c_type.from_param, events)))


@given(st.lists(transfers, min_size=1, max_size=5))
def test_transfers_are_packed_exactly_as_the_library_packs_them(events: list[tb.Transfer]) -> None:
    packed = packed_events(bindings.CTransfer, events)
    assert packed is not None
    assert bytes(packed) == library_bytes(bindings.CTransfer, events)


@given(st.lists(accounts, min_size=1, max_size=5))
def test_accounts_are_packed_exactly_as_the_library_packs_them(events: list[tb.Account]) -> None:
    packed = packed_events(bindings.CAccount, events)
    assert packed is not None
    assert bytes(packed) == library_bytes(bindings.CAccount, events)


@pytest.mark.parametrize(
    "bad",
    [
        tb.Transfer(id=2**128),
        tb.Transfer(id=1, amount=-1),
        tb.Transfer(id=1, ledger=2**32),
        tb.Transfer(id=1, flags=2**16),  # type: ignore[arg-type]  # over u16 on purpose
    ],
    ids=["id-too-large", "negative-amount", "ledger-too-large", "flags-too-large"],
)
def test_an_event_out_of_range_is_left_to_the_library(bad: tb.Transfer) -> None:
    assert packed_events(bindings.CTransfer, [tb.Transfer(id=1), bad]) is None


def test_the_library_still_refuses_an_out_of_range_transfer_sent_through_the_client() -> None:
    client = DeadlineClient.__new__(DeadlineClient)  # never connects: packing comes first
    with pytest.raises(tb.IntegerOverflowError):
        client._acquire_packet(
            bindings.Operation.CREATE_TRANSFERS,
            [tb.Transfer(id=2**128)],
            bindings.CTransfer,
            bindings.CCreateTransferResult,
        )


def test_events_of_other_kinds_are_left_to_the_library() -> None:
    assert packed_events(bindings.CAccountFilter, [object()]) is None
