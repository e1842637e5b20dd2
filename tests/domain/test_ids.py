"""Id derivation: deterministic, domain-separated, never a reserved value."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from domain import ids
from domain.ids import IdSpace, WalletKey

# The ids of a deployment without a namespace: those every deployment used before namespaces.
IDS = IdSpace("")
text = st.text(max_size=20)
keys = st.builds(
    WalletKey,
    text,
    st.sampled_from(["USA", "DEU"]),
    st.sampled_from(["USD", "EUR"]),
    st.one_of(st.none(), text),
)


def test_the_same_key_always_gives_the_same_account_id() -> None:
    key = WalletKey("client-1", "USA", "USD", "visa")

    assert IDS.account_id(key) == IDS.account_id(WalletKey("client-1", "USA", "USD", "visa"))


def test_a_nonce_gives_a_different_account_id_for_the_same_key() -> None:
    key = WalletKey("client-1", "USA", "USD")

    assert IDS.account_id(key, nonce=0) != IDS.account_id(key, nonce=1)


def test_separators_inside_fields_cannot_make_two_keys_collide() -> None:
    left = WalletKey("a|b", "USA", "USD", "c")
    right = WalletKey("a", "USA", "USD", "b|c")

    assert ids.wallet_key_bytes(left) != ids.wallet_key_bytes(right)


def test_an_empty_issuer_is_the_same_wallet_as_no_issuer() -> None:
    assert WalletKey("c", "USA", "USD", "") == WalletKey("c", "USA", "USD", None)


def test_distinct_client_ids_map_to_distinct_transfers() -> None:
    assert IDS.transaction_transfer_id("x-1") != IDS.transaction_transfer_id("x-2")


def test_credit_transfer_ids_are_unchanged_by_the_shared_namespace() -> None:
    """Credits already in TigerBeetle keep their transfer ids."""
    assert IDS.transaction_transfer_id("x-1") == ids._namespaced_hash_bits(
        ["credit", ids.ID_SCHEME_VERSION, "x-1"], 128, ""
    )


def test_void_attempts_get_distinct_transfer_ids() -> None:
    assert IDS.void_transfer_id(42, attempt=0) != IDS.void_transfer_id(42, attempt=1)


def test_no_issuer_hashes_to_zero_and_an_issuer_never_does() -> None:
    assert IDS.issuer_hash_64(None) == 0
    assert IDS.issuer_hash_64("visa") != 0


@given(keys, st.integers(min_value=0, max_value=15))
def test_account_ids_are_never_reserved_values(key: WalletKey, nonce: int) -> None:
    account_id = IDS.account_id(key, nonce=nonce)

    assert 0 < account_id < 2**128 - 1


@given(keys, keys)
def test_distinct_keys_have_distinct_encodings(first: WalletKey, second: WalletKey) -> None:
    if first != second:
        assert ids.wallet_key_bytes(first) != ids.wallet_key_bytes(second)


@given(st.text(max_size=40))
def test_transfer_ids_of_any_string_are_valid_ids(value: str) -> None:
    for derive in (IDS.transaction_transfer_id, IDS.client_hash_128):
        assert 0 < derive(value) < 2**128 - 1


@given(st.lists(st.one_of(st.text(), st.integers(), st.booleans(), st.none())))
def test_the_encoding_hashed_is_the_json_it_always_was(parts: list[object]) -> None:
    assert ids._json(parts) == json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def test_without_a_namespace_ids_are_those_every_deployment_has_used() -> None:
    key = WalletKey("client-1", "USA", "USD", "visa")

    assert IDS.account_id(key) == 0x129F342EC3EB6ACB794F67AC97B6B034
    assert IDS.transaction_transfer_id("tx-1") == 0x83B34D5520FE9C96BF59FA976959FDBA
    assert IDS.system_account_id(840) == 0x11C6E84E2BDFBF26D7B179AB1CF1EBA9
    assert IDS.client_hash_128("client-1") == 0x837F18C559F34BFD2D0C7A8DCBB13186


def test_two_namespaces_derive_different_ids_from_the_same_keys() -> None:
    key = WalletKey("alice", "USA", "USD")
    derived = []
    for namespace in ("", "tenant-a", "tenant-b"):
        space = IdSpace(namespace)
        derived.append(
            (
                space.account_id(key),
                space.system_account_id(840),
                space.transaction_transfer_id("tx-1"),
                space.void_transfer_id(space.transaction_transfer_id("tx-1")),
                space.client_hash_128("alice"),
            )
        )

    for position in range(len(derived[0])):
        assert len({values[position] for values in derived}) == 3


def test_a_namespace_derives_the_same_ids_every_time() -> None:
    assert IdSpace("tenant-a").transaction_transfer_id("tx-1") == IdSpace(
        "tenant-a"
    ).transaction_transfer_id("tx-1")
