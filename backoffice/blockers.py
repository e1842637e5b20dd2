"""The actions on what blocks the migration, each audited (`migration.BlockerAction`): requeue
parked outbox entries and queue the mirror, queue a reconciliation now, re-check wallets in
both stores. The admin's buttons (backoffice/blocker_views.py) call these; each checks nothing
of permissions (the views do) and answers what to tell the person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from backoffice.admin_base import format_money
from backoffice.selectors import BALANCE_WORDS, FIELDS
from domain import errors
from domain.ids import WalletKey
from domain.wallets import WalletBalance
from ledger.backends import LedgerUnavailable
from migration import tasks
from migration.criteria import last_reconciliation
from migration.models import BlockerAction, ReconciliationMismatch, ReconciliationRun
from migration.routing import key_to_dict
from migration.runtime import process_runtime

# A run not finished this long after it started is taken for dead (its worker stopped): a new
# one may be queued, and the run list stops refreshing for it.
RUN_PRESUMED_DEAD_AFTER = timedelta(hours=6)
# Wallets the dashboard's "re-check them" button re-checks at once (each is a mirror drain and
# two reads).
RECHECK_AT_ONCE_MAX = 50
# Wallets whose mirror a requeue of every parked entry queues; the outbox sweeper takes the
# rest on its next run.
REQUEUE_MIRRORS_MAX = 500


@dataclass(frozen=True)
class Outcome:
    """What an action did, for the person's message: `ok` False when it did not act."""

    ok: bool
    message: str


def _audit(
    actor: str,
    *,
    action: str,
    outcome: str,
    key: WalletKey | None = None,
    run: ReconciliationRun | None = None,
) -> None:
    BlockerAction.objects.create(
        actor=actor,
        action=action,
        outcome=outcome[:500],
        run=run,
        **(key.as_columns() if key else {}),
    )


def requeue_parked(*, actor: str, key: WalletKey | None = None) -> Outcome:
    """Parked outbox entries (all, or one wallet's) back to pending, and the mirror queued for
    them. An entry TigerBeetle refuses again is parked again, with the reason."""
    outbox = process_runtime().outbox
    whose = f"wallet {key.describe()}" if key else "every wallet"
    try:
        keys = [key] if key else outbox.parked_wallets(limit=REQUEUE_MIRRORS_MAX)
        requeued = outbox.requeue_parked([key] if key else None)
    except errors.StoreUnavailable as exc:
        return Outcome(False, f"Nothing requeued: MongoDB did not answer ({exc.message}).")
    if not requeued:
        message = f"No parked outbox entry of {whose} to requeue."
        _audit(actor, action=BlockerAction.Action.REQUEUE_PARKED, outcome=message, key=key)
        return Outcome(False, message)
    try:
        for wallet in keys:
            tasks.mirror_wallet.delay(key_to_dict(wallet))
        queued = "the mirror is queued for them"
    except (BrokerUnavailable, errors.StoreUnavailable, LedgerUnavailable) as exc:
        queued = f"the mirror could not be queued ({exc}); the outbox sweeper takes them"
    message = (
        f"Requeued {requeued} parked outbox entries of {whose}; {queued}. An entry TigerBeetle "
        "refuses again is parked again with the reason."
    )
    _audit(actor, action=BlockerAction.Action.REQUEUE_PARKED, outcome=message, key=key)
    return Outcome(True, message)


def unfinished_reconciliation() -> ReconciliationRun | None:
    """A run queued or running now (not one presumed dead)."""
    since = timezone.now() - RUN_PRESUMED_DEAD_AFTER
    return ReconciliationRun.objects.filter(finished_at__isnull=True, started_at__gte=since).first()


