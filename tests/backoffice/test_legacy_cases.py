"""Support's documented path for a legacy inconsistency (issue 21, item 5): a legacy wallet
whose own MongoDB fields disagree cannot be fixed from the back-office, so support records a
decision on it (with a reason, audited), and the criteria and the gates then set it aside,
listed, never silently."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone

from domain.ids import WalletKey
from flags.phases import Phase
from migration import criteria
from migration.models import AcknowledgedLegacyCase, ReconciliationRun, ShadowComparison
from tests.migration.conftest import Stores, enter_phase
from tests.migration.gates import acknowledged, legacy_mismatch

MISMATCHES = "/admin/migration/reconciliationmismatch/"


def acknowledge_action(client: Client, *pks: int, reason: str | None = None) -> Any:
    """The admin action on the mismatch list: its page, then (with a reason) its decision."""
    data: dict[str, Any] = {"action": "acknowledge_legacy_cases", "_selected_action": list(pks)}
    if reason is not None:
        data.update(apply="1", reason=reason)
    return client.post(MISMATCHES, data, follow=True)


def test_support_acknowledges_a_legacy_wallet_with_a_reason_and_it_is_audited(
    support: Client, support_user: Any, stores: Stores
) -> None:
    mismatch = legacy_mismatch()

    confirm = acknowledge_action(support, mismatch.pk).content.decode()
    assert 'id="legacy-candidates"' in confirm and "Acknowledge 1 wallet" in confirm
    done = acknowledge_action(support, mismatch.pk, reason="legacy top-up bug, ticket SUP-42")

    case = AcknowledgedLegacyCase.objects.get()
    assert (case.acknowledged_by, case.reason) == (
        support_user.username,
        "legacy top-up bug, ticket SUP-42",
    )
    assert (case.historical_excess_minor, case.mongo_historical_credit_minor) == (50, 150)
    assert "acknowledged as a legacy inconsistency" in done.content.decode()
    entry = LogEntry.objects.get(object_id=str(mismatch.pk))
    assert entry.user_id == support_user.pk and "SUP-42" in entry.get_change_message()


def test_an_acknowledgment_needs_a_reason(support: Client, stores: Stores) -> None:
    mismatch = legacy_mismatch()
    page = acknowledge_action(support, mismatch.pk, reason="").content.decode()
    assert "Say why the difference is accepted" in page
    assert not AcknowledgedLegacyCase.objects.exists()


def test_a_wallet_whose_stores_differ_in_available_cannot_be_acknowledged(
    support: Client, stores: Stores
) -> None:
    mismatch = legacy_mismatch()
    mismatch.tb_credit_minor = 90  # TigerBeetle lacks a write: not the legacy data's doing
    mismatch.save()

    page = acknowledge_action(support, mismatch.pk).content.decode()
    assert "the stores differ in available or spent as well" in page
    assert 'id="nothing-to-acknowledge"' in page
    acknowledge_action(support, mismatch.pk, reason="looks old to me, let it go")
    assert not AcknowledgedLegacyCase.objects.exists()


def test_only_support_may_acknowledge(product: Client, support: Client, stores: Stores) -> None:
    mismatch = legacy_mismatch()
    assert "acknowledge_legacy_cases" not in product.get(MISMATCHES).content.decode()
    assert "acknowledge_legacy_cases" in support.get(MISMATCHES).content.decode()
    acknowledge_action(product, mismatch.pk, reason="product wants to move on")
    assert not AcknowledgedLegacyCase.objects.exists()


def test_the_open_mismatches_list_sets_an_acknowledged_wallet_aside_and_shows_it_apart(
    support: Client, stores: Stores
) -> None:
    run = ReconciliationRun.objects.create(finished_at=timezone.now(), checked=2, mismatched=2)
    acknowledged(legacy_mismatch(run=run))
    other = WalletKey("undecided", "USA", "USD", None)
    legacy_mismatch(run=run, key=other)

    open_list = support.get(MISMATCHES).content.decode()
    set_aside = support.get(MISMATCHES, {"status": "legacy"}).content.decode()

    assert "undecided" in open_list and "legacy-client" not in open_list
    assert "support can acknowledge it" in open_list
    assert "legacy-client" in set_aside and "undecided" not in set_aside
    assert "legacy case acknowledged by support-lead" in set_aside


def test_a_shadow_comparison_of_an_acknowledged_wallet_is_not_counted_but_listed(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=5)
    acknowledged(legacy_mismatch())
    for client_id, tb_historical in (("legacy-client", 100), ("someone", 150)):
        ShadowComparison.objects.create(
            client_id=client_id,
            country="USA",
            currency="USD",
            wallet_seq=1,
            outcome=ShadowComparison.Outcome.MISMATCH,
            mongo_credit_minor=100,
            mongo_debit_minor=0,
            mongo_historical_credit_minor=150,
            tb_credit_minor=100,
            tb_debit_minor=0,
            tb_historical_credit_minor=tb_historical,
        )
    ShadowComparison.objects.filter(client_id="someone").update(mongo_historical_credit_minor=100)

    figures = criteria.shadow_figures(7)
    dashboard = product.get("/admin/migration/dashboard/").content.decode()

    assert (figures.mismatched, figures.set_aside) == (1, 1)
    rows = dashboard.split('id="criteria"')[1].split("</table>")[0]
    assert "1 of acknowledged legacy wallets set aside" in rows


def test_the_dashboard_lists_the_acknowledged_legacy_wallets(
    product: Client, stores: Stores
) -> None:
    acknowledged(legacy_mismatch())
    page = product.get("/admin/migration/dashboard/").content.decode()
    assert "Set aside: 1 acknowledged legacy wallet " in page
    listed = product.get("/admin/migration/acknowledgedlegacycase/").content.decode()
    assert "legacy-client USA USD" in listed and "legacy bug of 2019" in listed


def test_the_phase_page_names_the_acknowledged_wallets_the_gates_set_aside(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=5)
    acknowledged(legacy_mismatch())
    page = product.get("/admin/migration/phase/").content.decode()
    shown = page.split('id="gate-set-aside"')[1].split("</p>")[0]
    assert "1 acknowledged legacy wallet in the last reconciliation" in shown
    assert "legacy-client USA USD" in shown
    assert 'data-kind="open_mismatches"' not in page
