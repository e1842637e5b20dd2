"""Support staff in the admin: find a client's wallets, see both stores side by side with
the transfers behind them, and void a transaction with a reason."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Model, QuerySet
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from backoffice import admin_base
from backoffice.selectors import find
from domain import errors
from domain.ids import WalletKey
from flags.phases import Phase
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from migration.models import ReconciliationMismatch, ShadowComparison
from migration.outbox import LOG_MARKS
from registry.models import WalletAccount, WalletTransfer
from tests.migration.conftest import Stores, enter_phase, new_key, tx


@pytest.fixture
def wallet(stores: Stores) -> tuple[WalletKey, str, str]:
    """A mirrored wallet with a credit of 100.00 and a debit of 30.00."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    credit_id, debit_id = tx(), tx()
    stores.phased.add_credit(key, 10_000, credit_id)
    stores.phased.subtract_credit(key, 3_000, debit_id)
    return key, credit_id, debit_id


def wallet_page(client: Client, key: WalletKey) -> Any:
    row = WalletAccount.objects.get(client_id=key.client_id)
    return client.get(f"/admin/registry/walletaccount/{row.pk}/change/")


def void(client: Client, transaction_id: str, *, reason: str) -> Any:
    return client.post(
        f"/admin/registry/wallettransfer/void/{transaction_id}/", {"reason": reason}, follow=True
    )


def test_support_finds_a_clients_wallets_by_client_id(support: Client, wallet: Any) -> None:
    key = wallet[0]
    response = support.get("/admin/registry/walletaccount/", {"q": key.client_id})
    assert response.status_code == 200
    assert key.client_id in response.content.decode()


def test_a_wallet_page_for_an_id_no_wallet_has_goes_to_the_index_with_a_message(
    support: Client,
) -> None:
    response = support.get("/admin/registry/walletaccount/987654321/change/", follow=True)

    assert response.redirect_chain == [("/admin/", 302)]
    page = response.content.decode()
    assert "987654321" in page
    assert "Perhaps it was deleted?" in page


