"""Phase 2's shadow reads: a sampled MongoDB balance compared with TigerBeetle's, off the
request path.

The comparison is exact, not "roughly at the same time": the sampled read carries the
MongoDB `wallet_seq` it saw, and TigerBeetle's balance at that same point is read from the
account's history (the balance just before the transfer of the wallet's next logged change,
or the current balance if there is none). The mirror is first run for the wallet, so lag is
never reported as a mismatch. A mismatch raises an alert (`migration.alerts`: one open per
wallet), unless it is an acknowledged legacy wallet's known difference.
"""

from __future__ import annotations

import time

from django.urls import reverse

from domain import errors
from domain.ids import WalletKey
from domain.wallets import WalletBalance
from flags.phases import current_state
from ledger import history, metrics
from ledger.batches import LedgerBatches
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from migration import alerts
from migration.legacy_cases import AcknowledgedCases
from migration.mirror import Mirror
from migration.models import Alert, ShadowComparison
from migration.outbox import MirrorOutbox, MirrorState
from registry import accounts as account_registry

FIELDS = ("credit", "debit", "historical_credit")


def compare_shadow_read(
    mongo_balance: WalletBalance,
    wallet_seq: int,
    outbox: MirrorOutbox,
    tigerbeetle: TigerBeetleWalletStore,
    batches: LedgerBatches,
    mongo_latency_us: int | None = None,
) -> ShadowComparison:
    """Compare, record and count one sampled read: `tigerbeetle` answers the wallet's balance
    now as a client reads it, `batches` mirrors the wallet first and reads its history."""
    key = mongo_balance.key
    comparison = ShadowComparison(
        **key.as_columns(),
        wallet_seq=wallet_seq,
        mongo_credit_minor=_posted_credit(mongo_balance),
        mongo_debit_minor=mongo_balance.debit_minor,
        mongo_historical_credit_minor=mongo_balance.historical_credit_minor,
        mongo_latency_us=mongo_latency_us,
    )
    try:
        _compare(comparison, key, mongo_balance, wallet_seq, outbox, tigerbeetle, batches)
    except errors.StoreUnavailable as exc:
        comparison.outcome = ShadowComparison.Outcome.SKIPPED
        comparison.detail = str(exc)[:300]
    comparison.save()
    metrics.SHADOW_COMPARISONS.labels(comparison.outcome).inc()
    if comparison.outcome == ShadowComparison.Outcome.MISMATCH:
        _alert(comparison, key)
    return comparison


def _alert(comparison: ShadowComparison, key: WalletKey) -> None:
    """A mismatch means money differs: one open alert per wallet, with both stores' fields
    (an acknowledged legacy wallet differing by its known excess alone is set aside)."""
    if AcknowledgedCases().sets_aside(comparison):
        return
    alerts.raise_alert(
        Alert.Kind.SHADOW_MISMATCH,
        case=alerts.wallet_case(key),
        wallet=key,
        figures={
            "comparison_id": comparison.pk,
            "wallet_seq": comparison.wallet_seq,
            "differs_in": comparison.mismatched_fields,
            "mongo_minor": [
                comparison.mongo_credit_minor,
                comparison.mongo_debit_minor,
                comparison.mongo_historical_credit_minor,
            ],
            "tigerbeetle_minor": [
                comparison.tb_credit_minor,
                comparison.tb_debit_minor,
                comparison.tb_historical_credit_minor,
            ],
            "fields": list(FIELDS),
            "currency": key.currency,
        },
        link=reverse("admin:migration_shadowcomparison_change", args=[comparison.pk]),
    )


def _compare(
    comparison: ShadowComparison,
    key: WalletKey,
    mongo_balance: WalletBalance,
    wallet_seq: int,
    outbox: MirrorOutbox,
    tigerbeetle: TigerBeetleWalletStore,
    batches: LedgerBatches,
) -> None:
    if not current_state().in_dual_write_share(key.client_id):
        comparison.outcome = ShadowComparison.Outcome.SKIPPED
        comparison.detail = "its client is outside the dual-write share"
        return
    Mirror(outbox, batches).drain(keys=[key])
    if account_registry.find_account(key) is None:
        comparison.outcome = ShadowComparison.Outcome.MISSING
        comparison.detail = "no TigerBeetle account yet (legacy wallet before the backfill)"
        return
    behind = outbox.unmirrored_up_to(key, wallet_seq)
    if behind.get(MirrorState.PENDING):
        comparison.outcome = ShadowComparison.Outcome.MISSING
        comparison.detail = f"{behind[MirrorState.PENDING]} entries wait for the mirror"
        return
    following = outbox.next_entry_after(key, wallet_seq)
    if following is not None and not following.tb_timestamp:
        comparison.outcome = ShadowComparison.Outcome.SKIPPED
        comparison.detail = f"the next change is {following.mirror_state}, not mirrored"
        return
    # TigerBeetle's read is timed alone: every MongoDB query is made before the clock starts
    # (phase 2 -> 3 waits for this latency to be under half of MongoDB's).
    started = time.perf_counter()
    if following is None:
        tb_balance = tigerbeetle.get_balance(key)
    else:
        assert following.tb_timestamp  # mirrored: it has TigerBeetle's timestamp
        tb_balance = history.balance_before(batches, key, tb_timestamp=following.tb_timestamp)
    comparison.tb_latency_us = int((time.perf_counter() - started) * 1_000_000)
    comparison.tb_credit_minor = _posted_credit(tb_balance)
    comparison.tb_debit_minor = tb_balance.debit_minor
    comparison.tb_historical_credit_minor = tb_balance.historical_credit_minor
    different = [
        name
        for name, mongo_value, tb_value in zip(
            FIELDS, _posted(mongo_balance), _posted(tb_balance), strict=True
        )
        if mongo_value != tb_value
    ]
    comparison.mismatched_fields = ",".join(different)
    comparison.outcome = (
        ShadowComparison.Outcome.MISMATCH if different else ShadowComparison.Outcome.MATCH
    )
    if behind.get(MirrorState.PARKED):
        comparison.detail = f"{behind[MirrorState.PARKED]} entries parked by the mirror"


def _posted_credit(balance: WalletBalance) -> int:
    """The posted credit (available + held): what holds placed, released or expired between
    the read and TigerBeetle's point do not move, so a comparison is of posted amounts; held
    amounts are reconciliation's (`migration.reconciliation`, kind `held`)."""
    return balance.credit_minor + balance.held_minor


def _posted(balance: WalletBalance) -> tuple[int, int, int]:
    return (_posted_credit(balance), balance.debit_minor, balance.historical_credit_minor)
