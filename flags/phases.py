"""The migration phases, read from django-waffle's rows, and the combinations of flags the
migration must never be in. The rules of a step from one phase to another are
`migration.phase_plan`'s.

The product team flips these in the admin or with `manage.py migration_phase`; the wallet
service asks `current_state()` where writes go and where a client's read goes.

| waffle object            | kind   | meaning                                                   |
| ------------------------ | ------ | --------------------------------------------------------- |
| wallet_dual_write        | switch | phase >= 1: MongoDB writes are mirrored into TigerBeetle   |
| wallet_dual_write_share  | sample | phase >= 1: the share of clients mirrored (no row: 100)   |
| wallet_shadow_read       | sample | phase 2: this percent of reads is also compared on TB     |
| wallet_read_cutover      | switch | phase 3: reads of the rollout share come from TigerBeetle |
| wallet_read_rollout      | sample | phase 3: the share of clients (by stable bucket) on TB    |
| wallet_tigerbeetle_only  | switch | phase 4: TigerBeetle is the only store                    |
| wallet_writes_paused     | switch | set by a phase change for its few seconds: writes get 503 |
"""

from __future__ import annotations

import enum
import functools
import hashlib
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from waffle import get_waffle_sample_model, get_waffle_switch_model

DUAL_WRITE = "wallet_dual_write"
SHADOW_READ = "wallet_shadow_read"
READ_CUTOVER = "wallet_read_cutover"
READ_ROLLOUT = "wallet_read_rollout"
DUAL_WRITE_SHARE = "wallet_dual_write_share"
TIGERBEETLE_ONLY = "wallet_tigerbeetle_only"
WRITES_PAUSED = "wallet_writes_paused"
SWITCHES = (DUAL_WRITE, READ_CUTOVER, TIGERBEETLE_ONLY, WRITES_PAUSED)
SAMPLES = (SHADOW_READ, READ_ROLLOUT, DUAL_WRITE_SHARE)
BUCKETS = 10_000
PERCENT_STEP = Decimal("0.1")  # waffle keeps a sample's percent with one decimal place
# The dual-write share with no row: every client, as before the share existed.
DUAL_WRITE_SHARE_DEFAULT = Decimal(100)


class Phase(enum.IntEnum):
    LEGACY = 0
    DUAL_WRITE = 1
    SHADOW_READ = 2
    READ_CUTOVER = 3
    TIGERBEETLE_ONLY = 4


class InvalidPhaseChange(ValueError):
    """A phase change refused (by its plan, by what executing it found, or a combination of
    flags the migration must never be in); the message says why."""


@dataclass(frozen=True)
class MigrationState:
    """One consistent reading of the flags."""

    dual_write: bool
    shadow_read_percent: Decimal
    read_cutover: bool
    read_rollout_percent: Decimal
    tigerbeetle_only: bool
    # Held by a phase change that moves where money is written; not part of any phase.
    writes_paused: bool = False
    # The share of clients whose wallets are dual-written (by the stable bucket the read
    # rollout uses): the others stay on MongoDB alone until the share takes them in.
    dual_write_percent: Decimal = DUAL_WRITE_SHARE_DEFAULT

    @property
    def phase(self) -> Phase:
        if self.tigerbeetle_only:
            return Phase.TIGERBEETLE_ONLY
        if self.read_cutover:
            return Phase.READ_CUTOVER
        if self.dual_write and self.shadow_read_percent > 0:
            return Phase.SHADOW_READ
        if self.dual_write:
            return Phase.DUAL_WRITE
        return Phase.LEGACY

    @property
    def writes_to_mongo(self) -> bool:
        return not self.tigerbeetle_only

    @property
    def mirrors_to_tigerbeetle(self) -> bool:
        return self.dual_write and not self.tigerbeetle_only

    def in_dual_write_share(self, client_id: str) -> bool:
        """Whether this client's wallets are inside the dual-write share: decided by the
        client id alone, so every wallet of the client and every operation on it is in or
        out together (a wallet is never half dual-written)."""
        return in_share(client_id, self.dual_write_percent)

    def mirrors_wallets_of(self, client_id: str) -> bool:
        """Phases 1-3: whether this client's writes are mirrored into TigerBeetle."""
        return self.mirrors_to_tigerbeetle and self.in_dual_write_share(client_id)

    def reads_from_tigerbeetle(self, client_id: str) -> bool:
        """Phase 4: everyone; phase 3: clients whose stable bucket is inside the rollout and
        inside the dual-write share (TigerBeetle is kept current for those only)."""
        if self.tigerbeetle_only:
            return True
        if not self.read_cutover:
            return False
        return in_share(client_id, self.read_rollout_percent) and self.in_dual_write_share(
            client_id
        )

    def shadows(self, sample_draw: Decimal, *, client_id: str) -> bool:
        """Phase 2 only: whether a read whose uniform draw in [0, 100) is this also compares
        (a client outside the dual-write share has nothing in TigerBeetle to compare)."""
        return (
            self.phase == Phase.SHADOW_READ
            and sample_draw < self.shadow_read_percent
            and self.in_dual_write_share(client_id)
        )

    def problems(self) -> list[str]:
        """Why this combination is not allowed (empty when it is): a step's plan refuses with
        these, and `flags.audit.apply_state` checks them again as the last line."""
        found = []
        if self.shadow_read_percent > 0 and not self.dual_write:
            found.append("shadow reads compare TigerBeetle, which only dual write keeps current")
        if self.read_cutover and not self.dual_write:
            found.append("read cutover needs dual write: TigerBeetle would serve stale balances")
        if self.tigerbeetle_only and not self.dual_write:
            found.append(
                "TigerBeetle-only comes after dual write; step back to phase 3 (read cutover) first"
            )
        if self.tigerbeetle_only and self.dual_write_percent < 100:
            found.append(
                "TigerBeetle-only needs every client dual-written: raise the dual-write share "
                "to 100% first"
            )
        for name, percent in (
            ("shadow read", self.shadow_read_percent),
            ("read rollout", self.read_rollout_percent),
            ("dual-write", self.dual_write_percent),
        ):
            if not Decimal(0) <= percent <= Decimal(100):
                found.append(f"{name} share must be between 0 and 100 percent")
        return found


