"""A support agent's jobs in the admin (issue 12, items 1-11): money they can read, the
transaction page, voiding from wherever a transaction shows, paging, finding anything by any
id in any phase, which store to believe, the links between pages, exports, and the frame."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.management import CommandError, call_command
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.utils import timezone

from backoffice.admin_base import format_money
from domain import errors
from domain.ids import WalletKey
from flags.models import Milestone
from flags.phases import Phase
from migration.models import ReconciliationMismatch
from migration.phase_change import change_phase
from registry.models import WalletAccount, WalletTransfer
from tests.backoffice.test_support_admin import void, wallet_page
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx


@pytest.fixture
def wallet(stores: Stores) -> tuple[WalletKey, str, str]:
    """A mirrored wallet with a credit of 100.00 and a debit of 30.00."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    credit_id, debit_id = tx(), tx()
    stores.phased.add_credit(key, 10_000, credit_id)
    stores.phased.subtract_credit(key, 3_000, debit_id)
    return key, credit_id, debit_id


def section(page: str, *, element_id: str) -> str:
    return page.split(f'id="{element_id}"')[1].split("</table>")[0]


def reconcile() -> None:
    with pytest.raises(CommandError):
        call_command("reconcile", stdout=io.StringIO())


# --- 1. money with its currency, in the words support uses ---------------------------------


def test_money_is_formatted_for_the_locale_with_its_currency_and_never_rounded() -> None:
    assert format_money(11_990, "USD") == "$119.90"
    assert format_money(1_000, "JPY") == "¥1,000"
    assert format_money(1_234, "KWD") == "KWD1.234"
    assert format_money(5_245, "GBP", locale="en_GB") == "£52.45"


def test_the_wallet_page_names_the_balances_as_support_says_them_with_a_meaning(
    support: Client, wallet: Any
) -> None:
    balances = section(wallet_page(support, wallet[0]).content.decode(), element_id="balances")
    assert "<th>available</th>" in balances and "what the client can spend now" in balances
    assert "<th>spent</th>" in balances and "<th>total received</th>" in balances
    assert "$30.00" in balances and "$100.00" in balances
    assert ">historical" not in balances


def test_the_transactions_list_shows_amounts_with_their_currency(
    support: Client, wallet: Any
) -> None:
    page = support.get("/admin/registry/wallettransfer/").content.decode()
    assert "$100.00" in page and "$30.00" in page
    assert "Amount minor" not in page


def test_a_recheck_says_the_balances_in_money_and_words(
    support: Client, wallet: Any, stores: Stores
) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    reconcile()
    mismatch = ReconciliationMismatch.objects.get()
    page = support.post(
        "/admin/migration/reconciliationmismatch/",
        {"action": "recheck_wallets", "_selected_action": [mismatch.pk]},
        follow=True,
    ).content.decode()
    assert "MongoDB: $70.00 available, $30.00 spent, $100.00 total received" in page
    assert "TigerBeetle: $69.99 available, $30.01 spent" in page
    assert "(credit, debit, historical)" not in page


def test_mismatches_show_both_stores_as_money(support: Client, wallet: Any, stores: Stores) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    reconcile()
    page = support.get("/admin/migration/reconciliationmismatch/").content.decode()
    assert "$70.00" in page and "$69.99" in page
    assert "MONGO CREDIT MINOR" not in page.upper().replace("MONGODB", "")


# --- 2. the transaction page: technical fields folded away ---------------------------------


def test_the_transaction_page_folds_technical_fields_away(support: Client, wallet: Any) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[1])
    page = support.get(f"/admin/registry/wallettransfer/{row.pk}/change/").content.decode()
    main, technical = page.split("Technical details", 1)
    assert "$100.00" in main
    assert main.rstrip().endswith("<summary>")  # folded away in a closed <details>
    assert '<details id="technical-details">' in main
    assert row.tb_transfer_id_hex in technical and str(row.tb_timestamp) in technical
    assert "icon-no" not in page and "Needs copy back" not in page


