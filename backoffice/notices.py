"""Warnings as strong as the problem, about the dual-write outbox: a parked write is an error
(TigerBeetle lacks it and nothing retries it by itself: it says what refused it and what mends
it), a write waiting longer than OUTBOX_PENDING_WARN_S is a warning (the mirror or its worker
is not keeping up), a fresh one is information (the mirror applies it within seconds).

The dashboard and the phase page show the whole outbox's notice, the wallet page the wallet's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from migration.outbox import OutboxDepth, ParkedEntry, WalletWaiting

ERRORS_SHOWN_MAX = 3
# How the mirror words an entry TigerBeetle refused (migration/mirror.py), as against one it
# gave up on after failed runs.
REFUSED_BY_TIGERBEETLE = "TigerBeetle refused"


@dataclass(frozen=True)
class Notice:
    """`level`: error, warning, info, or none (nothing to say)."""

    level: str
    message: str

    @property
    def css_class(self) -> str:
        """Django admin's note classes: red, yellow, blue."""
        return {"error": "errornote", "warning": "warningnote"}.get(self.level, "infonote")


def pending_warn_after_s() -> float:
    return float(settings.OUTBOX_PENDING_WARN_S)


def _refusals(parked: list[ParkedEntry]) -> str:
    reasons = list(dict.fromkeys(entry.mirror_error or "no reason recorded" for entry in parked))
    shown = "; ".join(reasons[:ERRORS_SHOWN_MAX])
    more = f" (and {len(reasons) - ERRORS_SHOWN_MAX} more reasons)" if len(reasons) > 3 else ""
    return f"{shown}{more}"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _writes(count: int) -> str:
    return f"{count} write is" if count == 1 else f"{count} writes are"


def parked_message(count: int, parked: list[ParkedEntry], *, whose: str) -> str:
    message = (
        f"{_writes(count)} parked{whose}: TigerBeetle does not hold them, and the mirror will "
        f"not try them again by itself. What refused them: {_refusals(parked)}. Fix the cause "
        "(docs/migration.md, parked entries), then requeue them."
    )
    if any(entry.mirror_error.startswith(REFUSED_BY_TIGERBEETLE) for entry in parked):
        message += (
            " A write TigerBeetle itself refused keeps its transfer id refused there: a requeue "
            "cannot apply it; the stores have diverged (re-check the wallet; see the runbook)."
        )
    return message


def outbox_notice(depth: OutboxDepth | None, *, parked: list[ParkedEntry]) -> Notice:
    """The whole outbox (dashboard, phase page)."""
    if depth is None:
        return Notice("error", "MongoDB did not answer: the outbox cannot be read.")
    if depth.parked:
        return Notice("error", parked_message(depth.parked, parked, whose=""))
    waiting_backfill = (
        f" {depth.awaiting_backfill} wait for the backfill to import their wallets."
        if depth.awaiting_backfill
        else ""
    )
    if depth.pending and depth.oldest_pending_age_s > pending_warn_after_s():
        return Notice(
            "warning",
            f"{depth.pending} writes wait for the mirror, the oldest for "
            f"{_age(depth.oldest_pending_age_s)} (more than OUTBOX_PENDING_WARN_S, "
            f"{pending_warn_after_s():.0f} s): is the Celery worker, and beat's outbox sweeper, "
            f"running?{waiting_backfill}",
        )
    if depth.pending:
        return Notice(
            "info",
            f"{depth.pending} writes wait for the mirror (the oldest for "
            f"{_age(depth.oldest_pending_age_s)}); it applies them within seconds."
            f"{waiting_backfill}",
        )
    if depth.awaiting_backfill:
        return Notice("info", waiting_backfill.strip())
    return Notice("none", "The outbox is empty: TigerBeetle holds every write MongoDB took.")


def wallet_notice(waiting: WalletWaiting | None, *, parked: list[ParkedEntry]) -> Notice:
    """One wallet's outbox entries (its page)."""
    if waiting is None:
        return Notice("warning", "MongoDB did not answer: this wallet's outbox cannot be read.")
    if waiting.parked:
        return Notice("error", parked_message(waiting.parked, parked, whose=" on this wallet"))
    if waiting.pending and waiting.oldest_pending_at is not None:
        age_s = (datetime.now(UTC) - waiting.oldest_pending_at).total_seconds()
        if age_s > pending_warn_after_s():
            return Notice(
                "warning",
                f"{waiting.pending} writes of this wallet wait for the mirror, the oldest for "
                f"{_age(age_s)} (more than OUTBOX_PENDING_WARN_S, {pending_warn_after_s():.0f} "
                "s): is the Celery worker, and beat's outbox sweeper, running?",
            )
        return Notice(
            "info",
            f"{waiting.pending} writes of this wallet are still waiting for the mirror; it "
            "applies them within seconds.",
        )
    if waiting.awaiting_backfill:
        return Notice(
            "info",
            f"{waiting.awaiting_backfill} writes of this legacy wallet wait for the backfill to "
            "import it.",
        )
    return Notice("none", "")
