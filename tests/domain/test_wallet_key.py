"""The wallet key's fields, named once: the forms the registry, a task's argument, a query
string and a MongoDB document hold them in, and back."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ids import WalletKey

keys = st.builds(
    WalletKey,
    st.text(max_size=20),
    st.sampled_from(["USA", "DEU"]),
    st.sampled_from(["USD", "EUR"]),
    st.one_of(st.none(), st.text(max_size=20)),
)
MONGO_NAMES = ("client_id", "country", "currency", "issuer_type_identifier")


def test_fields_names_the_keys_fields_in_their_order() -> None:
    assert tuple(field.name for field in dataclasses.fields(WalletKey)) == WalletKey.FIELDS


def test_a_task_argument_keeps_none_for_no_issuer() -> None:
    assert WalletKey("alice", "USA", "USD").as_dict() == {
        "client_id": "alice",
        "country": "USA",
        "currency": "USD",
        "issuer": None,
    }
    assert WalletKey("alice", "USA", "USD", "visa").as_dict()["issuer"] == "visa"
    assert list(WalletKey("alice", "USA", "USD").as_dict()) == list(WalletKey.FIELDS)


def test_columns_hold_an_empty_issuer_for_none() -> None:
    key = WalletKey("alice", "USA", "USD")
    assert key.column_values() == ("alice", "USA", "USD", "")
    assert key.as_columns() == {
        "client_id": "alice",
        "country": "USA",
        "currency": "USD",
        "issuer": "",
    }
    assert WalletKey("alice", "USA", "USD", "visa").column_values()[3] == "visa"


def test_columns_behind_a_prefix_name_a_lookup_through_a_relation() -> None:
    assert WalletKey("alice", "USA", "USD", "visa").as_columns("wallet__") == {
        "wallet__client_id": "alice",
        "wallet__country": "USA",
        "wallet__currency": "USD",
        "wallet__issuer": "visa",
    }


@given(keys)
def test_every_form_reads_back_as_the_same_key(key: WalletKey) -> None:
    assert WalletKey.from_mapping(key.as_dict()) == key
    assert WalletKey.from_mapping(key.as_columns()) == key
    assert WalletKey.from_row(SimpleNamespace(**key.as_columns())) == key
    document = dict(zip(MONGO_NAMES, key.column_values(), strict=True))
    assert WalletKey.from_mapping(document, names=MONGO_NAMES) == key


def test_a_missing_or_empty_issuer_reads_as_none() -> None:
    three = {"client_id": "alice", "country": "USA", "currency": "USD"}
    assert WalletKey.from_mapping(three).issuer is None
    assert WalletKey.from_mapping({**three, "issuer": ""}).issuer is None
    assert WalletKey.from_mapping({**three, "issuer": None}).issuer is None


@pytest.mark.parametrize("missing", ["client_id", "country", "currency"])
def test_a_mapping_without_one_of_the_other_fields_is_a_key_error(missing: str) -> None:
    fields = {"client_id": "alice", "country": "USA", "currency": "USD", "issuer": "visa"}
    del fields[missing]
    with pytest.raises(KeyError):
        WalletKey.from_mapping(fields)