def test_wallets_filter_by_currency(support: Client, stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    usd, eur = new_key("USD"), new_key("EUR")
    stores.phased.add_credit(usd, 1, tx())
    stores.phased.add_credit(WalletKey(eur.client_id, "DEU", "EUR"), 1, tx())
    page = support.get("/admin/registry/walletaccount/", {"currency__exact": "EUR"}).content
    assert eur.client_id in page.decode() and usd.client_id not in page.decode()


def test_the_wallet_page_shows_both_stores_balances_side_by_side(
    support: Client, wallet: Any
) -> None:
    page = wallet_page(support, wallet[0]).content.decode()
    assert page.count("$70.00") >= 2  # available credit in MongoDB and in TigerBeetle
    assert "differs" not in page.split('id="balances"')[1].split("</table>")[0]


def test_a_difference_between_the_stores_is_highlighted(
    support: Client, wallet: Any, stores: Stores
) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    page = wallet_page(support, wallet[0]).content.decode()
    assert '<tr class="differs" data-field="credit">' in page
    warning = page.split('id="balance-difference"')[1].split("</p>")[0]
    assert "The stores differ in available, spent" in warning


def test_the_wallet_page_lists_transfers_log_and_balance_history(
    support: Client, wallet: Any
) -> None:
    key, credit_id, debit_id = wallet
    page = wallet_page(support, key).content.decode()
    transfers = page.split('id="tb-transfers"')[1].split("</table>")[0]
    log = page.split('id="mongo-log"')[1].split("</table>")[0]
    history = page.split('id="balance-history"')[1].split("</table>")[0]
    assert credit_id in transfers and debit_id in transfers
    assert credit_id in log and "mirrored" in log
    assert history.count("<tr>") == 3  # header + one row per transfer


def test_a_void_needs_a_reason_and_changes_nothing_without_one(
    support: Client, wallet: Any, stores: Stores
) -> None:
    response = void(support, wallet[1], reason="   ")
    assert "A void needs a reason." in response.content.decode()
    assert stores.mongo.get_balance(wallet[0]).credit_minor == 7_000


def test_voiding_with_a_reason_changes_both_stores_and_is_audited(
    support: Client, support_user: Any, wallet: Any, stores: Stores
) -> None:
    key, _, debit_id = wallet
    response = void(support, debit_id, reason="customer disputed")

    assert "Voided" in response.content.decode()
    assert stores.mongo.get_balance(key).credit_minor == 10_000
    assert stores.tigerbeetle.get_balance(key).credit_minor == 10_000
    row = WalletTransfer.objects.get(transaction_id=debit_id)
    assert (row.state, row.voided_by, row.void_reason) == (
        "voided",
        support_user.username,
        "customer disputed",
    )
    entry = LogEntry.objects.get(user=support_user)
    assert entry.change_message == "Voided: customer disputed"


def test_voiding_twice_is_refused_with_a_clear_message(
    support: Client, wallet: Any, stores: Stores
) -> None:
    void(support, wallet[2], reason="first")
    response = void(support, wallet[2], reason="second")
    assert "was already voided" in response.content.decode()
    assert stores.mongo.get_balance(wallet[0]).credit_minor == 10_000


def test_a_void_that_would_overdraw_is_refused_and_changes_nothing(
    support: Client, wallet: Any, stores: Stores
) -> None:
    key, credit_id, _ = wallet
    response = void(support, credit_id, reason="reverse the top-up")
    assert "would take the wallet below zero" in response.content.decode()
    assert stores.mongo.get_balance(key).credit_minor == 7_000
    assert WalletTransfer.objects.get(transaction_id=credit_id).state == "posted"


def test_voiding_an_unknown_transaction_says_so(support: Client, stores: Stores) -> None:
    response = support.get("/admin/registry/wallettransfer/void/no-such-id/", follow=True)
    page = response.content.decode()
    assert "Cannot void &#x27;no-such-id&#x27;: No transaction" in page


def test_transactions_filter_by_state(support: Client, wallet: Any) -> None:
    void(support, wallet[2], reason="dispute")
    page = support.get("/admin/registry/wallettransfer/", {"state__exact": "voided"})
    assert wallet[2] in page.content.decode() and wallet[1] not in page.content.decode()


def test_the_void_action_leads_to_the_confirmation_page(support: Client, wallet: Any) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[2])
    response = support.post(
        "/admin/registry/wallettransfer/",
        {"action": "void_selected", "_selected_action": [row.pk]},
    )
    assert response.status_code == 302
    assert response["Location"].endswith(f"/void/{wallet[2]}/")


def test_a_reconciliation_mismatch_can_be_rechecked(
    support: Client, wallet: Any, stores: Stores
) -> None:
    stores.tigerbeetle.subtract_credit(wallet[0], 1, tx())
    with pytest.raises(CommandError):
        call_command("reconcile", stdout=StringIO())

    mismatch = ReconciliationMismatch.objects.get()
    response = support.post(
        "/admin/migration/reconciliationmismatch/",
        {"action": "recheck_wallets", "_selected_action": [mismatch.pk]},
        follow=True,
    )
    assert "still different" in response.content.decode()


