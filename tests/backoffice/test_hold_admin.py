"""Support in the admin: a wallet's open holds on its page, and releasing one after a
confirmation, audited (the hold's resolved_by, and the admin's history), as a Support user who
is not a superuser; in every phase (MongoDB in 0-3, TigerBeetle in 4)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client

from backoffice.links import wallet_url
from domain.holds import HoldState
from domain.ids import WalletKey
from flags.phases import Phase
from registry.models import WalletHold
from tests.migration.conftest import Stores, enter_phase, new_key, tx


def held_wallet(stores: Stores) -> tuple[WalletKey, str]:
    """A wallet with 10.00 and an open hold of 3.00 on it."""
    key, hold_id = new_key(), f"hold-{uuid.uuid4().hex}"
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.place_hold(key, 300, hold_id, timeout_s=3600, made_by="payments")
    return key, hold_id


def release_page(hold_id: str) -> str:
    return f"/admin/registry/wallethold/release/{hold_id}/"


def page_text(response: Any) -> str:
    assert response.status_code == 200
    return str(response.content.decode())


def test_support_sees_a_wallets_open_holds_on_its_page(stores: Stores, support: Client) -> None:
    key, hold_id = held_wallet(stores)

    text = page_text(support.get(wallet_url(key)))

    assert 'id="open-holds"' in text
    assert hold_id in text and "$3.00" in text and "payments" in text
    assert release_page(hold_id) in text


def test_the_release_page_asks_first_and_releases_nothing(stores: Stores, support: Client) -> None:
    _key, hold_id = held_wallet(stores)

    text = page_text(support.get(release_page(hold_id)))

    assert 'id="release-form"' in text
    assert stores.phased.get_hold(hold_id).state == HoldState.OPEN


def test_support_releases_a_hold_and_the_release_is_audited(
    stores: Stores, support: Client, support_user: User
) -> None:
    key, hold_id = held_wallet(stores)

    response = support.post(release_page(hold_id), {"next": wallet_url(key)}, follow=True)

    hold = stores.phased.get_hold(hold_id)
    assert response.status_code == 200
    assert (hold.state, hold.resolved_by) == (HoldState.RELEASED, support_user.username)
    assert stores.phased.get_balance(key).credit_minor == 1_000
    assert LogEntry.objects.filter(
        user=support_user, object_repr=f"hold {hold_id}", change_message="Released"
    ).exists()


def test_product_cannot_release_a_hold(stores: Stores, product: Client) -> None:
    _key, hold_id = held_wallet(stores)

    refused = product.post(release_page(hold_id))

    assert refused.status_code == 403
    assert stores.phased.get_hold(hold_id).state == HoldState.OPEN


@pytest.mark.usefixtures("criteria_not_awaited")
def test_in_phase_4_support_releases_a_tigerbeetle_hold_from_the_holds_list(
    stores: Stores, support: Client, support_user: User
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key, hold_id = held_wallet(stores)
    row_pk = WalletHold.objects.get(hold_id=hold_id).pk

    chosen = support.post(
        "/admin/registry/wallethold/",
        {"action": "release_selected", "_selected_action": [row_pk]},
    )
    released = support.post(chosen["Location"], follow=True)

    assert released.status_code == 200
    assert stores.tigerbeetle.get_hold(hold_id).resolved_by == support_user.username
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (1_000, 0, 1_000)


def test_in_dual_write_support_releases_a_hold_from_the_wallet_page_and_it_is_mirrored(
    stores: Stores, support: Client
) -> None:
    enter_phase(Phase.SHADOW_READ)
    key, hold_id = held_wallet(stores)
    assert release_page(hold_id) in page_text(support.get(wallet_url(key)))

    support.post(release_page(hold_id), {"next": wallet_url(key)}, follow=True)
    stores.mirror().drain()

    assert stores.phased.get_hold(hold_id).state == HoldState.RELEASED
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert stores.tigerbeetle.get_balance(key).held_minor == 0
