"""Raising the dual-write share under live writes loses nothing and doubles nothing: clients
write from several threads while the share rises 1 -> 5 -> 25 -> 50 -> 100 % and a mirror
worker runs beside them; at the end TigerBeetle holds exactly what MongoDB acknowledged, for
wallets born with the log and legacy wallets alike."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import connections

from domain.ids import WalletKey
from flags.audit import apply_state
from flags.phases import Phase, state_for_phase
from migration.backfill import Backfill
from migration.outbox import MirrorState
from migration.phase_change import change_phase
from registry.models import WalletTransfer
from tests.concurrency import run_concurrently
from tests.migration.conftest import Stores, legacy_wallet, new_key, tx
from tests.migration.test_mirror import entry_states

SHARE_STEPS = (5, 25, 50, 100)
WRITERS = 4
WALLETS_PER_WRITER = 6
ROUNDS = 6  # each a credit of 100 then a debit of 30, per wallet
CREDIT_MINOR, DEBIT_MINOR = 100, 30
LEGACY_CREDIT_MINOR = 1_000


def _closing(function: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            function()
        finally:
            connections.close_all()

    return run


def test_raising_the_dual_write_share_under_live_writes_loses_nothing(
    committed_stores: Stores, settings: Any
) -> None:
    settings.MIGRATION_CRITERION_DAYS = 0
    stores = committed_stores
    apply_state(state_for_phase(Phase.DUAL_WRITE, dual_write_percent=Decimal(1)), actor="test")
    wallets = [[new_key() for _ in range(WALLETS_PER_WRITER)] for _ in range(WRITERS)]
    legacy = {group[0] for group in wallets}  # one legacy wallet per writer
    for key in legacy:
        legacy_wallet(stores, key, credit_minor=LEGACY_CREDIT_MINOR, debit_minor=0)
    acknowledged = 0
    counted = threading.Condition()
    writers_done = threading.Event()

    def write(keys: list[WalletKey]) -> None:
        nonlocal acknowledged
        for _ in range(ROUNDS):
            for key in keys:
                stores.phased.add_credit(key, CREDIT_MINOR, tx())
                stores.phased.subtract_credit(key, DEBIT_MINOR, tx())
                with counted:
                    acknowledged += 2
                    counted.notify_all()

    def mirror_worker() -> None:
        while not writers_done.is_set():
            stores.mirror().drain()

    def backfill() -> None:
        Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)

    def raise_share() -> None:
        total = WRITERS * WALLETS_PER_WRITER * ROUNDS * 2
        for number, share in enumerate(SHARE_STEPS, start=1):
            with counted:  # each raise lands while writes are still coming
                counted.wait_for(lambda n=number: acknowledged >= total * n // 5)
            change_phase(
                Phase.DUAL_WRITE,
                actor="test",
                mongo=stores.mongo,
                tigerbeetle=stores.batches,
                dual_write_percent=Decimal(share),
                on_share_raised=backfill,
            )

    mirror = threading.Thread(target=_closing(mirror_worker))
    raiser = threading.Thread(target=_closing(raise_share))
    mirror.start()
    raiser.start()
    run_concurrently(write, wallets, workers=WRITERS)
    raiser.join()
    writers_done.set()
    mirror.join()
    backfill()
    stores.mirror().drain()

    for key in (key for group in wallets for key in group):
        opening = LEGACY_CREDIT_MINOR if key in legacy else 0
        expected = opening + ROUNDS * (CREDIT_MINOR - DEBIT_MINOR)
        assert stores.mongo.get_balance(key).credit_minor == expected, key
        assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key), key
        states = set(entry_states(stores, key))
        assert states <= {MirrorState.MIRRORED, MirrorState.COVERED}, (key, states)
        registered = WalletTransfer.objects.filter(wallet__client_id=key.client_id).count()
        assert registered == ROUNDS * 2, key  # each acknowledged write once, none twice
