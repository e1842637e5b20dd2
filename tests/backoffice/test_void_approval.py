"""Four eyes on large voids (issue 27): a void above FOUR_EYES_VOID_ABOVE waits for a second
staff member's approval; nobody approves their own; the request and the decision (who, when,
why) are kept."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from domain.ids import WalletKey
from flags.phases import Phase
from registry.models import WalletTransfer
from staff.models import VoidApproval
from tests.backoffice.conftest import client_for, user_in
from tests.backoffice.test_support_admin import void
from tests.migration.conftest import Stores, enter_phase, new_key, tx
from wallet_site.settings import amounts_by_currency

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _approval_above_twenty(settings: Any) -> None:
    settings.FOUR_EYES_VOID_ABOVE = {"*": Decimal("20")}


@pytest.fixture
def wallet(stores: Stores) -> tuple[WalletKey, str, str]:
    """A mirrored wallet with a credit of 100.00 and a debit of 30.00."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    credit_id, debit_id = tx(), tx()
    stores.phased.add_credit(key, 10_000, credit_id)
    stores.phased.subtract_credit(key, 3_000, debit_id)
    return key, credit_id, debit_id


def decide(client: Client, action: str, approval: VoidApproval) -> Any:
    return client.post(
        "/admin/staff/voidapproval/",
        {"action": action, "_selected_action": [approval.pk]},
        follow=True,
    )


def test_a_void_above_the_amount_waits_and_changes_nothing(
    support: Client, support_user: Any, wallet: Any, stores: Stores
) -> None:
    key, _, debit_id = wallet

    answer = void(support, debit_id, reason="customer disputed")

    assert "waits for another staff member&#x27;s approval" in answer.content.decode()
    assert stores.mongo.get_balance(key).credit_minor == 7_000
    approval = VoidApproval.objects.get()
    assert (approval.transaction_id, approval.amount_minor, approval.requested_by) == (
        debit_id,
        3_000,
        support_user.username,
    )
    assert approval.state == "pending"


def test_a_void_at_or_below_the_amount_is_made_at_once(
    support: Client, wallet: Any, stores: Stores, settings: Any
) -> None:
    settings.FOUR_EYES_VOID_ABOVE = {"*": Decimal("30")}
    key, _, debit_id = wallet

    void(support, debit_id, reason="customer disputed")

    assert stores.mongo.get_balance(key).credit_minor == 10_000
    assert not VoidApproval.objects.exists()


def test_a_second_support_member_approves_and_the_void_is_made(
    support: Client, support_user: Any, wallet: Any, stores: Stores
) -> None:
    key, _, debit_id = wallet
    void(support, debit_id, reason="customer disputed")
    second = user_in("Support")

    answer = decide(client_for(second), "approve", VoidApproval.objects.get())

    assert f"Approved: voided {debit_id}." in answer.content.decode()
    assert stores.mongo.get_balance(key).credit_minor == 10_000
    row = WalletTransfer.objects.get(transaction_id=debit_id)
    assert row.voided_by == support_user.username
    assert row.void_reason == f"customer disputed (approved by {second.username})"
    approval = VoidApproval.objects.get()
    assert (approval.state, approval.decided_by) == ("voided", second.username)
    assert approval.decided_at is not None


def test_nobody_approves_their_own_void(support: Client, wallet: Any, stores: Stores) -> None:
    key, _, debit_id = wallet
    void(support, debit_id, reason="customer disputed")

    answer = decide(support, "approve", VoidApproval.objects.get())

    assert "another person approves it" in answer.content.decode()
    assert stores.mongo.get_balance(key).credit_minor == 7_000
    assert VoidApproval.objects.get().state == "pending"


def test_a_rejected_void_is_never_made(support: Client, wallet: Any, stores: Stores) -> None:
    key, _, debit_id = wallet
    void(support, debit_id, reason="customer disputed")
    second = user_in("Support")

    decide(client_for(second), "reject", VoidApproval.objects.get())
    decide(client_for(user_in("Support")), "approve", VoidApproval.objects.get())

    assert stores.mongo.get_balance(key).credit_minor == 7_000
    assert (VoidApproval.objects.get().state, VoidApproval.objects.get().decided_by) == (
        "rejected",
        second.username,
    )


def test_asking_twice_keeps_one_request(support: Client, wallet: Any) -> None:
    debit_id = wallet[2]
    void(support, debit_id, reason="customer disputed")

    answer = void(support, debit_id, reason="again")

    assert "already waits for approval" in answer.content.decode()
    assert VoidApproval.objects.count() == 1


def test_each_currency_has_its_own_amount(support: Client, stores: Stores, settings: Any) -> None:
    """150,000 JPY is about 1,000 USD: a void of 100,000 JPY is made at once where one of
    30.00 USD (above "*", 20) waits."""
    settings.FOUR_EYES_VOID_ABOVE = {"JPY": Decimal("150000"), "*": Decimal("20")}
    enter_phase(Phase.DUAL_WRITE)
    yen, dollars = new_key("JPY"), new_key("USD")
    yen_debit, dollar_debit = tx(), tx()
    stores.phased.add_credit(yen, 200_000, tx())
    stores.phased.subtract_credit(yen, 100_000, yen_debit)
    stores.phased.add_credit(dollars, 10_000, tx())
    stores.phased.subtract_credit(dollars, 3_000, dollar_debit)

    void(support, yen_debit, reason="customer disputed")
    void(support, dollar_debit, reason="customer disputed")

    assert stores.mongo.get_balance(yen).credit_minor == 200_000
    assert stores.mongo.get_balance(dollars).credit_minor == 7_000
    assert VoidApproval.objects.get().transaction_id == dollar_debit


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("USD=1000,JPY=150000,*=1000", {"USD": "1000", "JPY": "150000", "*": "1000"}),
        ("jpy=150000, *=999.99", {"JPY": "150000", "*": "999.99"}),
        ("1000", {"*": "1000"}),  # one figure for every currency, as before
        ("", {}),  # no four eyes on voids
    ],
)
def test_the_setting_reads_an_amount_per_currency(raw: str, parsed: dict[str, str]) -> None:
    amounts = amounts_by_currency(raw, name="FOUR_EYES_VOID_ABOVE")
    assert amounts == {code: Decimal(value) for code, value in parsed.items()}


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("USD=1000", "needs \\*=AMOUNT"),
        ("DOLLARS=5,*=1", "not a currency code"),
        ("USD=lots,*=1", "not an amount"),
        ("USD=-1,*=1", "0 or more"),
        ("*=NaN", "0 or more"),
    ],
)
def test_the_setting_refuses_what_it_cannot_read(raw: str, complaint: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=complaint):
        amounts_by_currency(raw, name="FOUR_EYES_VOID_ABOVE")