def test_wallets_filter_by_issuer_and_country(support: Client, stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    plain = new_key()
    issued = WalletKey(new_key().client_id, "BRA", "USD", issuer="acme-card")
    stores.phased.add_credit(plain, 1, tx())
    stores.phased.add_credit(issued, 1, tx())

    by_issuer = support.get("/admin/registry/walletaccount/", {"issuer": "acme-card"})
    by_country = support.get("/admin/registry/walletaccount/", {"country__exact": "USA"})
    without_issuer = support.get("/admin/registry/walletaccount/", {"issuer": "-"})

    assert issued.client_id in by_issuer.content.decode()
    assert plain.client_id not in by_issuer.content.decode()
    assert plain.client_id in by_country.content.decode()
    assert issued.client_id not in by_country.content.decode()
    assert plain.client_id in without_issuer.content.decode()
    assert issued.client_id not in without_issuer.content.decode()


def test_a_store_that_is_down_shows_as_unavailable_not_as_zero(
    support: Client, wallet: Any, stores: Stores
) -> None:
    from tests.migration.test_mirror import plug

    plug(stores).down = True
    page = wallet_page(support, wallet[0]).content.decode()
    balances = page.split('id="balances"')[1].split("</table>")[0]
    assert "unavailable: TigerBeetle is unavailable" in balances
    assert "$70.00" in balances  # MongoDB still answers
    assert "TigerBeetle history unavailable" in page


def test_the_transaction_list_and_the_wallet_page_show_who_made_and_who_voided(
    support: Client, support_user: Any, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, credit_id = new_key(), tx()
    stores.phased.add_credit(key, 10_000, credit_id, made_by="payments-gateway")
    void(support, credit_id, reason="duplicate")

    listing = support.get("/admin/registry/wallettransfer/").content.decode()
    row = listing.split(credit_id, 1)[1].split("</tr>", 1)[0]
    log = wallet_page(support, key).content.decode().split('id="mongo-log"')[1]

    assert "payments-gateway" in row and support_user.username in row
    assert '<td class="made-by">payments-gateway</td>' in log


# --- the list pages' search boxes ----------------------------------------------------------


def transactions_listed(client: Client, query: str) -> set[str]:
    response = client.get("/admin/registry/wallettransfer/", {"q": query})
    assert response.status_code == 200
    return {row.transaction_id for row in response.context["cl"].result_list}


def test_the_wallet_list_search_matches_a_client_id_exactly_and_case_sensitively(
    support: Client, wallet: Any
) -> None:
    client_id = wallet[0].client_id

    def listed(query: str) -> list[str]:
        response = support.get("/admin/registry/walletaccount/", {"q": query})
        return [row.client_id for row in response.context["cl"].result_list]

    assert listed(client_id) == [client_id]
    assert listed(client_id.upper()) == []
    assert listed(client_id[:-1]) == []


def test_the_transaction_list_search_finds_a_transaction_by_its_id(
    support: Client, wallet: Any
) -> None:
    assert transactions_listed(support, wallet[1]) == {wallet[1]}
    assert transactions_listed(support, wallet[1].upper()) == set()


def test_the_transaction_list_search_finds_a_clients_transactions_by_client_id(
    support: Client, wallet: Any
) -> None:
    assert transactions_listed(support, wallet[0].client_id) == {wallet[1], wallet[2]}


def test_the_transaction_list_search_finds_a_transaction_by_its_transfer_id_hex_or_decimal(
    support: Client, wallet: Any
) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[1])
    for query in (row.tb_transfer_id_hex, row.tb_transfer_id_hex.upper(), str(row.tb_transfer_id)):
        assert transactions_listed(support, query) == {wallet[1]}


def test_the_transaction_list_search_finds_a_voided_transaction_by_its_voids_transfer_id(
    support: Client, wallet: Any
) -> None:
    void(support, wallet[2], reason="dispute")
    row = WalletTransfer.objects.get(transaction_id=wallet[2])
    assert row.void_tb_transfer_id_hex
    assert transactions_listed(support, row.void_tb_transfer_id_hex) == {wallet[2]}


def test_a_search_for_an_unknown_id_lists_no_transaction(support: Client, wallet: Any) -> None:
    assert transactions_listed(support, "no-such-transaction") == set()


# --- searches at production size: through indexes -------------------------------------------

postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the plans are PostgreSQL's, the production one"
)


def scanned_tables(sql: str, params: Any = ()) -> list[str]:
    """The tables PostgreSQL reads whole for `sql` (a sequential scan, or an index walked
    from end to end, which is what it does instead when told not to scan) when an index
    could take it to the rows."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        ((plans,),) = cursor.fetchall()
        cursor.execute("SET LOCAL enable_seqscan = on")
    whole, nodes = [], [plans[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        walked = node["Node Type"] in {"Index Scan", "Index Only Scan"} and "Index Cond" not in node
        if node["Node Type"] == "Seq Scan" or walked:
            whole.append(node["Relation Name"])
    return whole


@pytest.fixture
def large_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table counts as large (PostgreSQL's statistics freshly taken), so the lists
    behave as they do on millions of rows."""
    monkeypatch.setattr(admin_base, "ESTIMATED_COUNT_ROWS_MIN", 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE registry_walletaccount, registry_wallettransfer")


def searched(model: type[Model], term: str) -> QuerySet:
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/", {"q": term})
    queryset, _ = model_admin.get_search_results(request, model.objects.all(), term)
    return queryset


@postgresql_only
@pytest.mark.parametrize(
    "model", [WalletAccount, WalletTransfer, ReconciliationMismatch, ShadowComparison]
)
def test_a_list_search_for_a_client_id_reads_no_table_whole(
    model: type[Model], wallet: Any
) -> None:
    assert scanned_tables(*searched(model, wallet[0].client_id).query.sql_with_params()) == []


@postgresql_only
def test_a_transaction_search_by_transfer_id_reads_no_table_whole(wallet: Any) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[1])
    queryset = searched(WalletTransfer, row.tb_transfer_id_hex)
    assert scanned_tables(*queryset.query.sql_with_params()) == []


