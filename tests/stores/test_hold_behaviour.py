"""The hold contract (domain.holds), run against the MongoDB store and the TigerBeetle store.

Both stores answer alike: held money leaves the available credit at once and is shown as
held; a capture posts all or part of it as a debit and gives the rest back; a release or an
expiry gives it all back; every operation is idempotent on the hold id.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from domain import errors
from domain.holds import HoldState
from domain.ids import WalletKey
from domain.wallets import WalletStore
from tests.concurrency import run_concurrently

HOUR_S = 3600


def new_key() -> WalletKey:
    return WalletKey(
        client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD", issuer=None
    )


def new_id(prefix: str = "hold") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def funded(store: WalletStore, amount_minor: int) -> WalletKey:
    key = new_key()
    store.add_credit(key, amount_minor, new_id("tx"))
    return key


def available_and_held(store: WalletStore, key: WalletKey) -> tuple[int, int]:
    balance = store.get_balance(key)
    return balance.credit_minor, balance.held_minor


def test_a_hold_takes_its_amount_out_of_available_at_once(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)

    result = wallet_store.place_hold(key, 300, new_id(), timeout_s=HOUR_S, made_by="pay-1")

    assert result.hold.state == HoldState.OPEN
    assert (result.balance.credit_minor, result.balance.held_minor) == (700, 300)
    assert wallet_store.get_balance(key).fields_minor() == (700, 0, 1_000)
    assert available_and_held(wallet_store, key) == (700, 300)


def test_a_debit_cannot_spend_held_money(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    wallet_store.place_hold(key, 600, new_id(), timeout_s=HOUR_S)

    with pytest.raises(errors.InsufficientFunds):
        wallet_store.subtract_credit(key, 500, new_id("ref"))

    assert available_and_held(wallet_store, key) == (400, 600)


def test_a_hold_beyond_available_is_insufficient_funds_and_its_retry_too(
    wallet_store: WalletStore,
) -> None:
    key = funded(wallet_store, 1_000)
    wallet_store.place_hold(key, 800, new_id(), timeout_s=HOUR_S)
    hold_id = new_id()

    with pytest.raises(errors.InsufficientFunds):
        wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)
    wallet_store.add_credit(key, 1_000, new_id("tx"))

    with pytest.raises(errors.InsufficientFunds):
        wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)
    assert available_and_held(wallet_store, key) == (1_200, 800)


def test_a_hold_on_an_unknown_wallet_is_wallet_not_found(wallet_store: WalletStore) -> None:
    with pytest.raises(errors.WalletNotFound):
        wallet_store.place_hold(new_key(), 100, new_id(), timeout_s=HOUR_S)


def test_capturing_the_whole_hold_posts_it_as_a_debit(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    result = wallet_store.capture_hold(hold_id, made_by="pay-2")

    assert (result.hold.state, result.hold.captured_minor) == (HoldState.CAPTURED, 300)
    assert result.hold.resolved_by == "pay-2"
    assert wallet_store.get_balance(key).fields_minor() == (700, 300, 1_000)
    assert available_and_held(wallet_store, key) == (700, 0)


def test_a_partial_capture_posts_that_much_and_releases_the_rest(
    wallet_store: WalletStore,
) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    result = wallet_store.capture_hold(hold_id, amount_minor=120)

    assert result.hold.captured_minor == 120
    assert wallet_store.get_balance(key).fields_minor() == (880, 120, 1_000)
    assert available_and_held(wallet_store, key) == (880, 0)


def test_a_capture_above_the_hold_is_capture_exceeds_hold_and_changes_nothing(
    wallet_store: WalletStore,
) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    with pytest.raises(errors.CaptureExceedsHold):
        wallet_store.capture_hold(hold_id, amount_minor=301)

    assert wallet_store.get_hold(hold_id).state == HoldState.OPEN
    assert available_and_held(wallet_store, key) == (700, 300)


def test_releasing_a_hold_gives_its_money_back(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    result = wallet_store.release_hold(hold_id, made_by="support-1")

    assert (result.hold.state, result.hold.resolved_by) == (HoldState.RELEASED, "support-1")
    assert wallet_store.get_balance(key).fields_minor() == (1_000, 0, 1_000)
    assert available_and_held(wallet_store, key) == (1_000, 0)


def test_capturing_again_for_the_same_amount_replays_and_posts_once(
    wallet_store: WalletStore,
) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)
    wallet_store.capture_hold(hold_id, amount_minor=200)

    again = wallet_store.capture_hold(hold_id, amount_minor=200)

    assert again.replayed is True
    assert again.hold.captured_minor == 200
    assert wallet_store.get_balance(key).fields_minor() == (800, 200, 1_000)


def test_capturing_again_for_another_amount_is_hold_not_open(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)
    wallet_store.capture_hold(hold_id, amount_minor=200)

    with pytest.raises(errors.HoldNotOpen):
        wallet_store.capture_hold(hold_id, amount_minor=100)

    assert wallet_store.get_balance(key).fields_minor() == (800, 200, 1_000)


def test_releasing_again_replays_and_gives_back_once(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)
    wallet_store.release_hold(hold_id)

    again = wallet_store.release_hold(hold_id)

    assert again.replayed is True
    assert available_and_held(wallet_store, key) == (1_000, 0)


def test_a_capture_after_a_release_is_hold_not_open(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)
    wallet_store.release_hold(hold_id)

    with pytest.raises(errors.HoldNotOpen) as refused:
        wallet_store.capture_hold(hold_id)

    assert refused.value.details["state"] == "released"
    assert wallet_store.get_balance(key).fields_minor() == (1_000, 0, 1_000)


def test_a_release_after_a_capture_is_hold_not_open(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)
    wallet_store.capture_hold(hold_id)

    with pytest.raises(errors.HoldNotOpen):
        wallet_store.release_hold(hold_id)

    assert wallet_store.get_balance(key).fields_minor() == (700, 300, 1_000)


def test_placing_a_hold_again_replays_it_and_reserves_once(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    again = wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    assert again.replayed is True
    assert available_and_held(wallet_store, key) == (700, 300)


@pytest.mark.parametrize(
    ("amount_minor", "timeout_s"), [(301, HOUR_S), (300, HOUR_S + 1)], ids=["amount", "expiry"]
)
def test_reusing_a_hold_id_for_another_hold_is_an_idempotency_conflict(
    wallet_store: WalletStore, amount_minor: int, timeout_s: int
) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    with pytest.raises(errors.IdempotencyConflict):
        wallet_store.place_hold(key, amount_minor, hold_id, timeout_s=timeout_s)

    assert available_and_held(wallet_store, key) == (700, 300)


def test_unknown_holds_are_hold_not_found(wallet_store: WalletStore) -> None:
    hold_id = new_id()

    for operation in (
        lambda: wallet_store.get_hold(hold_id),
        lambda: wallet_store.capture_hold(hold_id),
        lambda: wallet_store.release_hold(hold_id),
    ):
        with pytest.raises(errors.HoldNotFound):
            operation()


def test_a_hold_reads_back_with_its_wallet_amounts_and_audit(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=HOUR_S, made_by="pay-1")

    hold = wallet_store.get_hold(hold_id)

    assert (hold.key, hold.amount_minor, hold.captured_minor) == (key, 300, 0)
    assert (hold.state, hold.made_by, hold.timeout_s) == (HoldState.OPEN, "pay-1", HOUR_S)
    assert 0 < (hold.expires_at - hold.created_at).total_seconds() == HOUR_S


def test_an_expired_hold_frees_its_money_by_itself_and_cannot_be_captured(
    wallet_store: WalletStore,
) -> None:
    key = funded(wallet_store, 1_000)
    hold_id = new_id()
    wallet_store.place_hold(key, 300, hold_id, timeout_s=1)
    time.sleep(1.5)

    assert available_and_held(wallet_store, key) == (1_000, 0)
    with pytest.raises(errors.HoldNotOpen) as refused:
        wallet_store.capture_hold(hold_id)
    assert refused.value.details["state"] == "expired"
    assert wallet_store.get_hold(hold_id).state == HoldState.EXPIRED
    assert wallet_store.get_balance(key).fields_minor() == (1_000, 0, 1_000)


def test_an_expired_hold_no_longer_stops_a_debit(wallet_store: WalletStore) -> None:
    key = funded(wallet_store, 1_000)
    wallet_store.place_hold(key, 800, new_id(), timeout_s=1)
    time.sleep(1.5)

    wallet_store.subtract_credit(key, 900, new_id("ref"))

    assert available_and_held(wallet_store, key) == (100, 0)


def test_racing_holds_and_debits_never_overdraw(committed_wallet_store: WalletStore) -> None:
    store = committed_wallet_store
    key = funded(store, 5_000)
    accepted: list[int] = []
    lock = threading.Lock()

    def hold_or_debit(index: int) -> None:
        try:
            if index % 2:
                store.place_hold(key, 1_000, new_id(), timeout_s=HOUR_S)
            else:
                store.subtract_credit(key, 1_000, new_id("ref"))
        except errors.InsufficientFunds:
            return
        with lock:
            accepted.append(index)

    run_concurrently(hold_or_debit, range(24), workers=12)

    balance = store.get_balance(key)
    assert len(accepted) == 5
    assert balance.credit_minor == 0
    assert balance.held_minor + balance.debit_minor == 5_000


def test_a_capture_and_a_release_racing_resolve_the_hold_once(
    committed_wallet_store: WalletStore,
) -> None:
    store = committed_wallet_store
    key = funded(store, 1_000)
    hold_id = new_id()
    store.place_hold(key, 300, hold_id, timeout_s=HOUR_S)

    def resolve(index: int) -> str:
        try:
            if index % 2:
                store.capture_hold(hold_id)
            else:
                store.release_hold(hold_id)
        except errors.HoldNotOpen:
            return "refused"
        return "resolved"

    outcomes = run_concurrently(resolve, range(8), workers=8)

    hold = store.get_hold(hold_id)
    assert outcomes.count("resolved") == 4  # the winner and its three replays
    expected = (700, 300, 1_000) if hold.state == HoldState.CAPTURED else (1_000, 0, 1_000)
    assert store.get_balance(key).fields_minor() == expected
    assert store.get_balance(key).held_minor == 0