# --- 3. one Void button wherever a voidable transaction shows, in every phase --------------


def test_the_transaction_page_has_a_void_button(support: Client, wallet: Any) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[2])
    page = support.get(f"/admin/registry/wallettransfer/{row.pk}/change/").content.decode()
    assert f'id="void-button" href="/admin/registry/wallettransfer/void/{wallet[2]}/' in page


def test_the_transactions_list_has_a_void_link_on_voidable_rows_only(
    support: Client, wallet: Any
) -> None:
    void(support, wallet[2], reason="dispute")
    page = support.get("/admin/registry/wallettransfer/").content.decode()
    assert f"/void/{wallet[1]}/?next=" in page
    assert f"/void/{wallet[2]}/?next=" not in page


def test_in_phase_4_a_phase_4_transaction_has_a_void_link_on_the_wallet_page(
    support: Client, wallet: Any, stores: Stores, settings: Any
) -> None:
    settings.PHASE_CHANGE_SETTLE_S = 0
    settings.MIGRATION_CRITERION_DAYS = 0  # the phase-4 page, not the gates
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    enter_phase(Phase.READ_CUTOVER)
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    phase4_debit = tx()
    stores.phased.subtract_credit(wallet[0], 500, phase4_debit)

    page = wallet_page(support, wallet[0]).content.decode()

    transfers = section(page, element_id="tb-transfers")
    assert f"/void/{phase4_debit}/?next=" in transfers
    response = void(support, phase4_debit, reason="double charge")
    assert "Voided" in response.content.decode()
    assert stores.tigerbeetle.get_balance(wallet[0]).credit_minor == 7_000


def test_product_reads_a_transaction_but_sees_no_void_button(product: Client, wallet: Any) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[1])
    page = product.get(f"/admin/registry/wallettransfer/{row.pk}/change/")
    assert page.status_code == 200 and 'id="void-button"' not in page.content.decode()


def test_product_follows_a_wallet_read_only(product: Client, wallet: Any) -> None:
    page = wallet_page(product, wallet[0])
    assert page.status_code == 200 and 'class="void-link"' not in page.content.decode()


# --- 4. paging the wallet page ------------------------------------------------------------


def test_the_wallet_page_pages_back_to_a_wallets_first_credit(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, first = new_key(), tx()
    stores.phased.add_credit(key, 1, first)
    for _ in range(24):
        stores.phased.add_credit(key, 1, tx())

    page = wallet_page(support, key).content.decode()
    assert first not in section(page, element_id="mongo-log") and first not in section(
        page, element_id="tb-transfers"
    )
    older_log = link(page, element_id="mongo-log-older")
    older_tb = link(page, element_id="tb-transfers-older")

    assert first in section(support.get(older_log).content.decode(), element_id="mongo-log")
    assert first in section(support.get(older_tb).content.decode(), element_id="tb-transfers")
    assert (
        section(support.get(older_tb).content.decode(), element_id="tb-transfers").count("<tr>")
        == 6
    )


# --- 5. one search box: any id, any phase, MongoDB-only wallets and transactions ----------


def link(page: str, *, element_id: str) -> str:
    """The href of the link with this id."""
    anchor = page.split(f'id="{element_id}"')[0].rsplit("<a ", 1)[1]
    return anchor.split('href="')[1].split('"')[0].replace("&amp;", "&")


def test_the_index_has_the_search_box(support: Client) -> None:
    assert 'id="find-box"' in support.get("/admin/").content.decode()


def test_a_legacy_wallet_only_in_mongodb_is_found_by_client_id_in_phase_0(
    support: Client, stores: Stores
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=11_990, debit_minor=5_245)

    response = support.get("/admin/find/", {"q": key.client_id}, follow=True)

    page = response.content.decode()
    assert (
        response.redirect_chain
        and "/admin/registry/walletaccount/key/" in (response.redirect_chain[-1][0])
    )
    assert "$119.90" in section(page, element_id="balances")
    listed = support.get("/admin/registry/walletaccount/", {"q": key.client_id}).content.decode()
    assert 'id="mongo-only-wallets"' in listed and key.client_id in listed


def test_a_refused_debit_only_in_mongodb_is_found_by_its_id(
    support: Client, stores: Stores
) -> None:
    key, refused = new_key(), tx()
    stores.phased.add_credit(key, 100, tx())
    with pytest.raises(errors.InsufficientFunds):
        stores.phased.subtract_credit(key, 500, refused)

    response = support.get("/admin/find/", {"q": refused}, follow=True)

    page = response.content.decode()
    assert f"/admin/registry/wallettransfer/record/{refused}/" in response.redirect_chain[-1][0]
    assert "failed" in section(page, element_id="transaction-record")


def test_a_transaction_is_found_by_its_tigerbeetle_transfer_id(
    support: Client, wallet: Any
) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[1])
    for query in (row.tb_transfer_id_hex, str(row.tb_transfer_id)):
        response = support.get("/admin/find/", {"q": query}, follow=True)
        assert response.redirect_chain[-1][0] == f"/admin/registry/wallettransfer/{row.pk}/change/"


