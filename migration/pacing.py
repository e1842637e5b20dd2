"""A rate for the migration's long jobs, so they do not starve the API's clients.

The backfill and reconciliation read every MongoDB wallet as fast as the machine lets them;
on a small host they share its cores with the web workers, and the clients' write latency
rises while they run (issue 25). `WalletPace` is a token bucket over wallets: the jobs' scan
(`migration.legacy_scan.LegacyScan.wallet_batches`) takes a page's wallets from it before
handing the page on, and sleeps while the bucket is in debt. The bucket holds one second of
wallets, so a page larger than that is let through and paid for by the sleep after it.

MIGRATION_JOB_MAX_WALLETS_PER_S sets the rate (0: no limit). A hand-written bucket rather
than a library's (pyrate-limiter, installed for schemathesis): a page's weight may exceed a
second's capacity, which those refuse, and this one is a dozen lines with an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class WalletPace:
    """At most `wallets_per_s` wallets a second on average, one second's worth at once."""

    def __init__(
        self,
        wallets_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert wallets_per_s > 0, "a pace needs a positive rate (no pace: none)"
        self.wallets_per_s = wallets_per_s
        self.capacity = wallets_per_s
        self.tokens = wallets_per_s
        self.clock = clock
        self.sleep = sleep
        self.updated = clock()
        self.slept_s = 0.0

    def take(self, wallets: int) -> float:
        """Spend `wallets`; sleep until the bucket is out of debt. Returns the seconds slept."""
        assert wallets >= 0
        now = self.clock()
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.wallets_per_s)
        self.updated = now
        self.tokens -= wallets
        if self.tokens >= 0:
            return 0.0
        wait_s = -self.tokens / self.wallets_per_s
        self.sleep(wait_s)
        self.slept_s += wait_s
        return wait_s


def job_pace(wallets_per_s: float) -> WalletPace | None:
    """The pace of a rate setting (0 or less: none)."""
    return WalletPace(wallets_per_s) if wallets_per_s > 0 else None