def queue_reconciliation(*, actor: str) -> Outcome:
    """A reconciliation run recorded as queued by `actor` and sent to the worker (the request
    does not wait for it); refused while another one is queued or running."""
    running = unfinished_reconciliation()
    if running is not None:
        return Outcome(
            False,
            f"A reconciliation is {running.status} already (started {running.started_at:%H:%M} "
            f"by {running.triggered_by}): see its progress in the reconciliation runs.",
        )
    run = ReconciliationRun.objects.create(triggered_by=f"{actor} (admin)")
    try:
        tasks.reconcile.delay(run.triggered_by, run_id=run.pk)
    except BrokerUnavailable as exc:
        run.delete()
        return Outcome(False, f"The reconciliation could not be queued: {exc}. Try again.")
    run.refresh_from_db()
    message = (
        f"Reconciliation run {run.pk} finished: {run.checked} wallets checked, "
        f"{run.mismatched} mismatched, {run.transfer_differences} transfer differences."
        if run.finished_at
        else f"Reconciliation run {run.pk} is queued; the reconciliation runs show its progress."
    )
    _audit(actor, action=BlockerAction.Action.RUN_RECONCILIATION, outcome=message, run=run)
    return Outcome(True, message)


def _describe_balance(balance: WalletBalance | None, missing: str) -> str:
    if balance is None:
        return missing
    currency = balance.key.currency
    return ", ".join(
        f"{format_money(value, currency)} {BALANCE_WORDS[name][0]}"
        for name, value in zip(FIELDS, balance.fields_minor(), strict=True)
    )


def recheck_wallet(key: WalletKey, actor: str) -> tuple[bool, str]:
    """Re-check one wallet in both stores now (mirroring it first). When they agree, the
    wallet's open balance mismatches are marked resolved by `actor` (a transfer registry case
    is not: only its repair resolves it). Answers (agree, message)."""
    try:
        mongo, tb = process_runtime().reconciliation().recheck(key)
    except errors.StoreUnavailable as exc:
        return False, f"Re-check of wallet {key.describe()} not made: {exc.message}."
    except LedgerUnavailable as exc:
        return False, f"Re-check of wallet {key.describe()} not made: TigerBeetle: {exc}."
    if mongo is not None and mongo == tb:
        ReconciliationMismatch.objects.filter(
            **key.as_columns(),
            kind__in=ReconciliationMismatch.BALANCE_KINDS,
            resolved_at__isnull=True,
        ).update(resolved_at=timezone.now(), resolved_by=actor)
        agree, message = True, f"Re-check of wallet {key.describe()}: both stores agree now."
    else:
        agree, message = (
            False,
            (
                f"Re-check of wallet {key.describe()}: still different. MongoDB: "
                f"{_describe_balance(mongo, 'no wallet')}. TigerBeetle: "
                f"{_describe_balance(tb, 'no account')}."
            ),
        )
    _audit(actor, action=BlockerAction.Action.RECHECK_WALLET, outcome=message, key=key)
    return agree, message


def open_balance_mismatches() -> list[ReconciliationMismatch]:
    """The last run's balance mismatches no re-check has resolved, by wallet."""
    run = last_reconciliation()
    if run is None:
        return []
    return list(
        run.mismatches.filter(
            kind__in=ReconciliationMismatch.BALANCE_KINDS, resolved_at__isnull=True
        ).exclude(client_id="")
    )


def recheck_mismatched(*, actor: str) -> Outcome:
    """Re-check the wallets of the last run's open balance mismatches (up to
    RECHECK_AT_ONCE_MAX at once)."""
    keys = sorted(
        {WalletKey.from_row(m) for m in open_balance_mismatches()}, key=WalletKey.sort_key
    )
    if not keys:
        return Outcome(False, "No wallet differs in the last reconciliation: nothing to re-check.")
    results = [recheck_wallet(key, actor) for key in keys[:RECHECK_AT_ONCE_MAX]]
    agreeing = sum(1 for agree, _ in results if agree)
    still = [message for agree, message in results if not agree]
    message = f"Re-checked {len(results)} wallets: {agreeing} agree now."
    if still:
        message += f" {len(still)} still differ: " + " ".join(still[:3])
    if len(keys) > RECHECK_AT_ONCE_MAX:
        message += f" {len(keys) - RECHECK_AT_ONCE_MAX} more wait for another re-check."
    return Outcome(not still, message)
