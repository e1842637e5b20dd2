"""Four eyes on phase steps (issue 27): a step that overrides its criterion, or enters or
leaves phase 4, is filed from the phase page or the command and changes nothing until
another person holding the permission to change the phase approves it; the step is then
taken with the gates as they are then. Nobody decides their own request; a request expires;
the request and the decision (who, when, why) are kept, and the phase change's audit row
names the approver. The command's break-glass step is named and kept."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from domain import errors
from flags.models import Milestone, PhaseChange
from flags.phases import Phase, current_state
from migration.phase_change import change_phase as move_phase
from staff import phase_approvals
from staff.models import PhaseApproval
from tests.backoffice.conftest import client_for, user_in
from tests.backoffice.test_product_admin import change_phase
from tests.conftest import grant
from tests.migration.conftest import Stores, enter_phase
from tests.migration.gates import criteria_held

OVERRIDE = "flags.override_phase_criterion"


@pytest.fixture(autouse=True)
def _four_eyes_on(settings: Any) -> None:
    settings.FOUR_EYES_PHASE_CHANGES = True
    settings.PHASE_CHANGE_SETTLE_S = 0


def ready_for_phase_4() -> None:
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    criteria_held()


def decide(client: Client, approval: PhaseApproval, *, button: str, reason: str) -> str:
    return client.post(
        f"/admin/staff/phaseapproval/{approval.pk}/decide/",
        {"reason": reason, button: "1"},
        follow=True,
    ).content.decode()


def ask_for_phase_4(client: Client) -> PhaseApproval:
    page = change_phase(client, 4, confirmed=True, note="go").content.decode()
    assert "waits for another person&#x27;s approval because it enters phase 4" in page
    return PhaseApproval.objects.get()


def test_entering_phase_4_from_the_page_is_filed_and_changes_nothing(
    product: Client, product_user: User, stores: Stores
) -> None:
    ready_for_phase_4()

    approval = ask_for_phase_4(product)

    assert current_state().phase == Phase.READ_CUTOVER
    assert not PhaseChange.objects.exists()
    assert (approval.from_phase, approval.to_phase, approval.requested_by, approval.note) == (
        3,
        4,
        product_user.username,
        "go",
    )
    assert approval.state == "pending" and approval.expires_at > timezone.now()
    page = product.get("/admin/migration/phase/").content.decode()
    assert f"Waiting for a second person's approval: request {approval.pk}" in page


def test_a_second_product_member_approves_and_the_step_is_taken(
    product: Client, product_user: User, stores: Stores
) -> None:
    ready_for_phase_4()
    approval = ask_for_phase_4(product)
    approver = user_in("Product")

    page = decide(client_for(approver), approval, button="_approve", reason="checked the run")

    assert "Approved: the migration is now in phase 4" in page
    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    change = PhaseChange.objects.get()
    assert (change.actor, change.approved_by, change.note, change.refused) == (
        product_user.username,
        approver.username,
        "go",
        "",
    )
    approval.refresh_from_db()
    assert (approval.state, approval.decided_by, approval.decision_reason) == (
        "taken",
        approver.username,
        "checked the run",
    )
    assert approval.decided_at is not None and "phase 3 -> 4" in approval.outcome
    audit = product.get("/admin/migration/phase/").content.decode().split('id="flag-audit"')[1]
    assert f"approved by {approver.username}" in audit


def test_nobody_approves_their_own_request(product: Client, stores: Stores) -> None:
    ready_for_phase_4()
    approval = ask_for_phase_4(product)

    form = product.get(f"/admin/staff/phaseapproval/{approval.pk}/decide/").content.decode()
    page = decide(product, approval, button="_approve", reason="me again")

    assert "another person decides it" in form and 'id="decide-form"' not in form
    assert "another person decides it" in page
    assert current_state().phase == Phase.READ_CUTOVER
    assert PhaseApproval.objects.get().state == "pending"


def test_a_rejected_request_is_never_taken(product: Client, stores: Stores) -> None:
    ready_for_phase_4()
    approval = ask_for_phase_4(product)
    rejecter = user_in("Product")

    decide(client_for(rejecter), approval, button="_reject", reason="not during the sale")
    page = decide(client_for(user_in("Product")), approval, button="_approve", reason="go")

    assert "no longer waiting" in page
    assert current_state().phase == Phase.READ_CUTOVER
    approval.refresh_from_db()
    assert (approval.state, approval.decided_by, approval.decision_reason) == (
        "rejected",
        rejecter.username,
        "not during the sale",
    )


def test_approval_takes_the_step_with_the_gates_as_they_are_then(
    product: Client, stores: Stores
) -> None:
    ready_for_phase_4()
    approval = ask_for_phase_4(product)
    Milestone.objects.all().delete()  # the backfill milestone is gone since the request

    page = decide(client_for(user_in("Product")), approval, button="_approve", reason="ok")

    assert "Approved, but refused" in page and "backfill" in page
    assert current_state().phase == Phase.READ_CUTOVER
    approval.refresh_from_db()
    assert approval.state == "refused" and "backfill" in approval.outcome
    assert PhaseChange.objects.get().refused


def test_a_request_expires_undecided(product: Client, stores: Stores) -> None:
    ready_for_phase_4()
    approval = ask_for_phase_4(product)
    PhaseApproval.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    page = decide(client_for(user_in("Product")), approval, button="_approve", reason="late")

    assert current_state().phase == Phase.READ_CUTOVER
    assert PhaseApproval.objects.get().state == "expired"
    assert "no longer waiting: expired undecided" in page
    # Expired, it no longer blocks a new request.
    assert ask_for_phase_4_again(product).state == "pending"


def ask_for_phase_4_again(client: Client) -> PhaseApproval:
    change_phase(client, 4, confirmed=True, note="again")
    return PhaseApproval.objects.get(note="again")


def test_one_request_waits_at_a_time(product: Client, stores: Stores) -> None:
    ready_for_phase_4()
    first = ask_for_phase_4(product)

    page = change_phase(product, 4, confirmed=True, note="twice").content.decode()

    assert "already waits for approval" in page and f"request {first.pk}" in page
    assert PhaseApproval.objects.count() == 1


def test_leaving_phase_4_is_filed_too(product: Client, stores: Stores) -> None:
    ready_for_phase_4()
    move_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)

    page = change_phase(product, 3, confirmed=True, rollout_percent="100").content.decode()

    assert "because it leaves phase 4" in page
    assert current_state().phase == Phase.TIGERBEETLE_ONLY


def test_an_override_is_filed_and_approved_only_by_someone_who_may_override(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)  # 1 -> 2: the criterion has not held
    asker = user_in("Product")
    grant(asker, OVERRIDE)
    asker_client = client_for(asker)
    fields = {"shadow_percent": "5", "override": "on", "override_reason": "board approved"}
    page = change_phase(asker_client, 2, **fields).content.decode()
    assert "because it overrides its criterion" in page
    approval = PhaseApproval.objects.get()
    assert approval.override_reason == "board approved"

    no_override = decide(client_for(user_in("Product")), approval, button="_approve", reason="ok")
    assert "decided by someone who may override" in no_override
    assert current_state().phase == Phase.DUAL_WRITE

    approver = user_in("Product")
    grant(approver, OVERRIDE)
    decide(client_for(approver), approval, button="_approve", reason="seen the figures")

    assert current_state().phase == Phase.SHADOW_READ
    change = PhaseChange.objects.get()
    assert (change.overridden, change.override_reason, change.approved_by) == (
        True,
        "board approved",
        approver.username,
    )


def test_a_step_that_needs_no_second_person_is_taken_at_once(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    criteria_held()

    change_phase(product, 2, shadow_percent="5")

    assert current_state().phase == Phase.SHADOW_READ
    assert not PhaseApproval.objects.exists()


def test_with_the_setting_off_phase_4_is_taken_at_once(
    product: Client, stores: Stores, settings: Any
) -> None:
    settings.FOUR_EYES_PHASE_CHANGES = False
    ready_for_phase_4()

    change_phase(product, 4, confirmed=True)

    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    assert not PhaseApproval.objects.exists()


def command(*arguments: str) -> str:
    out = StringIO()
    call_command("migration_phase", *arguments, stdout=out)
    return out.getvalue()


def test_the_command_files_the_request_and_another_user_approves_it(stores: Stores) -> None:
    ready_for_phase_4()
    asker, approver = user_in("Product"), user_in("Product")

    filed = command("4", "--actor", asker.username)
    approval = PhaseApproval.objects.get()
    assert f"request {approval.pk} filed" in filed
    assert current_state().phase == Phase.READ_CUTOVER
    with pytest.raises(CommandError, match="another person decides it"):
        command("--approve", str(approval.pk), "--actor", asker.username, "--why", "me")
    with pytest.raises(CommandError, match="--why"):
        command("--approve", str(approval.pk), "--actor", approver.username)

    done = command("--approve", str(approval.pk), "--actor", approver.username, "--why", "ok")

    assert "phase 3 -> 4" in done
    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    assert PhaseChange.objects.get().approved_by == approver.username


def test_the_command_rejects_a_request_as_another_user(stores: Stores) -> None:
    ready_for_phase_4()
    command("4", "--actor", user_in("Product").username)
    approval = PhaseApproval.objects.get()

    command("--reject", str(approval.pk), "--actor", user_in("Product").username, "--why", "no")

    assert PhaseApproval.objects.get().state == "rejected"
    assert current_state().phase == Phase.READ_CUTOVER


def test_break_glass_takes_the_step_alone_and_says_so_everywhere(stores: Stores) -> None:
    ready_for_phase_4()
    operator = user_in("Product")
    with pytest.raises(CommandError, match="--why"):
        command("4", "--actor", operator.username, "--break-glass")
    with pytest.raises(CommandError, match="a user who may change the phase"):
        command("4", "--actor", user_in("Support").username, "--break-glass", "--why", "x" * 20)

    command(
        "4", "--actor", operator.username, "--break-glass", "--why", "approver unreachable, outage"
    )

    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    change = PhaseChange.objects.filter(refused="").get()
    assert (change.actor, change.approved_by) == (operator.username, "break glass")
    kept = PhaseApproval.objects.get()
    assert (kept.state, kept.requested_by, kept.decided_by, kept.decision_reason) == (
        "break_glass",
        operator.username,
        operator.username,
        "approver unreachable, outage",
    )


def test_break_glass_is_refused_for_a_step_that_needs_no_second_person(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    criteria_held()
    operator = user_in("Product")

    with pytest.raises(CommandError, match="is for a step that needs a second person"):
        command(
            "2", "--shadow", "5", "--actor", operator.username, "--break-glass", "--why", "y" * 20
        )

    assert current_state().phase == Phase.DUAL_WRITE


def test_break_glass_never_lifts_a_refusal(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    criteria_held()  # but the backfill has not completed
    operator = user_in("Product")

    with pytest.raises(CommandError, match="backfill"):
        command("4", "--actor", operator.username, "--break-glass", "--why", "z" * 20)

    assert current_state().phase == Phase.READ_CUTOVER
    assert not PhaseApproval.objects.exists()
    assert PhaseChange.objects.get().refused


def test_the_auditor_reads_the_requests_and_decides_none(product: Client, stores: Stores) -> None:
    ready_for_phase_4()
    approval = ask_for_phase_4(product)
    auditor = client_for(user_in("Auditor"))

    listed = auditor.get("/admin/staff/phaseapproval/")
    decide_page = auditor.get(f"/admin/staff/phaseapproval/{approval.pk}/decide/")
    decided = auditor.post(
        f"/admin/staff/phaseapproval/{approval.pk}/decide/", {"reason": "x", "_approve": "1"}
    )

    assert listed.status_code == 200 and "it enters phase 4" in listed.content.decode()
    assert decide_page.status_code == 403 and decided.status_code == 403
    assert PhaseApproval.objects.get().state == "pending"


def test_a_failed_dependency_while_taking_it_closes_the_request_as_failed(
    product: Client, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready_for_phase_4()
    approval = ask_for_phase_4(product)

    def mongodb_down(*args: Any, **kwargs: Any) -> None:
        raise errors.StoreUnavailable("MongoDB failed: timed out")

    monkeypatch.setattr(phase_approvals, "change_phase", mongodb_down)
    approver = user_in("Product")
    with pytest.raises(errors.StoreUnavailable):
        phase_approvals.approve(
            approval,
            approver=approver,
            reason="ok",
            stores=phase_approvals.Stores(mongo=stores.mongo, tigerbeetle=stores.batches),
        )

    approval.refresh_from_db()
    assert approval.state == "refused" and approval.outcome.startswith("failed: ")
    assert current_state().phase == Phase.READ_CUTOVER
