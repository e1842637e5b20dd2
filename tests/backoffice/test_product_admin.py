"""The product team in the admin: the phase page with its confirmation step, waffle's admin
with the migration flags read-only, the dashboard; and the roles keeping each team to its
work."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Group
from django.test import Client
from waffle.models import Sample, Switch

from flags.models import FlagChange
from flags.phases import READ_ROLLOUT, Phase, current_state
from migration.models import ShadowComparison
from tests.migration.conftest import Stores, enter_phase, new_key, tx
from tests.migration.gates import criteria_held


def change_phase(client: Client, phase: int, confirmed: bool = False, **fields: Any) -> Any:
    data = {"phase": phase, "note": "test", **fields}
    if confirmed:
        data["confirmed"] = "True"
    return client.post("/admin/migration/phase/", data, follow=True)


def test_the_roles_exist_with_their_permissions(db: None) -> None:
    support = {p.codename for p in Group.objects.get(name="Support").permissions.all()}
    product = {p.codename for p in Group.objects.get(name="Product").permissions.all()}
    assert "void_wallettransfer" in support and "change_phase" not in support
    assert "change_phase" in product and "void_wallettransfer" not in product


def test_the_phase_page_shows_the_resolvers_view(product: Client, stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    page = product.get("/admin/migration/phase/").content.decode()
    assert '<span id="current-phase">3 - read cutover</span>' in page
    assert '<td id="rollout-percent">25.0%</td>' in page


def test_a_flip_that_moves_writes_asks_for_confirmation_first(
    product: Client, stores: Stores
) -> None:
    response = change_phase(product, 1)
    assert "This change moves where money is written" in response.content.decode()
    assert current_state().phase == Phase.LEGACY

    change_phase(product, 1, confirmed=True)

    assert current_state().phase == Phase.DUAL_WRITE


def test_a_rollout_change_needs_no_confirmation_and_is_audited_as_the_user(
    product: Client, product_user: Any, stores: Stores
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=5)
    criteria_held()
    response = change_phase(product, 3, rollout_percent="25")
    assert "now in phase 3" in response.content.decode()
    assert current_state().read_rollout_percent == Decimal(25)
    change = FlagChange.objects.filter(flag_name=READ_ROLLOUT).first()
    assert (change.new_value, change.actor) == ("25", product_user.username)


def test_a_refused_phase_change_shows_the_reason(product: Client, stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    response = change_phase(product, 4, confirmed=True)
    assert "The backfill has not completed" in response.content.decode()
    assert current_state().phase == Phase.READ_CUTOVER


def test_waffles_admin_keeps_the_migration_flags_read_only_for_product(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=5)
    sample = Sample.objects.get(name=READ_ROLLOUT)
    response = product.post(
        f"/admin/waffle/sample/{sample.pk}/change/",
        {"name": READ_ROLLOUT, "percent": "20.0", "note": ""},
    )
    assert response.status_code == 403
    assert current_state().read_rollout_percent == Decimal(5)


def test_waffles_admin_still_edits_other_flags_and_audits_nothing(
    product: Client, stores: Stores
) -> None:
    switch = Switch.objects.create(name="some_feature", active=False)
    response = product.post(
        f"/admin/waffle/switch/{switch.pk}/change/",
        {"name": "some_feature", "active": "on", "note": ""},
    )
    assert response.status_code == 302
    assert Switch.objects.get(pk=switch.pk).active
    assert not FlagChange.objects.exists()


def test_the_dashboard_shows_phase_criteria_and_server_side_charts(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.phased.get_balance(key)
    assert ShadowComparison.objects.filter(outcome="match").count() == 1

    page = product.get("/admin/migration/dashboard/").content.decode()

    assert '<span id="dashboard-phase">2 - shadow read</span>' in page
    criteria = page.split('id="criteria"')[1].split("</table>")[0]
    assert "Balance match rate, shadow reads (7 days)" in criteria
    assert "100.0000% of 1" in criteria
    assert "Writes lost" in criteria
    assert "0 entries pending" in page.split('id="outbox"')[1]
    chart = page.split('id="match-rate-chart"')[1].split("</svg>")[0]
    assert "<svg" in chart
    assert "<script" not in chart.replace('<script type="text/javascript">window.pygal', "")
    assert "http" not in chart.split("xmlns")[0] and "kozea" not in chart  # nothing from a CDN


def test_support_cannot_flip_a_flag(support: Client, stores: Stores) -> None:
    assert change_phase(support, 1, confirmed=True).status_code == 403
    switch = Switch.objects.create(name="some_feature", active=False)
    assert support.get(f"/admin/waffle/switch/{switch.pk}/change/").status_code == 403
    assert current_state().phase == Phase.LEGACY


def test_support_cannot_see_the_dashboard(support: Client, stores: Stores) -> None:
    assert support.get("/admin/migration/dashboard/").status_code == 403


def test_product_cannot_void(product: Client, stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, credit_id = new_key(), tx()
    stores.phased.add_credit(key, 100, credit_id)
    response = product.post(
        f"/admin/registry/wallettransfer/void/{credit_id}/", {"reason": "not mine to void"}
    )
    assert response.status_code == 403
    assert stores.mongo.get_transaction(credit_id).state == "posted"


def test_the_admin_index_links_the_migration_pages_for_product_only(
    product: Client, support: Client
) -> None:
    assert 'href="/admin/migration/dashboard/"' in product.get("/admin/").content.decode()
    assert 'href="/admin/migration/dashboard/"' not in support.get("/admin/").content.decode()
