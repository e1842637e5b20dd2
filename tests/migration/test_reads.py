"""Phases 2 and 3 through the REST API: shadow reads compared exactly, read cutover by stable
client buckets, read-your-writes, fallback behind a circuit breaker."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from rest_framework.test import APIClient

from domain.ids import WalletKey
from domain.wallets import WalletBalance
from flags.phases import Phase, client_bucket
from migration.models import ReadFallbackCount, ReadRouteCount, ShadowComparison
from migration.outbox import MirrorOutbox
from migration.routing import ReadRetry, read_breaker
from migration.shadow import compare_shadow_read
from tests.migration.conftest import Stores, enter_phase, new_key, phased_over, tx
from tests.migration.test_mirror import plug


def balance_url(key: WalletKey) -> str:
    return f"/api/clients/{key.client_id}/wallets/{key.country}/{key.currency}"


def read_balance(api: APIClient, key: WalletKey) -> dict[str, Any]:
    response = api.get(balance_url(key))
    assert response.status_code == 200, response.content
    return response.json()


def post_credit(api: APIClient, key: WalletKey, amount: str) -> Any:
    return api.post(
        f"{balance_url(key)}/credits", {"transaction_id": tx(), "amount": amount}, format="json"
    )


def routes() -> dict[str, int]:
    return {row.route: row.count for row in ReadRouteCount.objects.all()}


def diverge(stores: Stores, key: WalletKey, amount_minor: int) -> None:
    """Make TigerBeetle alone hold `amount_minor` less, so which store answered shows."""
    stores.tigerbeetle.subtract_credit(key, amount_minor, tx())


# --- phase 2 -------------------------------------------------------------------------------


def test_a_shadow_read_records_a_match_with_both_stores_values(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = new_key()
    post_credit(api, key, "12.34")

    assert read_balance(api, key)["credit"] == "12.34"

    comparison = ShadowComparison.objects.get(client_id=key.client_id)
    assert comparison.outcome == ShadowComparison.Outcome.MATCH
    assert (comparison.mongo_credit_minor, comparison.tb_credit_minor) == (1234, 1234)
    assert comparison.tb_latency_us is not None and comparison.mongo_latency_us is not None


def test_a_shadow_mismatch_is_recorded_with_the_fields_and_both_values(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = new_key()
    post_credit(api, key, "10.00")
    diverge(stores, key, 100)

    read_balance(api, key)

    comparison = ShadowComparison.objects.get(client_id=key.client_id)
    assert comparison.outcome == ShadowComparison.Outcome.MISMATCH
    assert comparison.mismatched_fields == "credit,debit"
    assert (comparison.mongo_credit_minor, comparison.tb_credit_minor) == (1000, 900)


def test_a_shadow_read_is_compared_at_the_point_the_read_saw(stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    captured: list[tuple[WalletBalance, int]] = []
    phased = phased_over(
        stores,
        enqueue_shadow=lambda balance, *, wallet_seq, mongo_latency_us: captured.append(
            (balance, wallet_seq)
        ),
    )
    key = new_key()
    phased.add_credit(key, 500, tx())
    phased.get_balance(key)
    phased.add_credit(key, 250, tx())  # lands before the comparison runs
    phased.subtract_credit(key, 100, tx())

    balance, seq = captured[0]
    comparison = compare_shadow_read(
        balance, seq, stores.outbox, stores.tigerbeetle, stores.batches
    )

    assert comparison.outcome == ShadowComparison.Outcome.MATCH
    assert comparison.tb_credit_minor == 500


def test_a_shadow_read_waits_for_the_mirror_instead_of_reporting_lag(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 800, tx())  # phase 0: still pending in the outbox
    snapshot = stores.scan.snapshots([key])[key]

    comparison = compare_shadow_read(
        snapshot.balance, snapshot.wallet_seq, stores.outbox, stores.tigerbeetle, stores.batches
    )

    assert comparison.outcome == ShadowComparison.Outcome.MATCH


def test_a_shadow_read_behind_an_unreachable_mirror_says_the_entries_wait_for_the_mirror(
    stores: Stores,
) -> None:
    key = new_key()
    stores.phased.add_credit(key, 800, tx())
    stores.mirror().drain()  # the wallet is in TigerBeetle, settled
    plug(stores).down = True
    stores.phased.add_credit(key, 200, tx())  # pending: the mirror cannot apply it
    snapshot = stores.scan.snapshots([key])[key]

    comparison = compare_shadow_read(
        snapshot.balance, snapshot.wallet_seq, stores.outbox, stores.tigerbeetle, stores.batches
    )

    assert comparison.outcome == ShadowComparison.Outcome.MISSING
    assert comparison.detail == "1 entries wait for the mirror"


MONGODB_DELAY_S = 0.3


def slow_mongodb(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every MongoDB query of the comparison (all go through the outbox) takes 0.3 s more;
    returns the names of those made."""
    made: list[str] = []
    for name, method in vars(MirrorOutbox).items():
        if name.startswith("_") or not callable(method):
            continue

        def slowed(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
            made.append(_name)
            time.sleep(MONGODB_DELAY_S)
            return _method(*args, **kwargs)

        monkeypatch.setattr(MirrorOutbox, name, slowed)
    return made


@pytest.mark.parametrize("read_at", ["the latest write", "an earlier write"])
def test_tigerbeetles_shadow_read_is_timed_alone_without_any_mongodb_query(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, read_at: str
) -> None:
    """2 -> 3 waits for TigerBeetle's read latency to be under half of MongoDB's: a MongoDB
    query inside TigerBeetle's timing would make it look slower than it is."""
    key = new_key()
    stores.phased.add_credit(key, 800, tx())
    first = stores.scan.snapshots([key])[key]
    stores.phased.add_credit(key, 200, tx())
    stores.mirror().drain()
    snapshot = first if read_at == "an earlier write" else stores.scan.snapshots([key])[key]
    made = slow_mongodb(monkeypatch)

    comparison = compare_shadow_read(
        snapshot.balance, snapshot.wallet_seq, stores.outbox, stores.tigerbeetle, stores.batches
    )

    assert comparison.outcome == ShadowComparison.Outcome.MATCH
    assert "next_entry_after" in made  # MongoDB was asked, slowly
    assert comparison.tb_latency_us is not None
    assert comparison.tb_latency_us < MONGODB_DELAY_S * 1_000_000


def test_only_the_sampled_share_of_reads_is_shadowed(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=25)
    key = new_key()
    post_credit(api, key, "1.00")
    for _ in range(200):
        read_balance(api, key)
    assert 20 < ShadowComparison.objects.count() < 85


def balances_url(client_id: str) -> str:
    return f"/api/clients/{client_id}/wallets"


def test_a_balance_list_in_phase_two_compares_each_wallet_at_the_point_the_list_saw(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    usd = new_key()
    eur = WalletKey(usd.client_id, "DEU", "EUR")
    post_credit(api, usd, "5.00")
    post_credit(api, usd, "1.00")
    post_credit(api, eur, "7.00")
    diverge(stores, eur, 25)

    response = api.get(balances_url(usd.client_id))

    assert response.status_code == 200
    assert sorted(w["credit"] for w in response.json()["wallets"]) == ["6.00", "7.00"]
    rows = {row.currency: row for row in ShadowComparison.objects.filter(client_id=usd.client_id)}
    assert rows["USD"].outcome == ShadowComparison.Outcome.MATCH
    assert (rows["USD"].wallet_seq, rows["USD"].tb_credit_minor) == (2, 600)
    assert rows["EUR"].outcome == ShadowComparison.Outcome.MISMATCH
    assert (rows["EUR"].mongo_credit_minor, rows["EUR"].tb_credit_minor) == (700, 675)
    # A list's MongoDB time is no one wallet's: the latency criterion leaves these out.
    assert rows["USD"].mongo_latency_us is None and rows["USD"].tb_latency_us is not None


def test_a_balance_list_is_sampled_wallet_by_wallet(stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=25)
    shadowed: list[WalletKey] = []
    phased = phased_over(
        stores,
        enqueue_shadow=lambda balance, *, wallet_seq, mongo_latency_us: shadowed.append(
            balance.key
        ),
    )
    client = new_key().client_id
    keys = [WalletKey(client, country, "USD") for country in ("USA", "CAN", "MEX", "BRA")]
    for key in keys:
        phased.add_credit(key, 100, tx())

    per_list = []
    for _ in range(60):
        before = len(shadowed)
        assert [b.key for b in phased.get_balances(client)] == sorted(
            keys, key=lambda key: key.sort_key()
        )
        per_list.append(len(shadowed) - before)

    assert 24 < len(shadowed) < 100  # about a quarter of the 240 wallet reads
    assert any(0 < count < len(keys) for count in per_list)  # a list is not all or nothing


def test_a_balance_list_outside_phase_two_is_not_compared(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    post_credit(api, key, "1.00")

    assert api.get(balances_url(key.client_id)).status_code == 200
    assert ShadowComparison.objects.count() == 0


def test_phase_one_reads_are_not_shadowed(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    post_credit(api, key, "1.00")
    read_balance(api, key)
    assert ShadowComparison.objects.count() == 0


# --- phase 3 -------------------------------------------------------------------------------


def test_a_client_in_the_rollout_reads_from_tigerbeetle(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    key = new_key()
    post_credit(api, key, "10.00")
    diverge(stores, key, 1)

    assert read_balance(api, key)["credit"] == "9.99"
    assert routes() == {"tigerbeetle": 1}


def test_a_client_outside_the_rollout_reads_from_mongodb(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=50)
    key = new_key()
    while client_bucket(key.client_id) < 5000:
        key = new_key()
    post_credit(api, key, "10.00")
    diverge(stores, key, 1)

    assert read_balance(api, key)["credit"] == "10.00"
    assert routes() == {}  # not a read meant for TigerBeetle: nothing to count


def test_a_wallet_with_a_write_not_yet_mirrored_is_read_from_mongodb(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    unmirrored = phased_over(stores, enqueue_mirror=lambda k: None)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())  # mirrored
    unmirrored.add_credit(key, 500, tx())  # acknowledged, not mirrored yet

    assert unmirrored.get_balance(key).credit_minor == 1_500
    assert routes() == {"ryw": 1}
    stores.mirror().drain()
    assert unmirrored.get_balance(key).credit_minor == 1_500
    assert routes() == {"ryw": 1, "tigerbeetle": 1}


def test_a_tigerbeetle_failure_falls_back_to_mongodb_and_is_counted(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    stores.phased.read_retry = ReadRetry(retries=3, base_s=0.001)
    key = new_key()
    post_credit(api, key, "3.00")
    plug(stores).down = True

    assert read_balance(api, key)["credit"] == "3.00"
    assert routes() == {"fallback": 1}


def test_a_failed_tigerbeetle_read_is_retried_three_times_after_0_2_0_4_and_0_8_s(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    waits_s: list[float] = []
    # The runtime's own retry policy (TB_READ_RETRY_ATTEMPTS, TB_READ_RETRY_BASE_S), its
    # waits recorded instead of slept.
    stores.phased.read_retry = replace(stores.phased.read_retry, sleep=waits_s.append)
    key = new_key()
    stores.phased.add_credit(key, 300, tx())
    backend = plug(stores)
    backend.down = True

    assert stores.phased.get_balance(key).credit_minor == 300  # MongoDB, after the retries

    assert waits_s == [0.2, 0.4, 0.8]
    assert [name for name, _ in backend.calls if name == "lookup_accounts"] == [
        "lookup_accounts"
    ] * 4
    assert routes() == {"fallback": 1}


def test_no_retry_begins_past_the_reads_retry_budget(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    # Each try waits 0.5 s for a cluster that does not answer: the second begins at 0.5 s,
    # inside the 0.8 s budget (0.3 s to spare on a loaded machine); a third would begin at
    # 1.0 s, past it.
    stores.phased.read_retry = ReadRetry(retries=3, base_s=0.001, budget_s=0.8)
    key = new_key()
    stores.phased.add_credit(key, 300, tx())
    backend = plug(stores)
    backend.down, backend.unanswered_s = True, 0.5

    assert stores.phased.get_balance(key).credit_minor == 300  # MongoDB, after two tries

    assert [name for name, _ in backend.calls if name == "lookup_accounts"] == [
        "lookup_accounts"
    ] * 2
    assert routes() == {"fallback": 1}


def test_a_balance_list_asks_tigerbeetle_no_more_once_one_wallets_read_failed(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    stores.phased.read_retry = ReadRetry(retries=3, base_s=0.001)
    client = new_key().client_id
    keys = [WalletKey(client, country, "USD") for country in ("USA", "CAN", "MEX")]
    for key in keys:
        stores.phased.add_credit(key, 100, tx())
    stores.mirror().drain()
    backend = plug(stores)
    backend.down = True

    balances = stores.phased.get_balances(client)

    assert [balance.credit_minor for balance in balances] == [100, 100, 100]  # MongoDB
    assert [name for name, _ in backend.calls if name == "lookup_accounts"] == [
        "lookup_accounts"
    ] * 4  # the first wallet's try and three retries; none for the other two
    assert routes() == {"fallback": 3}
    assert {row.reason: row.count for row in ReadFallbackCount.objects.all()} == {"error": 3}


def test_a_tigerbeetle_read_that_recovers_within_its_retries_is_served_by_tigerbeetle(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 300, tx())
    diverge(stores, key, 1)  # so the store that answered shows
    backend = plug(stores)
    backend.down = True

    def recover_while_waiting(wait_s: float) -> None:
        backend.down = False

    stores.phased.read_retry = replace(stores.phased.read_retry, sleep=recover_while_waiting)

    assert stores.phased.get_balance(key).credit_minor == 299
    assert routes() == {"tigerbeetle": 1}


def test_the_breaker_opens_after_five_reads_failed_every_retry_and_stops_asking_tigerbeetle(
    stores: Stores,
) -> None:
    stores.phased.breaker = read_breaker(failures=5, reset_s=0.3)
    stores.phased.read_retry = ReadRetry(retries=3, base_s=0.001)
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    backend = plug(stores)
    backend.down = True
    calls: list[str] = []
    real_lookup = stores.tigerbeetle.get_balance

    def counted(k: WalletKey) -> WalletBalance:
        calls.append("lookup")
        return real_lookup(k)

    stores.tigerbeetle.get_balance = counted  # type: ignore[method-assign]  # counts the reads
    for _ in range(8):
        assert stores.phased.get_balance(key).credit_minor == 100
    assert len(calls) == 5 * 4  # five reads, each tried once and retried three times
    assert routes() == {"fallback": 8}

    backend.down = False
    time.sleep(0.35)  # half-open: one trial read goes to TigerBeetle and closes the breaker
    stores.phased.get_balance(key)
    stores.phased.get_balance(key)
    assert len(calls) == 5 * 4 + 2
    assert routes() == {"fallback": 8, "tigerbeetle": 2}


def test_all_balances_of_a_client_in_the_rollout_come_from_tigerbeetle(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    usd, eur = new_key(), new_key("EUR")
    eur = WalletKey(usd.client_id, "DEU", "EUR")
    post_credit(api, usd, "1.00")
    post_credit(api, eur, "2.00")
    diverge(stores, eur, 50)

    response = api.get(f"/api/clients/{usd.client_id}/wallets")

    assert sorted(w["credit"] for w in response.json()["wallets"]) == ["1.00", "1.50"]


@pytest.mark.parametrize("phase", [Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.READ_CUTOVER])
def test_writes_stay_on_mongodb_until_tigerbeetle_only(
    stores: Stores, api: APIClient, phase: Phase
) -> None:
    enter_phase(phase, rollout_percent=100)
    key = new_key()
    assert post_credit(api, key, "4.00").status_code == 201
    assert stores.mongo.get_balance(key).credit_minor == 400
    assert stores.tigerbeetle.get_balance(key).credit_minor == 400
