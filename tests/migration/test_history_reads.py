"""The balance history's route in phase 3 and 4, as a balance read's: read-your-writes while
the mirror lags, MongoDB when TigerBeetle fails, 503 when the only store fails."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from domain import errors
from domain.history import HistoryQuery
from flags.phases import Phase
from migration.routing import ReadRetry
from tests.migration.conftest import Stores, enter_phase, new_key, phased_over, tx
from tests.migration.test_mirror import plug


def test_a_wallet_waiting_for_the_mirror_shows_its_latest_write_from_mongodb(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    unmirrored = phased_over(stores, enqueue_mirror=lambda k: None)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())  # mirrored
    latest = tx()
    unmirrored.add_credit(key, 500, latest)  # acknowledged, not mirrored yet

    points = unmirrored.history(HistoryQuery(key=key)).points

    assert (points[0].transaction_id, points[0].balance.credit_minor) == (latest, 1_500)


def test_a_tigerbeetle_failure_in_phase_3_is_answered_by_mongodb(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    stores.phased.read_retry = ReadRetry(retries=1, base_s=0.001)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.subtract_credit(key, 300, tx())
    expected = stores.mongo.history(HistoryQuery(key=key))
    plug(stores).down = True

    assert stores.phased.history(HistoryQuery(key=key)) == expected


def test_a_tigerbeetle_failure_in_phase_4_is_503_store_unavailable(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    plug(stores).down = True

    response = api.get(f"/api/clients/{key.client_id}/wallets/USA/USD/history")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"


def test_a_wallet_unknown_to_both_stores_is_wallet_not_found_in_phase_3(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)

    with pytest.raises(errors.WalletNotFound):
        stores.phased.history(HistoryQuery(key=new_key()))
