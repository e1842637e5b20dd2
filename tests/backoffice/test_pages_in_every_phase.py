"""Issue 26's points on the wallet, transaction and mismatch pages, checked in the phases
where they went wrong: a MongoDB-only transaction opens in phase 4, one Void link per
transaction, a void's own id, a voided debit marked in TigerBeetle's table, MongoDB's
wallets counted and listed, re-check in phases 0 and 4, and what phase 0 says."""

from __future__ import annotations

import logging
import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from domain import errors
from domain.ids import WalletKey
from flags.phases import Phase
from ledger.stores.mongo_documents import decimal128
from migration.models import ReconciliationMismatch
from tests.backoffice.test_support_admin import wallet_page
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx


def section(page: str, element_id: str) -> str:
    return page.split(f'id="{element_id}"')[1].split("</table>")[0]


@pytest.fixture
def voided_debit(stores: Stores) -> tuple[WalletKey, str]:
    """A mirrored wallet (credit 100.00, debit 30.00 voided) in dual write."""
    enter_phase(Phase.DUAL_WRITE)
    key, debit_id = new_key(), tx()
    stores.phased.add_credit(key, 10_000, tx())
    stores.phased.subtract_credit(key, 3_000, debit_id)
    stores.phased.void_transaction(debit_id, voided_by="agent", reason="disputed")
    return key, debit_id


def test_a_mongodb_only_refused_debit_opens_in_phase_4(support: Client, stores: Stores) -> None:
    key, refused = new_key(), tx()
    legacy_wallet(stores, key, credit_minor=500, debit_minor=0)
    with pytest.raises(errors.InsufficientFunds):
        stores.mongo.subtract_credit(key, 1_000, refused)
    enter_phase(Phase.TIGERBEETLE_ONLY)

    response = support.get(f"/admin/registry/wallettransfer/record/{refused}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "As MongoDB holds it." in page and "only MongoDB holds it" in page
    assert "failed" in page.split('id="record-state"')[1].split("</td>")[0]


@pytest.mark.parametrize("phase", [Phase.DUAL_WRITE, Phase.TIGERBEETLE_ONLY])
def test_a_wallet_page_has_one_void_link_per_voidable_transaction(
    support: Client, stores: Stores, phase: Phase
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    ids = [tx(), tx()]
    stores.phased.add_credit(key, 10_000, ids[0])
    stores.phased.subtract_credit(key, 3_000, ids[1])
    enter_phase(phase)
    page = wallet_page(support, key).content.decode()
    for transaction_id in ids:
        assert page.count(f"/void/{transaction_id}/") == 1


def test_a_void_shows_in_the_mongodb_log_with_its_own_id(
    support: Client, voided_debit: Any
) -> None:
    key, debit_id = voided_debit
    log = section(wallet_page(support, key).content.decode(), "mongo-log")
    void_row = next(row for row in log.split("<tr>") if "<td>void</td>" in row)
    own_id = re.search(r'<span class="ellipsis" title="([^"]+)"', void_row)
    assert own_id is not None and own_id.group(1) != debit_id
    assert "voids <a" in void_row and debit_id in void_row


def test_tigerbeetles_table_marks_a_voided_debit(support: Client, voided_debit: Any) -> None:
    key, debit_id = voided_debit
    transfers = section(wallet_page(support, key).content.decode(), "tb-transfers")
    debit_row = next(row for row in transfers.split("<tr>") if f">{debit_id}<" in row)
    assert '<td class="tb-state">voided</td>' in debit_row


def test_in_phase_0_the_wallet_list_counts_and_lists_mongodbs_wallets(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.LEGACY)
    keys = [new_key(), new_key("EUR")]
    for key in keys:
        stores.phased.add_credit(key, 1_000, tx())
    page = support.get("/admin/registry/walletaccount/").content.decode()
    assert "MongoDB holds 2 wallets" in page
    listed = page.split('id="mongo-only-wallets"')[1].split("</table>")[0]
    assert all(key.client_id in listed for key in keys)


def test_a_search_for_a_mongodb_only_wallet_lists_it(support: Client, stores: Stores) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=4_200, debit_minor=0)
    page = support.get("/admin/registry/walletaccount/", {"q": key.client_id}).content.decode()
    assert "1 wallet only in MongoDB" in page and "$42.00" in page


def test_a_search_that_finds_nothing_says_so_and_hints_at_case(
    support: Client, stores: Stores
) -> None:
    found = support.get("/admin/find/", {"q": "ACME-SHOP"}).content.decode()
    listed = support.get("/admin/registry/walletaccount/", {"q": "ACME-SHOP"}).content.decode()
    for page in (found, listed):
        hint = page.split('id="nothing-found"')[1].split("</p>")[0]
        assert "case-sensitive" in hint and "acme-shop" in hint


def a_mismatch(stores: Stores) -> WalletKey:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 10_000, tx())
    stores.mongo.database.wallets().update_one(
        {"client_id": key.client_id}, {"$set": {"credit": decimal128(9_000, "USD")}}
    )
    with pytest.raises(CommandError):
        call_command("reconcile", stdout=StringIO())
    return key


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_a_mismatched_wallet_can_be_rechecked_in_phases_0_and_4(
    support: Client, stores: Stores, phase: Phase
) -> None:
    key = a_mismatch(stores)
    enter_phase(phase)
    mismatch = ReconciliationMismatch.objects.get()
    case = support.get(f"/admin/migration/reconciliationmismatch/{mismatch.pk}/change/")
    assert 'id="recheck-button"' in case.content.decode()
    assert 'id="recheck-button"' in wallet_page(support, key).content.decode()


