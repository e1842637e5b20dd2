"""The wallet store contract, run against the legacy MongoDB store and the TigerBeetle store.

Both stores must agree field by field (credit, debit, historical_credit) after any sequence of
operations, because the migration compares them.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from domain import errors
from domain.ids import WalletKey
from domain.wallets import TransactionKind, TransactionState, WalletResult, WalletStore
from ledger import history
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from registry.models import WalletTransfer
from tests.concurrency import run_concurrently
from tests.conftest import ledger_scope


def new_key(*, currency: str = "USD", country: str = "USA", issuer: str | None = None) -> WalletKey:
    return WalletKey(
        client_id=f"client-{uuid.uuid4().hex[:10]}",
        country=country,
        currency=currency,
        issuer=issuer,
    )


def new_id(prefix: str = "tx") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def fields(store: WalletStore, key: WalletKey) -> tuple[int, int, int]:
    return store.get_balance(key).fields_minor()


def test_first_credit_creates_the_wallet_with_that_balance(wallet_store: WalletStore) -> None:
    key = new_key()

    result = wallet_store.add_credit(key, 10_050, new_id())

    assert result.balance.fields_minor() == (10_050, 0, 10_050)
    assert result.replayed is False
    assert fields(wallet_store, key) == (10_050, 0, 10_050)


def test_credits_accumulate_in_credit_and_historical_credit(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, new_id())

    wallet_store.add_credit(key, 250, new_id())

    assert fields(wallet_store, key) == (1_250, 0, 1_250)


def test_debit_moves_available_credit_into_debit(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, new_id())

    result = wallet_store.subtract_credit(key, 300, new_id("ref"))

    assert result.balance.fields_minor() == (700, 300, 1_000)
    assert result.transaction.kind == TransactionKind.DEBIT


def test_debit_of_the_whole_balance_leaves_zero(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, new_id())

    wallet_store.subtract_credit(key, 1_000, new_id("ref"))

    assert fields(wallet_store, key) == (0, 1_000, 1_000)


def test_debit_beyond_available_credit_is_insufficient_funds_and_changes_nothing(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, new_id())

    with pytest.raises(errors.InsufficientFunds):
        wallet_store.subtract_credit(key, 1_001, new_id("ref"))

    assert fields(wallet_store, key) == (1_000, 0, 1_000)


def test_debit_of_a_wallet_that_never_had_credit_is_wallet_not_found(
    wallet_store: WalletStore,
) -> None:
    with pytest.raises(errors.WalletNotFound):
        wallet_store.subtract_credit(new_key(), 100, new_id("ref"))


def test_retrying_a_credit_answers_the_original_result_and_posts_once(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    transaction_id = new_id()
    first = wallet_store.add_credit(key, 500, transaction_id)
    wallet_store.add_credit(key, 100, new_id())

    retry = wallet_store.add_credit(key, 500, transaction_id)

    assert retry.replayed is True
    assert retry.balance == first.balance
    assert fields(wallet_store, key) == (600, 0, 600)


def test_retrying_a_debit_answers_the_original_result_and_posts_once(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, new_id())
    reference_id = new_id("ref")
    first = wallet_store.subtract_credit(key, 400, reference_id)

    retry = wallet_store.subtract_credit(key, 400, reference_id)

    assert retry.replayed is True
    assert retry.balance == first.balance
    assert fields(wallet_store, key) == (600, 400, 1_000)


def test_reusing_a_credit_id_with_another_amount_is_an_idempotency_conflict(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    transaction_id = new_id()
    wallet_store.add_credit(key, 500, transaction_id)

    with pytest.raises(errors.IdempotencyConflict):
        wallet_store.add_credit(key, 501, transaction_id)

    assert fields(wallet_store, key) == (500, 0, 500)


def test_reusing_a_credit_id_for_another_wallet_is_an_idempotency_conflict(
    wallet_store: WalletStore,
) -> None:
    transaction_id = new_id()
    wallet_store.add_credit(new_key(), 500, transaction_id)

    with pytest.raises(errors.IdempotencyConflict):
        wallet_store.add_credit(new_key(), 500, transaction_id)


def test_reusing_a_credit_id_as_a_debit_reference_is_an_idempotency_conflict(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    transaction_id = new_id()
    wallet_store.add_credit(key, 500, transaction_id)

    with pytest.raises(errors.IdempotencyConflict):
        wallet_store.subtract_credit(key, 500, transaction_id)

    assert fields(wallet_store, key) == (500, 0, 500)


def test_retrying_a_refused_debit_is_refused_again_the_same_way(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    wallet_store.add_credit(key, 100, new_id())
    reference_id = new_id("ref")
    with pytest.raises(errors.InsufficientFunds):
        wallet_store.subtract_credit(key, 500, reference_id)
    wallet_store.add_credit(key, 1_000, new_id())

    with pytest.raises(errors.InsufficientFunds):
        wallet_store.subtract_credit(key, 500, reference_id)

    assert fields(wallet_store, key) == (1_100, 0, 1_100)


def test_voiding_a_credit_takes_the_amount_back_out_as_a_debit(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    transaction_id = new_id()
    wallet_store.add_credit(key, 1_000, transaction_id)
    wallet_store.add_credit(key, 200, new_id())

    result = wallet_store.void_transaction(
        transaction_id, voided_by="support-1", reason="duplicate top-up"
    )

    assert result.balance.fields_minor() == (200, 1_000, 1_200)
    assert fields(wallet_store, key) == (200, 1_000, 1_200)
    assert result.transaction.state == TransactionState.VOIDED


def test_voiding_a_debit_gives_the_amount_back_as_credit(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, new_id())
    reference_id = new_id("ref")
    wallet_store.subtract_credit(key, 300, reference_id)

    wallet_store.void_transaction(reference_id, voided_by="support-1", reason="order cancelled")

    assert fields(wallet_store, key) == (1_000, 300, 1_300)


def test_voiding_twice_is_already_voided_and_changes_nothing(wallet_store: WalletStore) -> None:
    key = new_key()
    transaction_id = new_id()
    wallet_store.add_credit(key, 1_000, transaction_id)
    wallet_store.void_transaction(transaction_id, voided_by="support-1", reason="mistake")

    with pytest.raises(errors.AlreadyVoided):
        wallet_store.void_transaction(transaction_id, voided_by="support-2", reason="mistake again")

    assert fields(wallet_store, key) == (0, 1_000, 1_000)


def test_voiding_a_spent_credit_is_void_would_overdraw_and_changes_nothing(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    transaction_id = new_id()
    wallet_store.add_credit(key, 1_000, transaction_id)
    wallet_store.subtract_credit(key, 600, new_id("ref"))

    with pytest.raises(errors.VoidWouldOverdraw):
        wallet_store.void_transaction(transaction_id, voided_by="support-1", reason="chargeback")

    assert fields(wallet_store, key) == (400, 600, 1_000)
    assert wallet_store.get_transaction(transaction_id).state == TransactionState.POSTED


def test_a_void_refused_for_funds_goes_through_once_the_wallet_is_topped_up(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    transaction_id = new_id()
    wallet_store.add_credit(key, 1_000, transaction_id)
    wallet_store.subtract_credit(key, 600, new_id("ref"))
    with pytest.raises(errors.VoidWouldOverdraw):
        wallet_store.void_transaction(transaction_id, voided_by="support-1", reason="chargeback")
    wallet_store.add_credit(key, 600, new_id())

    wallet_store.void_transaction(transaction_id, voided_by="support-1", reason="chargeback")

    assert fields(wallet_store, key) == (0, 1_600, 1_600)


def test_voiding_an_unknown_transaction_is_transaction_not_found(
    wallet_store: WalletStore,
) -> None:
    with pytest.raises(errors.TransactionNotFound):
        wallet_store.void_transaction(new_id(), voided_by="support-1", reason="no such thing")


def test_voiding_a_refused_debit_is_transaction_not_found(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, 100, new_id())
    reference_id = new_id("ref")
    with pytest.raises(errors.InsufficientFunds):
        wallet_store.subtract_credit(key, 500, reference_id)

    with pytest.raises(errors.TransactionNotFound):
        wallet_store.void_transaction(reference_id, voided_by="support-1", reason="cleanup")


def test_a_void_is_recorded_with_who_why_and_when(wallet_store: WalletStore) -> None:
    key = new_key()
    transaction_id = new_id()
    wallet_store.add_credit(key, 1_000, transaction_id)

    wallet_store.void_transaction(
        transaction_id, voided_by="support-7", reason="customer request #42"
    )

    record = wallet_store.get_transaction(transaction_id)
    assert record.state == TransactionState.VOIDED
    assert record.voided_by == "support-7"
    assert record.void_reason == "customer request #42"
    assert record.voided_at is not None


def test_a_transaction_reads_back_with_its_wallet_amount_and_kind(
    wallet_store: WalletStore,
) -> None:
    key = new_key(currency="KWD", country="KWT")
    transaction_id = new_id()
    wallet_store.add_credit(key, 1_234, transaction_id)

    record = wallet_store.get_transaction(transaction_id)

    assert (record.key, record.kind, record.amount_minor) == (key, TransactionKind.CREDIT, 1_234)
    assert str(record.amount) == "1.234"


def test_reading_an_unknown_transaction_is_transaction_not_found(
    wallet_store: WalletStore,
) -> None:
    with pytest.raises(errors.TransactionNotFound):
        wallet_store.get_transaction(new_id())


def test_balance_of_an_unknown_wallet_is_wallet_not_found(wallet_store: WalletStore) -> None:
    with pytest.raises(errors.WalletNotFound):
        wallet_store.get_balance(new_key())


def test_wallets_differing_only_by_issuer_are_separate(wallet_store: WalletStore) -> None:
    plain = new_key()
    issued = WalletKey(plain.client_id, plain.country, plain.currency, issuer="visa")
    wallet_store.add_credit(plain, 100, new_id())

    wallet_store.add_credit(issued, 900, new_id())

    assert fields(wallet_store, plain) == (100, 0, 100)
    assert fields(wallet_store, issued) == (900, 0, 900)


def test_all_balances_of_a_client_list_each_of_its_wallets_and_no_one_elses(
    wallet_store: WalletStore,
) -> None:
    usd = new_key()
    client = usd.client_id
    eur = WalletKey(client, "DEU", "EUR", None)
    jpy_issued = WalletKey(client, "JPN", "JPY", "jcb")
    for key, amount in ((usd, 100), (eur, 200), (jpy_issued, 300)):
        wallet_store.add_credit(key, amount, new_id())
    wallet_store.add_credit(new_key(), 999, new_id())

    balances = wallet_store.get_balances(client)

    assert {(b.key, b.credit_minor) for b in balances} == {
        (usd, 100),
        (eur, 200),
        (jpy_issued, 300),
    }


def test_all_balances_of_an_unknown_client_is_an_empty_list(wallet_store: WalletStore) -> None:
    assert wallet_store.get_balances(f"nobody-{uuid.uuid4().hex}") == []


UNAVAILABLE_RETRIES_MAX = 5


def test_two_hundred_concurrent_debits_never_overdraw_and_leave_exact_balances(
    committed_wallet_store: WalletStore,
) -> None:
    store = committed_wallet_store
    key = new_key()
    store.add_credit(key, 10_000, new_id())
    outcomes: list[str] = []
    lock = threading.Lock()

    def debit(_: int) -> None:
        transaction_id = new_id("ref")
        outcome = "still unavailable"
        for _attempt in range(UNAVAILABLE_RETRIES_MAX):
            try:
                store.subtract_credit(key, 70, transaction_id)
                outcome = "ok"
                break
            except errors.InsufficientFunds:
                outcome = "refused"
                break
            except errors.StoreUnavailable:
                # 503, as a client is told: again with the same id. Sixteen writers on one
                # wallet of a loaded CI machine's MongoDB server can leave it unmoved for
                # MONGO_LOCK_WAIT_S, which the store reads as a wallet held by a dead writer.
                continue
        with lock:
            outcomes.append(outcome)

    run_concurrently(debit, range(200), workers=16)

    succeeded = outcomes.count("ok")
    assert succeeded == 10_000 // 70
    assert outcomes.count("refused") == 200 - succeeded
    assert fields(store, key) == (10_000 - 70 * succeeded, 70 * succeeded, 10_000)


def test_concurrent_retries_of_one_credit_post_it_once(
    committed_wallet_store: WalletStore,
) -> None:
    store = committed_wallet_store
    key = new_key()
    store.add_credit(key, 1, new_id())
    transaction_id = new_id()

    results = run_concurrently(lambda _: store.add_credit(key, 500, transaction_id), range(8), 8)

    assert sum(not r.replayed for r in results) == 1
    assert {r.balance.fields_minor() for r in results} == {(501, 0, 501)}
    assert fields(store, key) == (501, 0, 501)


def test_concurrent_voids_of_one_transaction_void_it_once(
    committed_wallet_store: WalletStore,
) -> None:
    store = committed_wallet_store
    key = new_key()
    transaction_id = new_id()
    store.add_credit(key, 1_000, new_id())
    store.add_credit(key, 300, transaction_id)

    def void(_: int) -> str:
        try:
            store.void_transaction(transaction_id, voided_by="support-1", reason="duplicate")
            return "voided"
        except errors.AlreadyVoided:
            return "already"

    outcomes = run_concurrently(void, range(8), workers=8)

    assert outcomes.count("voided") == 1
    assert fields(store, key) == (1_000, 300, 1_300)


@pytest.mark.django_db
def test_the_tigerbeetle_store_is_unavailable_when_the_cluster_does_not_answer() -> None:
    from ledger.backends.tigerbeetle_client import TigerBeetleBackend
    from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
    from wallet_site.embedded_mongo import free_loopback_port

    backend = TigerBeetleBackend(0, f"127.0.0.1:{free_loopback_port()}", request_timeout_s=0.3)
    try:
        with pytest.raises(errors.StoreUnavailable):
            TigerBeetleWalletStore(backend=backend, scope=ledger_scope()).add_credit(
                new_key(), 100, new_id()
            )
    finally:
        backend.close()


def race_credit_and_debit(store: WalletStore, key: WalletKey, shared_id: str) -> dict[str, object]:
    """A credit and a debit on one id, started together from two threads: each operation's
    WalletResult, or the WalletError it raised."""
    start = threading.Barrier(2)

    def run(kind: str) -> object:
        start.wait()
        try:
            if kind == "credit":
                return store.add_credit(key, 300, shared_id)
            return store.subtract_credit(key, 200, shared_id)
        except errors.WalletError as exc:
            return exc

    outcomes = run_concurrently(run, ["credit", "debit"], workers=2)
    return dict(zip(["credit", "debit"], outcomes, strict=True))


def assert_exactly_one_posted(outcomes: dict[str, object]) -> str:
    """One operation posted with its own record, the other is an idempotency conflict."""
    posted = [kind for kind, outcome in outcomes.items() if not isinstance(outcome, Exception)]
    assert len(posted) == 1, outcomes
    winner, loser = posted[0], ({"credit", "debit"} - {posted[0]}).pop()
    result = outcomes[winner]
    assert isinstance(result, WalletResult), outcomes
    assert result.transaction.kind == TransactionKind(winner), outcomes
    assert result.replayed is False
    assert isinstance(outcomes[loser], errors.IdempotencyConflict), outcomes
    return winner


def test_a_credit_and_a_debit_racing_on_one_id_post_exactly_one(
    committed_wallet_store: WalletStore,
) -> None:
    """Credit ids and debit reference ids share one namespace, also under a race."""
    store = committed_wallet_store
    key = new_key()
    store.add_credit(key, 100_000, new_id())
    credits = debits = 0

    for _ in range(20):
        winner = assert_exactly_one_posted(race_credit_and_debit(store, key, new_id("shared")))
        credits += winner == "credit"
        debits += winner == "debit"

    assert fields(store, key) == (
        100_000 + 300 * credits - 200 * debits,
        200 * debits,
        100_000 + 300 * credits,
    )
    if isinstance(store, TigerBeetleWalletStore):
        assert_ledger_holds_only_registered_transfers(store, key)


def assert_ledger_holds_only_registered_transfers(
    store: TigerBeetleWalletStore, key: WalletKey
) -> None:
    """Support finds (and voids) a transfer through the registry: none may be unnamed."""
    in_ledger = {
        transfer.id for transfer in history.recent_transfers(store.backend, key, limit=1000)
    }
    named = {
        row.tb_transfer_id
        for row in WalletTransfer.objects.filter(
            wallet__client_id=key.client_id, state=WalletTransfer.State.POSTED
        )
    }
    assert in_ledger == named


@pytest.mark.parametrize("amount_minor", [0, -1])
def test_store_asserts_a_positive_amount_the_service_already_validated(
    wallet_store: WalletStore, amount_minor: int
) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, new_id())

    with pytest.raises(AssertionError):
        wallet_store.add_credit(key, amount_minor, new_id())
    with pytest.raises(AssertionError):
        wallet_store.subtract_credit(key, amount_minor, new_id("ref"))

    assert fields(wallet_store, key) == (1_000, 0, 1_000)