def test_a_client_id_is_matched_case_sensitively(support: Client, wallet: Any) -> None:
    page = support.get("/admin/find/", {"q": wallet[0].client_id.upper()}).content.decode()
    assert "No wallet has this client id" in page


# --- 6. which store is authoritative, and which differences matter -------------------------


def test_in_phase_4_the_page_says_tigerbeetle_is_authoritative_and_does_not_alarm(
    support: Client, wallet: Any, stores: Stores, settings: Any
) -> None:
    settings.PHASE_CHANGE_SETTLE_S = 0
    settings.MIGRATION_CRITERION_DAYS = 0  # the phase-4 page, not the gates
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    enter_phase(Phase.READ_CUTOVER)
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    stores.phased.add_credit(wallet[0], 500, tx())

    page = wallet_page(support, wallet[0]).content.decode()

    assert "TigerBeetle is authoritative" in page
    header = section(page, element_id="balances").split("</thead>")[0]
    assert header.index("TigerBeetle (authoritative)") < header.index("MongoDB")
    assert page.index('id="tb-transfers"') < page.index('id="mongo-log"')
    assert 'id="balance-difference"' not in page
    assert "1 TigerBeetle-only writes of this wallet are waiting" in page


def test_in_phase_1_mongodb_is_authoritative_and_mirror_lag_is_not_a_warning(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.mongo.add_credit(key, 100, tx())  # written, not mirrored yet
    page = wallet_page_by_key(support, key)
    assert "MongoDB is authoritative" in page
    assert 'id="balance-difference"' not in page
    assert "still waiting for the mirror" in page


def test_a_legacy_wallet_awaiting_the_backfill_is_explained_not_alarmed(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    legacy_wallet(stores, key, credit_minor=100, debit_minor=0)
    page = wallet_page_by_key(support, key)
    assert 'id="balance-difference"' not in page
    assert "a legacy wallet the backfill has not imported" in page


def wallet_page_by_key(client: Client, key: WalletKey) -> str:
    query = {"client_id": key.client_id, "country": key.country, "currency": key.currency}
    return client.get("/admin/registry/walletaccount/key/", query).content.decode()


# --- 7. what a void does, where it shows ---------------------------------------------------


def test_the_void_page_says_what_the_void_does_with_the_numbers(
    support: Client, wallet: Any
) -> None:
    page = support.get(f"/admin/registry/wallettransfer/void/{wallet[2]}/").content.decode()
    effects = page.split('id="void-effects"')[1].split("</ul>")[0]
    assert "available goes from $70.00 to $100.00" in effects
    assert "total received goes from $100.00 to $130.00" in effects
    assert "spent stays $30.00" in effects


def test_after_a_void_the_wallet_page_explains_why_spent_stays(
    support: Client, wallet: Any
) -> None:
    assert "void-explanation" not in wallet_page(support, wallet[0]).content.decode()
    void(support, wallet[2], reason="dispute")
    page = wallet_page(support, wallet[0]).content.decode()
    explanation = page.split('id="void-explanation"')[1].split("</p>")[0]
    assert "Voiding a debit gives the money back as a new credit" in explanation


# --- 8. lists that fit 1280 px ------------------------------------------------------------


def test_the_transactions_list_shows_who_voided_and_when_in_one_column(
    support: Client, support_user: Any, wallet: Any
) -> None:
    void(support, wallet[2], reason="dispute")
    page = support.get("/admin/registry/wallettransfer/").content.decode()
    assert f"{support_user.username}, {timezone.now():%Y-%m-%d}" in page
    assert 'id="nav-sidebar"' not in page  # the width goes to the list


# --- 9. links, and Cancel back to where the agent came from --------------------------------


def test_the_transactions_list_links_each_wallet(support: Client, wallet: Any) -> None:
    row = WalletAccount.objects.get(client_id=wallet[0].client_id)
    page = support.get("/admin/registry/wallettransfer/").content.decode()
    assert f'href="/admin/registry/walletaccount/{row.pk}/change/"' in page


def test_a_mismatch_links_its_wallet(support: Client, wallet: Any, stores: Stores) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    reconcile()
    row = WalletAccount.objects.get(client_id=wallet[0].client_id)
    page = support.get("/admin/migration/reconciliationmismatch/").content.decode()
    assert f'href="/admin/registry/walletaccount/{row.pk}/change/"' in page


def test_the_wallet_page_links_its_mismatches_rechecks_and_the_wallets_list(
    support: Client, wallet: Any, stores: Stores
) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    reconcile()
    page = wallet_page(support, wallet[0]).content.decode()
    assert 'id="breadcrumb-wallets"' in page
    transactions = support.get(link(page, element_id="wallet-transactions")).content.decode()
    assert wallet[1] in transactions and wallet[2] in transactions
    listed = support.get(link(page, element_id="wallet-mismatches")).content.decode()
    assert wallet[0].client_id in listed

    row = WalletAccount.objects.get(client_id=wallet[0].client_id)
    back = f"/admin/registry/walletaccount/{row.pk}/change/"
    response = support.post(
        "/admin/registry/walletaccount/recheck/",
        {**wallet_fields(wallet[0]), "next": back},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == back
    assert "still different" in response.content.decode()


def wallet_fields(key: WalletKey) -> dict[str, str]:
    return {"client_id": key.client_id, "country": key.country, "currency": key.currency}


def test_cancel_on_the_void_page_returns_to_where_the_agent_came_from(
    support: Client, wallet: Any
) -> None:
    came_from = "/admin/registry/wallettransfer/?state__exact=posted"
    page = support.get(
        f"/admin/registry/wallettransfer/void/{wallet[2]}/", {"next": came_from}
    ).content.decode()
    cancel = page.split('id="void-cancel"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert cancel.replace("&amp;", "&") == came_from


def test_cancel_refuses_to_lead_off_site(support: Client, wallet: Any) -> None:
    page = support.get(
        f"/admin/registry/wallettransfer/void/{wallet[2]}/", {"next": "https://evil.example/"}
    ).content.decode()
    assert "evil.example" not in page.split('id="void-cancel"')[0].rsplit("<a", 1)[1]


# --- 10. open mismatches by default; CSV exports -------------------------------------------


def test_mismatches_are_filtered_open_by_default(
    support: Client, wallet: Any, stores: Stores
) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    reconcile()
    old = ReconciliationMismatch.objects.get()
    reconcile()  # a newer run finds it again: the first row is history now
    page = support.get("/admin/migration/reconciliationmismatch/").content.decode()
    assert f'value="{old.pk}"' not in page
    assert page.count('name="_selected_action"') == 1
    everything = support.get("/admin/migration/reconciliationmismatch/", {"status": "all"})
    assert everything.content.decode().count('name="_selected_action"') == 2


def test_a_recheck_that_agrees_resolves_the_open_mismatch(
    support: Client, support_user: Any, wallet: Any, stores: Stores
) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    reconcile()
    stores.mongo.subtract_credit(wallet[0], 1, tx(), mirror=False)  # the stores agree again

    support.post("/admin/registry/walletaccount/recheck/", wallet_fields(wallet[0]))

    mismatch = ReconciliationMismatch.objects.get()
    assert mismatch.resolved_by == support_user.username
    page = support.get("/admin/migration/reconciliationmismatch/").content.decode()
    assert 'name="_selected_action"' not in page  # no longer open


def test_mismatches_export_as_csv_with_money_and_currency(
    support: Client, wallet: Any, stores: Stores
) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    reconcile()
    response = support.get("/admin/migration/reconciliationmismatch/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert response["Content-Type"].startswith("text/csv")
    assert [
        (r["client_id"], r["currency"], r["mongo_available"], r["tigerbeetle_available"])
        for r in rows
    ] == [(wallet[0].client_id, "USD", "70.00", "69.99")]


def test_transactions_export_as_csv_following_the_lists_filters(
    support: Client, wallet: Any
) -> None:
    void(support, wallet[2], reason="dispute")
    response = support.get("/admin/registry/wallettransfer/export.csv", {"state__exact": "voided"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["transaction_id"], r["amount"], r["state"], r["void_reason"]) for r in rows] == [
        (wallet[2], "30.00", "voided", "dispute")
    ]
    listed = support.get("/admin/registry/wallettransfer/", {"state__exact": "voided"})
    assert 'id="csv-export" href="export.csv?state__exact=voided"' in listed.content.decode()


# --- 11. ids as written, no dead link, a 403 inside the frame, groups named for people -----


def test_messages_are_shown_as_written_without_capitalising_an_id(support_user: Any) -> None:
    request = RequestFactory().get("/admin/")
    request.user = support_user
    request.session = {}  # type: ignore[assignment]  # the message storage needs a mapping only
    storage = FallbackStorage(request)
    storage.add(20, "dave GBR GBP: both stores agree now.")
    html = render_to_string("admin/base_site.html", {"messages": storage}, request=request)
    assert '<li class="info">dave GBR GBP: both stores agree now.</li>' in html


def test_there_is_no_view_site_link_to_a_404(support: Client) -> None:
    assert "View site" not in support.get("/admin/").content.decode()


def test_a_403_is_shown_inside_the_admin_frame_with_a_way_back(support: Client) -> None:
    response = support.get("/admin/migration/dashboard/", HTTP_REFERER="http://testserver/admin/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "Wallet ledger back-office" in page
    assert 'id="forbidden-back" href="/admin/"' in page


def test_the_index_groups_are_named_for_the_people_who_use_them(
    support: Client, product: Client
) -> None:
    support_index = support.get("/admin/").content.decode()
    product_index = product.get("/admin/").content.decode()
    assert "Support: wallets and transactions" in support_index
    assert "Support: reconciliation" in support_index
    assert "Product: migration records" in product_index
    assert ">Registry<" not in support_index and ">Ledger<" not in support_index


def test_search_results_offer_a_void_link_for_each_voidable_transaction(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    shared = f"shared-{tx()}"  # a client id that is also a transaction id: two hits
    key = WalletKey(shared, "USA", "USD")
    stores.phased.add_credit(key, 100, shared)

    page = support.get("/admin/find/", {"q": shared}).content.decode()

    assert key.describe() in section(page, element_id="found-wallets")
    assert f"/void/{shared}/?next=" in section(page, element_id="found-transactions")