def test_a_mismatch_page_links_to_its_wallet_for_product(product: Client, stores: Stores) -> None:
    key = a_mismatch(stores)
    mismatch = ReconciliationMismatch.objects.get()
    page = product.get(f"/admin/migration/reconciliationmismatch/{mismatch.pk}/change/")
    link = re.findall(r'<a href="([^"]+)" id="case-wallet-link"', page.content.decode())[0]
    assert product.get(link).status_code == 200
    assert key.client_id in product.get(link).content.decode()


def test_in_phase_0_nothing_says_copied_pending_or_missing_in_red(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.LEGACY)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    page = support.get("/admin/registry/walletaccount/key/", {**key.as_columns()}).content.decode()
    assert "pending" not in section(page, "mongo-log")
    balances = section(page, "balances")
    assert 'class="store-error"' not in balances and 'class="differs"' not in balances
    assert 'class="store-absent"' in balances  # TigerBeetle's missing wallet, said quietly


def test_the_favicon_is_served(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in response.content


def test_a_refusal_logs_one_line_without_a_traceback(
    product: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="django.request")
    response = product.get("/admin/registry/wallettransfer/void/some-id/")
    assert response.status_code == 403
    refused = [record for record in caplog.records if record.name == "django.request"]
    assert [record.getMessage() for record in refused] == [
        "Forbidden (Permission denied): /admin/registry/wallettransfer/void/some-id/"
    ]
    assert refused[0].exc_info is None


def test_breadcrumbs_and_app_names_are_plain_words(product: Client, stores: Stores) -> None:
    migration = product.get("/admin/migration/shadowcomparison/").content.decode()
    flags = product.get("/admin/waffle/switch/").content.decode()
    breadcrumbs = migration.split('class="breadcrumbs"')[1].split("</div>")[0]
    assert ">Migration</a>" in breadcrumbs
    assert ">Feature flags</a>" in flags.split('class="breadcrumbs"')[1].split("</div>")[0]
    assert "django-waffle" not in flags and "records" not in breadcrumbs


def test_the_index_lists_holds_with_support_and_blocker_actions_in_plain_plural(
    support: Client,
) -> None:
    index = support.get("/admin/").content.decode()
    wallets_group = index.split("Support: wallets and transactions</")[1].split("</table>")[0]
    assert ">Holds</a>" in wallets_group
    assert ">Actions on blockers</a>" in index and "Action on a blockers" not in index


def test_the_wallet_lists_currency_filter_applies_to_mongodbs_wallets(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.LEGACY)
    usd, eur = new_key(), new_key("EUR")
    for key in (usd, eur):
        stores.phased.add_credit(key, 1_000, tx())
    page = support.get("/admin/registry/walletaccount/", {"currency__exact": "EUR"})
    listed = page.content.decode().split('id="mongo-only-wallets"')[1].split("</table>")[0]
    assert eur.client_id in listed and usd.client_id not in listed
