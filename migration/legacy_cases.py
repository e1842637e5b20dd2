"""Legacy inconsistencies, and support's documented path for them.

A legacy wallet whose own MongoDB fields disagree (credit != historical credit - debit) was
imported by the backfill with its available credit and its debits, so TigerBeetle's
historical credit is credit + debit: the two stores then differ in the historical credit by
the wallet's own excess, and reconciliation reports the wallet. Nothing in the back-office
can fix MongoDB's history, so support records a decision instead (`acknowledge`: who, when,
why, with the figures), and from then on the criteria and the phase gates set that wallet's
mismatches and shadow comparisons aside: not counted, but listed.

Set aside only while the difference is exactly the acknowledged one (same available, same
spent in both stores, historical credits apart by the acknowledged excess): a write lost on
an acknowledged wallet changes its available or spent balance and counts again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.db import IntegrityError, transaction

from domain.ids import WalletKey
from migration.models import AcknowledgedLegacyCase, ReconciliationMismatch

REASON_LENGTH_MIN = 10


class LegacyCaseRefused(ValueError):
    """An acknowledgment refused; the message says why, in support's words."""


class BothStoresRow(Protocol):
    """A row holding a wallet's three fields in both stores: a reconciliation mismatch, a
    shadow comparison (read-only here)."""

    @property
    def client_id(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def issuer(self) -> str: ...
    @property
    def mongo_credit_minor(self) -> int | None: ...
    @property
    def mongo_debit_minor(self) -> int | None: ...
    @property
    def mongo_historical_credit_minor(self) -> int | None: ...
    @property
    def tb_credit_minor(self) -> int | None: ...
    @property
    def tb_debit_minor(self) -> int | None: ...
    @property
    def tb_historical_credit_minor(self) -> int | None: ...


def historical_excess(row: BothStoresRow) -> int | None:
    """MongoDB's historical credit beyond credit + debit (0 for a consistent wallet)."""
    credit, debit = row.mongo_credit_minor, row.mongo_debit_minor
    historical = row.mongo_historical_credit_minor
    if credit is None or debit is None or historical is None:
        return None
    return historical - (credit + debit)


def is_legacy_inconsistency(mismatch: ReconciliationMismatch) -> bool:
    """A legacy wallet whose own MongoDB fields disagree (credit != total received - spent):
    imported as it was, a known data problem rather than a write the migration lost."""
    if mismatch.kind != ReconciliationMismatch.Kind.BALANCE:
        return False
    return historical_excess(mismatch) not in (None, 0)


def differs_only_by_the_excess(row: BothStoresRow, *, excess_minor: int) -> bool:
    """Both stores agree on available and spent, and their historical credits are apart by
    exactly the wallet's MongoDB excess: all the backfill's import of it explains."""
    if row.tb_credit_minor is None or row.tb_debit_minor is None:
        return False
    if row.tb_historical_credit_minor is None or row.mongo_historical_credit_minor is None:
        return False
    return (
        excess_minor != 0
        and historical_excess(row) == excess_minor
        and row.mongo_credit_minor == row.tb_credit_minor
        and row.mongo_debit_minor == row.tb_debit_minor
        and row.mongo_historical_credit_minor - row.tb_historical_credit_minor == excess_minor
    )


class AcknowledgedCases:
    """The acknowledged legacy wallets, read once (they are few): which rows they set aside."""

    def __init__(self, cases: Iterable[AcknowledgedLegacyCase] | None = None) -> None:
        found = AcknowledgedLegacyCase.objects.all() if cases is None else cases
        self.by_key = {WalletKey.from_row(case): case for case in found}

    def __bool__(self) -> bool:
        return bool(self.by_key)

    @property
    def client_ids(self) -> list[str]:
        """For a query's `client_id__in`: the rows that may be set aside."""
        return sorted({key.client_id for key in self.by_key})

    def sets_aside(self, row: BothStoresRow) -> bool:
        """Whether `row` is an acknowledged wallet differing by exactly its decided excess."""
        if isinstance(row, ReconciliationMismatch) and (
            row.kind != ReconciliationMismatch.Kind.BALANCE
        ):
            return False
        case = self.by_key.get(WalletKey.from_row(row))
        if case is None:
            return False
        return differs_only_by_the_excess(row, excess_minor=case.historical_excess_minor)


def refusal_of(mismatch: ReconciliationMismatch) -> str:
    """Why `mismatch` cannot be acknowledged as a legacy case ("" when it can)."""
    if not mismatch.client_id:
        return "This mismatch names no wallet: it is not a legacy case."
    key = WalletKey.from_row(mismatch)
    if not is_legacy_inconsistency(mismatch):
        return (
            f"{key.describe()}: its MongoDB fields agree among themselves, so the difference "
            "is not a legacy inconsistency; re-check the wallet instead."
        )
    excess = historical_excess(mismatch)
    assert excess is not None  # a legacy inconsistency has all three fields
    if not differs_only_by_the_excess(mismatch, excess_minor=excess):
        return (
            f"{key.describe()}: the stores differ in available or spent as well, which the "
            "legacy data does not explain; re-check the wallet instead."
        )
    existing = AcknowledgedLegacyCase.objects.filter(**key.as_columns()).first()
    if existing is not None:
        return (
            f"{key.describe()} was acknowledged already, by {existing.acknowledged_by} on "
            f"{existing.acknowledged_at:%Y-%m-%d %H:%M}."
        )
    return ""


def acknowledge(
    mismatch: ReconciliationMismatch, *, actor: str, reason: str
) -> AcknowledgedLegacyCase:
    """Record support's decision on `mismatch`'s wallet (who, when, why, the figures), or
    raise LegacyCaseRefused saying why it cannot be one."""
    reason = reason.strip()
    if len(reason) < REASON_LENGTH_MIN:
        raise LegacyCaseRefused(
            f"Say why the difference is accepted (at least {REASON_LENGTH_MIN} characters)."
        )
    refused = refusal_of(mismatch)
    if refused:
        raise LegacyCaseRefused(refused)
    key = WalletKey.from_row(mismatch)
    excess = historical_excess(mismatch)
    assert excess is not None and mismatch.mongo_credit_minor is not None
    assert mismatch.mongo_debit_minor is not None
    assert mismatch.mongo_historical_credit_minor is not None
    try:
        with transaction.atomic():
            return AcknowledgedLegacyCase.objects.create(
                **key.as_columns(),
                historical_excess_minor=excess,
                mongo_credit_minor=mismatch.mongo_credit_minor,
                mongo_debit_minor=mismatch.mongo_debit_minor,
                mongo_historical_credit_minor=mismatch.mongo_historical_credit_minor,
                mismatch=mismatch,
                reason=reason,
                acknowledged_by=actor,
            )
    except IntegrityError as exc:  # acknowledged by someone else meanwhile
        raise LegacyCaseRefused(f"{key.describe()} was acknowledged already.") from exc
