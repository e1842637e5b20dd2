"""The process wiring: the one place a process's runtime is built, from the settings.

`build_runtime()` reads every setting the runtime needs once (the MongoDB database and its
timeouts, WALLET_STORE, the ledger scope: TB_ID_NAMESPACE and the account codes, the read
retries and the read breaker's limits) and builds the stores, the outbox, the legacy scan and
the phased store over them; `WalletSiteConfig.ready` installs it
(`migration.runtime.install_process_runtime`), so requests, admin pages, management commands and
Celery tasks of one process share one MongoDB connection pool and one TigerBeetle client. The
phased store is given the Celery tasks to queue after a dual write and after a shadow read: that
is how the phase routing reaches the tasks without importing them.

Tests build runtimes of their own with the same function, passing the parts they provide
(their MongoDB database, ledger backend and ledger scope).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from domain.ids import IdSpace, WalletKey
from domain.wallets import WalletBalance
from ledger.backends import LedgerBackend
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from ledger.tb_model import AccountCodes, LedgerScope
from migration import tasks
from migration.legacy_scan import LegacyScan
from migration.outbox import LOG_MARKS, MirrorOutbox
from migration.routing import (
    PhasedWalletStore,
    ReadRetry,
    ShadowEnqueuer,
    key_to_dict,
    read_breaker,
)
from migration.runtime import Runtime


def enqueue_mirror(key: WalletKey) -> None:
    """After a dual write: queue the mirror of that wallet's pending outbox entries. Sent
    once, never retried: a broker that is down must not hold the write's answer, and the
    entry waits in the outbox for the sweeper."""
    tasks.mirror_wallet.apply_async((key_to_dict(key),), retry=False)


def enqueue_mirror_pending() -> None:
    """After a batch that wrote to many wallets: queue one mirror of every pending outbox
    entry (sent once, never retried, as enqueue_mirror)."""
    tasks.mirror_pending.apply_async((), retry=False)


def enqueue_shadow(
    balance: WalletBalance, *, wallet_seq: int, mongo_latency_us: int | None
) -> None:
    """After a sampled shadow read: queue its comparison with TigerBeetle. The task's
    arguments stay positional: messages already queued carry them so."""
    tasks.compare_shadow_read.apply_async(
        (
            key_to_dict(balance.key),
            list(balance.fields_minor()),
            wallet_seq,
            mongo_latency_us,
            balance.held_minor,
        ),
        retry=False,
    )


def scope_from_settings() -> LedgerScope:
    """The deployment's ledger scope: TB_ID_NAMESPACE and its three account codes."""
    return LedgerScope(
        ids=IdSpace(str(settings.TB_ID_NAMESPACE)),
        codes=AccountCodes(
            wallet=settings.TB_WALLET_ACCOUNT_CODE,
            system=settings.TB_SYSTEM_ACCOUNT_CODE,
            limit=settings.TB_LIMIT_ACCOUNT_CODE,
        ),
    )


def build_runtime(
    *,
    scope: LedgerScope | None = None,
    mongo_database: MongoDatabase | None = None,
    backend: LedgerBackend | None = None,
    enqueue_mirror: Callable[[WalletKey], None] = enqueue_mirror,
    enqueue_shadow: ShadowEnqueuer = enqueue_shadow,
) -> Runtime:
    """A process's runtime. What is not given comes from the settings: the scope, the MongoDB
    database (MONGO_URL, MONGO_TIMEOUT_S, MONGO_LOCK_WAIT_S); `backend` None is the process's
    ledger backend (`ledger.backends.get_ledger_backend`, asked on first use)."""
    scope = scope or scope_from_settings()
    database = mongo_database or MongoDatabase(
        settings.MONGO_URL,
        timeout_s=settings.MONGO_TIMEOUT_S,
        lock_wait_s=settings.MONGO_LOCK_WAIT_S,
    )
    mongo = MongoWalletStore(database, marks=LOG_MARKS)
    tigerbeetle = TigerBeetleWalletStore(backend, scope=scope)
    outbox = MirrorOutbox(database)
    phased = PhasedWalletStore(
        mongo,
        tigerbeetle,
        outbox=outbox,
        breaker=read_breaker(
            failures=settings.READ_BREAKER_FAILURES, reset_s=settings.READ_BREAKER_RESET_S
        ),
        read_retry=ReadRetry(
            retries=settings.TB_READ_RETRY_ATTEMPTS,
            base_s=settings.TB_READ_RETRY_BASE_S,
            budget_s=settings.TB_READ_RETRY_BUDGET_S,
        ),
        enqueue_mirror=enqueue_mirror,
        enqueue_shadow=enqueue_shadow,
        enqueue_mirror_pending=enqueue_mirror_pending,
    )
    return Runtime(
        scope=scope,
        mongo_database=database,
        mongo=mongo,
        tigerbeetle=tigerbeetle,
        phased=phased,
        outbox=outbox,
        legacy=LegacyScan(database),
        wallet_store_name=settings.WALLET_STORE,
        job_wallets_per_s=settings.MIGRATION_JOB_MAX_WALLETS_PER_S,
        job_mongo_read_timeout_s=settings.MIGRATION_JOB_MONGO_READ_TIMEOUT_S,
        job_mongo_read_attempts=settings.MIGRATION_JOB_MONGO_READ_ATTEMPTS,
    )
