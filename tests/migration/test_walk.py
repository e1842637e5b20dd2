"""The whole migration through the REST API: phase 0 -> 1 -> 2 -> 3 -> 4 and back, with
legacy wallets, a backfill during dual write, and writes and voids in every phase. In the
end every balance is exact in both stores and against an independent tally."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from domain.ids import WalletKey
from flags.phases import Phase, current_state
from migration.models import ShadowComparison
from migration.outbox import MirrorState
from tests.migration.conftest import Stores, assert_stores_agree, legacy_wallet, new_key, tx

# The walk checks every balance through every step; the gates are
# tests/migration/test_phase_gates.py: here no day of a criterion is awaited, and the read
# rollout goes to 100 % in one step.
pytestmark = pytest.mark.usefixtures(
    "criteria_not_awaited", "rollout_in_one_step", "steps_without_four_eyes"
)


class Tally:
    """What every balance must be, kept apart from both stores."""

    def __init__(self) -> None:
        self.fields: dict[WalletKey, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.transactions: dict[str, tuple[WalletKey, str, int]] = {}

    def credit(self, key: WalletKey, amount_minor: int, transaction_id: str) -> None:
        fields = self.fields[key]
        fields[0] += amount_minor
        fields[2] += amount_minor
        self.transactions[transaction_id] = (key, "credit", amount_minor)

    def debit(self, key: WalletKey, amount_minor: int, transaction_id: str) -> None:
        fields = self.fields[key]
        fields[0] -= amount_minor
        fields[1] += amount_minor
        self.transactions[transaction_id] = (key, "debit", amount_minor)

    def void(self, transaction_id: str) -> None:
        key, kind, amount_minor = self.transactions.pop(transaction_id)
        fields = self.fields[key]
        if kind == "credit":
            fields[0] -= amount_minor
            fields[1] += amount_minor
        else:
            fields[0] += amount_minor
            fields[2] += amount_minor


class Walker:
    def __init__(self, api: APIClient, stores: Stores) -> None:
        self.api, self.stores, self.tally = api, stores, Tally()

    def url(self, key: WalletKey) -> str:
        return f"/api/clients/{key.client_id}/wallets/{key.country}/{key.currency}"

    def credit(self, key: WalletKey, amount: str) -> str:
        transaction_id = tx()
        response = self.api.post(
            f"{self.url(key)}/credits",
            {"transaction_id": transaction_id, "amount": amount},
            format="json",
        )
        assert response.status_code == 201, response.content
        self.tally.credit(key, int(Decimal(amount) * 100), transaction_id)
        return transaction_id

    def debit(self, key: WalletKey, amount: str) -> str:
        reference_id = tx()
        response = self.api.post(
            f"{self.url(key)}/debits",
            {"reference_id": reference_id, "amount": amount},
            format="json",
        )
        assert response.status_code == 201, response.content
        self.tally.debit(key, int(Decimal(amount) * 100), reference_id)
        return reference_id

    def void(self, transaction_id: str) -> None:
        response = self.api.post(
            f"/api/transactions/{transaction_id}/void", {"reason": "walk"}, format="json"
        )
        assert response.status_code == 200, response.content
        self.tally.void(transaction_id)

    def read(self, key: WalletKey) -> tuple[int, int, int]:
        body = self.api.get(self.url(key)).json()
        credit, debit, historical = (
            int(Decimal(body[name]) * 100) for name in ("credit", "debit", "historical_credit")
        )
        return credit, debit, historical

    def every_phase_step(self, keys: list[WalletKey]) -> None:
        """A little of everything, on every wallet."""
        for key in keys:
            credit_id = self.credit(key, "5.00")
            debit_id = self.debit(key, "1.25")
            self.void(debit_id)
            self.void(credit_id)
            self.debit(key, "0.50")

    def assert_api_reads_the_tally(self, keys: list[WalletKey]) -> None:
        for key in keys:
            assert self.read(key) == tuple(self.tally.fields[key]), key.describe()


def phase(to: Phase, **options: str) -> None:
    args = [str(int(to))] + [f"--{name}={value}" for name, value in options.items()]
    call_command("migration_phase", *args, "--actor", "walk", stdout=StringIO())
    assert current_state().phase == to


def test_the_full_walk_there_and_back_keeps_every_balance_exact(
    stores: Stores, api: APIClient
) -> None:
    walker = Walker(api, stores)
    legacy = [new_key() for _ in range(3)]
    for number, key in enumerate(legacy):
        legacy_wallet(stores, key, credit_minor=10_000 * (number + 1), debit_minor=500)
        walker.tally.fields[key] = [10_000 * (number + 1), 500, 10_000 * (number + 1) + 500]
    born = [new_key() for _ in range(3)]
    for key in born:
        walker.credit(key, "100.00")
    everyone = legacy + born

    walker.every_phase_step(everyone)  # phase 0
    phase(Phase.DUAL_WRITE)
    walker.every_phase_step(everyone)
    call_command("backfill", "--no-progress", stdout=StringIO())
    walker.every_phase_step(everyone)
    call_command("mirror", "--drain", stdout=StringIO())
    assert_stores_agree(stores, everyone)

    phase(Phase.SHADOW_READ, shadow=100)
    walker.every_phase_step(everyone)
    walker.assert_api_reads_the_tally(everyone)
    outcomes = set(ShadowComparison.objects.values_list("outcome", flat=True))
    assert outcomes == {ShadowComparison.Outcome.MATCH}

    phase(Phase.READ_CUTOVER, rollout=100)
    walker.every_phase_step(everyone)
    walker.assert_api_reads_the_tally(everyone)

    phase(Phase.TIGERBEETLE_ONLY)
    walker.every_phase_step(everyone)
    newcomer = new_key()
    walker.credit(newcomer, "42.00")
    everyone.append(newcomer)
    walker.assert_api_reads_the_tally(everyone)

    for step_back, options in (
        (Phase.READ_CUTOVER, {}),
        (Phase.SHADOW_READ, {"shadow": "100"}),
        (Phase.DUAL_WRITE, {}),
    ):
        phase(step_back, **options)
        walker.every_phase_step(everyone)
        walker.assert_api_reads_the_tally(everyone)
    call_command("mirror", "--drain", stdout=StringIO())
    assert_stores_agree(stores, everyone)
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert f"checked {len(everyone)}, matched {len(everyone)}, mismatched 0" in out.getvalue()

    phase(Phase.LEGACY)
    walker.every_phase_step(everyone)
    walker.assert_api_reads_the_tally(everyone)
    for key in everyone:
        assert list(stores.mongo.get_balance(key).fields_minor()) == walker.tally.fields[key]
    waiting = stores.mongo.database.log().count_documents({"mirror_state": MirrorState.PENDING})
    assert waiting == 5 * len(everyone)  # phase 0 writes wait in the outbox, none lost
