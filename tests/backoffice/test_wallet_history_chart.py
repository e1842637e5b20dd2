"""The wallet page draws the wallet's balance history (the API's, routed by the phase) as an
inline SVG line of the available balance, for support staff."""

from __future__ import annotations

import re

from django.test import Client

from backoffice.history_chart import available_balance_svg
from backoffice.links import transaction_url
from domain.history import HistoryQuery
from domain.ids import WalletKey
from flags.phases import Phase
from tests.migration.conftest import Stores, enter_phase, new_key, tx


def wallet_page(client: Client, key: WalletKey) -> str:
    response = client.get(
        "/admin/registry/walletaccount/key/",
        {"client_id": key.client_id, "country": key.country, "currency": key.currency},
    )
    assert response.status_code == 200
    return response.content.decode()


def chart_of(page: str) -> str:
    return page.split('id="history-chart"')[1].split("</div>")[0]


def test_support_sees_a_line_through_the_available_balance_after_each_transaction(
    support: Client, stores: Stores
) -> None:
    key = new_key()
    credit_id = tx()
    stores.phased.add_credit(key, 10_000, credit_id)
    stores.phased.subtract_credit(key, 2_500, tx())
    stores.phased.add_credit(key, 500, tx())

    chart = chart_of(wallet_page(support, key))

    assert "<svg" in chart and "<script" not in chart
    polyline = re.search(r'<polyline[^>]* points="([^"]+)"', chart)
    assert polyline is not None
    heights = [float(pair.split(",")[1]) for pair in polyline.group(1).split()]
    assert len(heights) == 3  # one point per transaction, oldest left
    assert heights[1] > heights[0] and heights[2] < heights[1]  # down after the debit, up after
    assert "$100.00" in chart  # the highest balance on the axis
    assert credit_id in chart  # the transaction in its dot's tooltip


def test_the_chart_draws_from_tigerbeetle_in_phase_4(support: Client, stores: Stores) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.add_credit(key, 2_000, tx())

    chart = chart_of(wallet_page(support, key))

    assert chart.count("<circle") == 2
    assert "$30.00" in chart


def test_a_wallet_without_history_shows_a_note_instead_of_a_chart(
    support: Client, stores: Stores
) -> None:
    chart = chart_of(wallet_page(support, new_key()))

    assert "<svg" not in chart
    assert "No history." in chart


def test_a_transaction_id_in_a_tooltip_is_escaped(stores: Stores) -> None:
    key = new_key()
    stores.mongo.add_credit(key, 100, "<b>tx</b>")

    svg = available_balance_svg(stores.mongo.history(HistoryQuery(key=key)).points, "USD")

    assert "<b>" not in svg and "&lt;b&gt;tx&lt;/b&gt;" in svg


def test_support_sees_the_held_amount_as_a_second_line_and_each_hold_event_as_a_dot(
    support: Client, stores: Stores
) -> None:
    key = new_key()
    stores.phased.add_credit(key, 10_000, tx())
    hold_id = f"hold-{tx()}"
    stores.phased.place_hold(key, 4_000, hold_id, timeout_s=3600)
    stores.phased.capture_hold(hold_id, amount_minor=1_000)

    chart = chart_of(wallet_page(support, key))

    held = re.search(r'<polyline[^>]* id="history-chart-held" points="([^"]+)"', chart)
    assert held is not None
    heights = [float(pair.split(",")[1]) for pair in held.group(1).split()]
    assert heights[0] == heights[2] and heights[1] < heights[0]  # up by the hold, back down
    assert chart.count("<circle") == 3
    assert hold_id in chart and "held $40.00" in chart  # the hold event in its dot's tooltip


def test_a_wallet_that_never_held_money_has_no_held_line(support: Client, stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())

    assert "history-chart-held" not in chart_of(wallet_page(support, key))


def test_mongodbs_log_on_the_wallet_page_lists_hold_events_by_hold_id_without_a_transaction_link(
    support: Client, stores: Stores
) -> None:
    key = new_key()
    stores.phased.add_credit(key, 10_000, tx())
    hold_id = f"hold-{tx()}"
    stores.phased.place_hold(key, 4_000, hold_id, timeout_s=3600)

    page = wallet_page(support, key)

    assert f'title="{hold_id}">{hold_id}</span>' in page
    assert transaction_url(hold_id) not in page