def client_bucket(client_id: str) -> int:
    """A client's stable rollout bucket in [0, 10000): the same client, the same store.
    The read rollout and the dual-write share both use it, so the clients read from
    TigerBeetle at r% are the first r% dual-written: the longest mirrored."""
    digest = hashlib.sha256(b"wallet-read-rollout:" + client_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def share_bucket_limit(percent: Decimal) -> int:
    """The buckets below this are inside a share of `percent` (a whole number: a share has
    one decimal place, a bucket is a hundredth of a percent)."""
    return int(percent * BUCKETS / 100)


def in_share(client_id: str, percent: Decimal) -> bool:
    """Whether the client's stable bucket is inside a share of `percent` of clients (no hash
    for a share of every client or of none: the mirror and reconciliation ask per entry)."""
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    return client_bucket(client_id) < share_bucket_limit(percent)


def current_state() -> MigrationState:
    """The flags as the database holds them now, in one query.

    Never through waffle's cache: that cache is per process with the embedded default
    (local memory), so another process would act on an old phase for minutes. Reading the
    rows on every operation means every process follows a phase change from its next
    operation on, whatever the cache backend; a flag that has no row yet is off (0%).
    """
    with connection.cursor() as cursor:
        cursor.execute(_flags_query(), [*SWITCHES, *SAMPLES])
        values = {
            name: Decimal(str(value)).quantize(PERCENT_STEP) for name, value in cursor.fetchall()
        }
    return MigrationState(
        dual_write=values.get(DUAL_WRITE, 0) > 0,
        shadow_read_percent=values.get(SHADOW_READ, Decimal(0)),
        read_cutover=values.get(READ_CUTOVER, 0) > 0,
        read_rollout_percent=values.get(READ_ROLLOUT, Decimal(0)),
        tigerbeetle_only=values.get(TIGERBEETLE_ONLY, 0) > 0,
        writes_paused=values.get(WRITES_PAUSED, 0) > 0,
        dual_write_percent=values.get(DUAL_WRITE_SHARE, DUAL_WRITE_SHARE_DEFAULT),
    )


@functools.cache
def _flags_query() -> str:
    """Every migration switch (as 1 or 0) and sample (its percent) by name. Plain SQL built
    once: the ORM compiling a union on every operation cost ~30x the query itself."""
    quote = connection.ops.quote_name
    switches = quote(get_waffle_switch_model()._meta.db_table)
    samples = quote(get_waffle_sample_model()._meta.db_table)
    return (
        f"SELECT {quote('name')}, CASE WHEN {quote('active')} THEN 1 ELSE 0 END"
        f" FROM {switches} WHERE {quote('name')} IN ({', '.join(['%s'] * len(SWITCHES))})"
        f" UNION ALL SELECT {quote('name')}, {quote('percent')}"
        f" FROM {samples} WHERE {quote('name')} IN ({', '.join(['%s'] * len(SAMPLES))})"
    )


def state_for_phase(
    phase: Phase,
    *,
    shadow_percent: Decimal = Decimal(10),
    rollout_percent: Decimal = Decimal(0),
    dual_write_percent: Decimal = DUAL_WRITE_SHARE_DEFAULT,
) -> MigrationState:
    """The flag values that make up a phase (the dual-write share is kept in every phase:
    it also says which wallets a backfill imports before dual write starts)."""
    return MigrationState(
        dual_write=phase >= Phase.DUAL_WRITE,
        shadow_read_percent=shadow_percent if phase == Phase.SHADOW_READ else Decimal(0),
        read_cutover=phase == Phase.READ_CUTOVER,
        read_rollout_percent=rollout_percent if phase >= Phase.READ_CUTOVER else Decimal(0),
        tigerbeetle_only=phase == Phase.TIGERBEETLE_ONLY,
        dual_write_percent=dual_write_percent,
    )
