"""The process's runtime: every long-lived object a web, worker or command process works with.

One `Runtime` per process, built at start-up by the project's wiring
(`wallet_site.wiring.build_runtime`, the one place settings are read for it) and installed
with `install_process_runtime`. The edges of the process (API views, admin pages, Celery
tasks, management commands) take it with `process_runtime()` and pass down what each call
needs: the stores, the outbox, the legacy scan, the jobs' batch port, and the deployment's
ledger scope (its id namespace and account codes). Nothing below the edges keeps a
process-wide object of its own, and a process that asks for the runtime before one is
installed fails loudly instead of deriving ids in no namespace.

Tests install a runtime of their own around each test (tests/conftest.py) and put the previous
one back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from domain.wallets import WalletStore
from ledger.batches import LedgerBatches
from ledger.service import WalletService
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from ledger.tb_model import LedgerScope
from migration.apps import MigrationConfig
from migration.backfill import Backfill
from migration.legacy_scan import LegacyScan
from migration.mirror import Mirror
from migration.outbox import MirrorOutbox
from migration.pacing import job_pace
from migration.reconciliation import Reconciliation
from migration.routing import PhasedWalletStore

# WALLET_STORE: which store the wallet service uses.
WALLET_STORE_NAMES = ("phased", "mongo", "tigerbeetle")
_APP_LABEL = "migration"


@dataclass(frozen=True)
class Runtime:
    """What one process works with: built once, shared by its threads."""

    scope: LedgerScope
    mongo_database: MongoDatabase
    mongo: MongoWalletStore
    tigerbeetle: TigerBeetleWalletStore
    phased: PhasedWalletStore
    outbox: MirrorOutbox
    legacy: LegacyScan
    wallet_store_name: str
    # MIGRATION_JOB_MAX_WALLETS_PER_S: the backfill's and reconciliation's scan rate (0: none).
    job_wallets_per_s: float = 0.0
    # MIGRATION_JOB_MONGO_READ_TIMEOUT_S: how long the jobs wait for each MongoDB answer.
    job_mongo_read_timeout_s: float = 60.0
    # MIGRATION_JOB_MONGO_READ_ATTEMPTS: how many times the jobs try a read that failed for a
    # moment before the run fails (`MongoDatabase.read`).
    job_mongo_read_attempts: int = 3

    def __post_init__(self) -> None:
        if self.wallet_store_name not in WALLET_STORE_NAMES:
            raise ImproperlyConfigured(
                f"WALLET_STORE must be one of {', '.join(WALLET_STORE_NAMES)}, "
                f"not {self.wallet_store_name!r}"
            )
        assert self.tigerbeetle.scope == self.scope, "one ledger scope for the whole process"

    @property
    def batches(self) -> LedgerBatches:
        """The jobs' batch port over the TigerBeetle store's backend (one client a process;
        made per use, so it follows the backend the store holds)."""
        return LedgerBatches(self.tigerbeetle.backend, scope=self.scope)

    def wallet_store(self) -> WalletStore:
        """The store the wallet service uses (WALLET_STORE): the phased store, or one pinned."""
        stores: dict[str, WalletStore] = {
            "phased": self.phased,
            "mongo": self.mongo,
            "tigerbeetle": self.tigerbeetle,
        }
        return stores[self.wallet_store_name]

    def wallet_service(self) -> WalletService:
        return WalletService(self.wallet_store())

    def mirror(self) -> Mirror:
        return Mirror(self.outbox, self.batches)

    @cached_property
    def job_database(self) -> MongoDatabase:
        """The jobs' MongoDB handle: a client of their own, patient with a busy server. A
        backfill died at a million wallets on one page's log read that took over the
        requests' 5 s, behind the server's stall, and a reconciliation on one second look's
        read that took over 60 s twice (docs/benchmarks.md)."""
        return self.mongo_database.patient(
            self.job_mongo_read_timeout_s, read_attempts=self.job_mongo_read_attempts
        )

    def _job_scan(self) -> LegacyScan:
        """The jobs' scan: at their pace (`migration.pacing`), on their MongoDB handle."""
        return LegacyScan(self.job_database, pace=job_pace(self.job_wallets_per_s))

    def backfill(self) -> Backfill:
        return Backfill(self._job_scan(), MirrorOutbox(self.job_database), self.batches)

    def reconciliation(self) -> Reconciliation:
        return Reconciliation(self._job_scan(), MirrorOutbox(self.job_database), self.batches)

    def close(self) -> None:
        """Close what the runtime opened (its MongoDB clients); the ledger backend is the
        process's own (`ledger.backends`)."""
        self.mongo_database.close()
        if "job_database" in self.__dict__:
            self.job_database.close()


def process_runtime() -> Runtime:
    """The runtime installed for this process; ImproperlyConfigured before there is one."""
    runtime = _config().runtime
    if not isinstance(runtime, Runtime):
        raise ImproperlyConfigured(
            "No process runtime is installed: wallet_site's AppConfig.ready() installs one "
            "at start-up (wallet_site.wiring.build_runtime)."
        )
    return runtime


def install_process_runtime(runtime: Runtime | None) -> Runtime | None:
    """Make `runtime` the process's (None: none); returns the one it replaces. Kept on the
    migration app's config, which Django's app registry holds for the life of the process."""
    config = _config()
    previous, config.runtime = config.runtime, runtime
    assert previous is None or isinstance(previous, Runtime)
    return previous


def _config() -> MigrationConfig:
    config = apps.get_app_config(_APP_LABEL)
    assert isinstance(config, MigrationConfig)
    return config