@postgresql_only
def test_the_find_page_reads_no_registry_table_whole(wallet: Any, stores: Stores) -> None:
    row = WalletTransfer.objects.get(transaction_id=wallet[1])
    for query in (wallet[0].client_id, wallet[1], row.tb_transfer_id_hex):
        with CaptureQueriesContext(connection) as captured:
            find(query, stores.mongo)
        selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
        assert selects
        assert [table for sql in selects for table in scanned_tables(sql)] == []


def test_a_list_search_does_not_count_the_whole_table(support: Client, wallet: Any) -> None:
    with CaptureQueriesContext(connection) as captured:
        support.get("/admin/registry/wallettransfer/", {"q": wallet[1]})
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(*)" in q["sql"]]
    assert counts
    assert all("WHERE" in sql for sql in counts), counts


@postgresql_only
@pytest.mark.parametrize(
    "path", ["/admin/registry/wallettransfer/", "/admin/registry/walletaccount/"]
)
def test_loading_a_large_list_again_neither_counts_nor_gathers_a_whole_table(
    support: Client, wallet: Any, large_tables: None, path: str
) -> None:
    support.get(path)  # the filters' choices are read once, then kept a while
    with CaptureQueriesContext(connection) as captured:
        assert support.get(path).status_code == 200
    whole_table = [
        q["sql"]
        for q in captured.captured_queries
        if "registry_" in q["sql"] and ("COUNT(" in q["sql"] or "DISTINCT" in q["sql"])
    ]
    assert whole_table == []


@postgresql_only
def test_a_large_unfiltered_list_is_counted_from_postgresqls_statistics(
    support: Client, wallet: Any, large_tables: None
) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = support.get("/admin/registry/wallettransfer/")
    assert response.context["cl"].result_count == WalletTransfer.objects.count()
    assert not [q for q in captured.captured_queries if "COUNT(*)" in q["sql"]]


def test_a_filtered_list_is_counted_exactly(support: Client, wallet: Any) -> None:
    response = support.get("/admin/registry/wallettransfer/", {"kind__exact": "debit"})
    assert (
        response.context["cl"].result_count == WalletTransfer.objects.filter(kind="debit").count()
    )


def test_the_wallet_lists_filter_choices_are_read_once_then_kept(
    support: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    stores.phased.add_credit(new_key("USD"), 1, tx())
    support.get("/admin/registry/walletaccount/")
    eur = new_key("EUR")
    stores.phased.add_credit(WalletKey(eur.client_id, "DEU", "EUR"), 1, tx())

    with CaptureQueriesContext(connection) as captured:
        page = support.get("/admin/registry/walletaccount/").content.decode()
    assert not [q for q in captured.captured_queries if "DISTINCT" in q["sql"]]
    assert "?currency=USD" in page and "?currency=EUR" not in page

    cache.clear()
    assert "?currency=EUR" in support.get("/admin/registry/walletaccount/").content.decode()


class _MongoDown(MongoWalletStore):
    """MongoDB past its timeout; counts how often it was asked."""

    def __init__(self) -> None:
        super().__init__(MongoDatabase(), marks=LOG_MARKS)
        self.asked = 0

    def get_balances(self, client_id: str) -> list[Any]:
        self.asked += 1
        raise errors.StoreUnavailable("MongoDB failed: timed out")

    def get_transaction(self, transaction_id: str) -> Any:
        self.asked += 1
        raise errors.StoreUnavailable("MongoDB failed: timed out")


def test_a_search_asks_a_mongodb_that_timed_out_only_once(wallet: Any) -> None:
    mongo = _MongoDown()
    found = find(wallet[1], mongo)
    assert mongo.asked == 1
    assert [hit.transaction_id for hit in found.transactions] == [wallet[1]]
    assert found.notes == ["MongoDB was not searched: MongoDB failed: timed out"]
