"""The process wiring: which wallet store each process uses, built once per process.

Requests (`wallet_service()`), admin pages, management commands and Celery tasks all take
their stores from here (and the migration jobs their batch port, `tigerbeetle_batches()`,
over the TigerBeetle store's backend), so a process keeps one MongoDB connection pool and one
TigerBeetle client, and its tasks run on the stores its requests use. Settings choose the store
(`WALLET_STORE`: "phased", "mongo" or "tigerbeetle"); the phased store is given the Celery
tasks to queue after a dual write and after a shadow read, which is how the phase routing
reaches the tasks without importing them.

`install()` runs once at start-up (`WalletSiteConfig.ready`). Tests put their own stores in
place with `install_stores(...)` and forget them with `reset_stores()` (tests/migration's
`stores` fixture does both).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from domain.ids import WalletKey
from domain.wallets import WalletBalance, WalletStore
from ledger.batches import LedgerBatches
from ledger.service import WalletService
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from migration import tasks
from migration.legacy_scan import LegacyScan
from migration.outbox import LOG_MARKS, MirrorOutbox
from migration.routing import PhasedWalletStore, key_to_dict

_process_stores: dict[str, WalletStore] = {}


def enqueue_mirror(key: WalletKey) -> None:
    """After a dual write: queue the mirror of that wallet's pending outbox entries."""
    tasks.mirror_wallet.delay(key_to_dict(key))


def enqueue_shadow(balance: WalletBalance, wallet_seq: int, mongo_latency_us: int) -> None:
    """After a sampled shadow read: queue its comparison with TigerBeetle."""
    tasks.compare_shadow_read.delay(
        key_to_dict(balance.key), list(balance.fields_minor()), wallet_seq, mongo_latency_us
    )


def phased_store(
    mongo: MongoWalletStore,
    tigerbeetle: TigerBeetleWalletStore,
    *,
    enqueue_mirror: Callable[[WalletKey], None] = enqueue_mirror,
    enqueue_shadow: Callable[[WalletBalance, int, int], None] = enqueue_shadow,
) -> PhasedWalletStore:
    """The phased store over two stores, queueing the Celery tasks unless told otherwise."""
    return PhasedWalletStore(
        mongo, tigerbeetle, enqueue_mirror=enqueue_mirror, enqueue_shadow=enqueue_shadow
    )


def make_store(name: str) -> WalletStore:
    """The process's store by name: "phased" (the migration phase routes between the two),
    "mongo" (legacy only) or "tigerbeetle" (TigerBeetle only, no migration).

    One per process, because a store owns a connection pool (a MongoClient per request
    would pay a connection handshake every time); each store re-creates its own
    connections after a fork.
    """
    store = _process_stores.get(name)
    if store is not None:
        return store
    if name == "mongo":
        # Its log entries carry the migration's outbox states (the durable outbox).
        store = MongoWalletStore(MongoDatabase(settings.MONGO_URL), marks=LOG_MARKS)
    elif name == "tigerbeetle":
        store = TigerBeetleWalletStore()
    elif name == "phased":
        store = phased_store(mongo_store(), tigerbeetle_store())
    else:
        raise ValueError(f"unknown wallet store {name!r}")
    return _process_stores.setdefault(name, store)


def mongo_store() -> MongoWalletStore:
    """The process's MongoDB store, typed (the migration jobs read its database)."""
    store = make_store("mongo")
    assert isinstance(store, MongoWalletStore)
    return store


def tigerbeetle_store() -> TigerBeetleWalletStore:
    """The process's TigerBeetle store, typed (support's page and the shadow reads read it)."""
    store = make_store("tigerbeetle")
    assert isinstance(store, TigerBeetleWalletStore)
    return store


def tigerbeetle_batches() -> LedgerBatches:
    """The migration jobs' batch port, over the process's TigerBeetle store's backend: one
    TigerBeetle client per process, and in tests the backend installed with the stores."""
    return LedgerBatches(tigerbeetle_store().backend)


def mongo_outbox() -> MirrorOutbox:
    """The dual-write outbox of the process's MongoDB store (on its database)."""
    return MirrorOutbox(mongo_store().database)


def legacy_scan() -> LegacyScan:
    """The migration's read of the process's MongoDB wallets (on the store's database)."""
    return LegacyScan(mongo_store().database)


def wallet_service() -> WalletService:
    """The wallet service over the store settings choose (`WALLET_STORE`)."""
    return WalletService(make_store(settings.WALLET_STORE))


def _task_stores() -> tuple[MongoWalletStore, TigerBeetleWalletStore]:
    return mongo_store(), tigerbeetle_store()


def install() -> None:
    """At start-up: the Celery tasks run on this process's stores."""
    tasks.use_process_stores(_task_stores)


def install_stores(
    *,
    mongo: MongoWalletStore,
    tigerbeetle: TigerBeetleWalletStore,
    phased: PhasedWalletStore | None = None,
) -> None:
    """For tests: these become the process's stores (the phased one built over the two
    unless given), for the service, the API, the admin and (eager) tasks alike."""
    reset_stores()
    _process_stores.update(
        {
            "mongo": mongo,
            "tigerbeetle": tigerbeetle,
            "phased": phased or phased_store(mongo, tigerbeetle),
        }
    )


def reset_stores() -> None:
    """Forget the process's stores; the next call builds them from settings again."""
    _process_stores.clear()
