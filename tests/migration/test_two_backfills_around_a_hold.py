"""Two backfills of one legacy wallet at once, its phase-0 hold resolved between them (issue 23).

The defect seen in 4 of 15 benchmark runs: a legacy wallet's hold, placed in phase 0, was
captured in dual write; the mirror's capture parked with `pending_transfer_not_found` (then
`id_already_failed`), and MongoDB's debit ended 2 above TigerBeetle's. Two backfills ran at
once in that run: the share raise's Celery task and the operator's `manage.py backfill`.

A backfill reads a page of snapshots, then imports it: TigerBeetle's half (the opening pair,
then the holds open at the snapshot as pending transfers, `CarriedHolds`), then the registry's
(the rows the mirror waits for, the outbox released). Each test here walks one order of two
backfills' steps, with the hold captured (whole or in part), released or expired at a chosen
step, in one thread so the order is exact: a snapshot is `LegacyScan.wallet_batches`' next
page, an import is `Backfill.import_page`, and a step between an import's two halves runs
from its `_record` (after TigerBeetle's half) or from its `record_imported` (after the holds
of a wallet another run opened are placed, before the rows), as tests/migration/
test_backfill_holds.py and test_void_around_the_import.py reach those points. The mirror
drains after every step (`mirrored`) or only at the end (`at_the_end`). Whatever the order,
TigerBeetle must end with the resolution applied once, nothing parked, both stores' posted
and held amounts equal, and reconciliation clean. Runs on the embedded engine and, with
TB_ADDRESSES, on the real server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.utils import timezone

from domain.ids import WalletKey
from migration.backfill import Backfill, BackfillReport
from migration.legacy_scan import WalletSnapshot
from migration.mirror import MirrorReport
from migration.models import ReconciliationMismatch
from migration.reconciliation import Reconciliation
from registry import accounts as account_registry
from registry.models import WalletHold
from tests.conftest import ledger_scope
from tests.migration.conftest import Stores
from tests.migration.test_backfill_holds import HOUR_S, legacy_with_hold

EXPIRY_S = 2  # the expiring hold's timeout: the test waits it out once


@dataclass(frozen=True)
class Resolution:
    """What becomes of the hold (400 of a wallet with 1,000 credit, 500 debit), and the
    wallet's (credit, debit, historical credit) after it."""

    name: str
    timeout_s: int
    resolve: Callable[[Stores, str], None]
    fields_minor: tuple[int, int, int]
    state: str
    captured_minor: int | None = None


def _capture_whole(stores: Stores, hold: str) -> None:
    stores.phased.capture_hold(hold, made_by="payments")


def _capture_part(stores: Stores, hold: str) -> None:
    stores.phased.capture_hold(hold, amount_minor=2, made_by="payments")


def _release(stores: Stores, hold: str) -> None:
    stores.phased.release_hold(hold, made_by="payments")


def _expire(stores: Stores, hold: str) -> None:
    left_s = (stores.mongo.get_hold(hold).expires_at - timezone.now()).total_seconds()
    time.sleep(max(0.0, left_s) + 0.1)
    assert stores.mongo.sweep_expired_holds() == 1


RESOLUTIONS = [
    Resolution("captured_whole", HOUR_S, _capture_whole, (600, 900, 1_500), "captured", 400),
    Resolution("captured_in_part", HOUR_S, _capture_part, (998, 502, 1_500), "captured", 2),
    Resolution("released", HOUR_S, _release, (1_000, 500, 1_500), "released"),
    Resolution("expired", EXPIRY_S, _expire, (1_000, 500, 1_500), "expired"),
]


@dataclass
class Walk:
    """One test's two backfills (`first` reads its snapshot first), the hold and what the
    runs reported, taken step by step."""

    stores: Stores
    key: WalletKey
    hold: str
    resolution: Resolution
    mirror_each_step: bool
    first: Backfill = field(init=False)
    second: Backfill = field(init=False)
    pages: dict[str, list[WalletSnapshot]] = field(default_factory=dict)
    reports: dict[str, BackfillReport] = field(default_factory=dict)
    mirrored: MirrorReport = field(default_factory=MirrorReport)

    def __post_init__(self) -> None:
        self.first = self._backfill()
        self.second = self._backfill()

    def _backfill(self) -> Backfill:
        return Backfill(self.stores.scan, self.stores.outbox, self.stores.batches)

    def backfill(self, name: str) -> Backfill:
        return self.first if name == "first" else self.second

    def snapshot(self, name: str) -> None:
        self.pages[name] = next(self.stores.scan.wallet_batches(10))
        self._mirror()

    def resolve(self) -> None:
        self.resolution.resolve(self.stores, self.hold)
        self._mirror()

    def import_(self, name: str) -> None:
        report = self.reports.setdefault(name, BackfillReport())
        self.backfill(name).import_page(self.pages[name], report)
        self._mirror()

    def run(self, name: str) -> None:
        """`name`'s whole run (`Backfill.run`: its read-ahead reads the snapshot, its
        TigerBeetle half goes to a thread of its own on the real server)."""
        report = self.backfill(name).run(progress=False)
        self.reports[name] = report
        self._mirror()

    def import_with(
        self,
        name: str,
        *,
        meanwhile: Callable[[], None],
        at: str,
        monkeypatch: pytest.MonkeyPatch,
        whole_run: bool = False,
    ) -> None:
        """`name`'s import (or whole run), running `meanwhile` once within it: at `_select`
        (its snapshot read, its holds not yet), at `_record` (its TigerBeetle half done) or
        at `record_imported` (its adopted holds placed too, its rows not yet written)."""
        once = [meanwhile]

        def step() -> None:
            if once:
                once.pop()()

        if at in ("_select", "_record"):
            backfill = self.backfill(name)
            original = getattr(backfill, at)

            def after_step(*args: object) -> object:
                step()
                return original(*args)

            monkeypatch.setattr(backfill, at, after_step)
        else:
            assert at == "record_imported", at
            record_imported = account_registry.record_imported

            def record_imported_after(*args: Any, **kwargs: Any) -> None:
                step()
                record_imported(*args, **kwargs)

            monkeypatch.setattr(account_registry, "record_imported", record_imported_after)
        if whole_run:
            self.run(name)
        else:
            self.import_(name)
        assert not once, "the step within the import ran"
        monkeypatch.undo()

    def _mirror(self) -> None:
        if self.mirror_each_step:
            self.mirrored.add(self.stores.mirror().drain())

    def finish(self) -> None:
        self.mirrored.add(self.stores.mirror().drain())


@pytest.fixture(params=RESOLUTIONS, ids=lambda r: r.name)
def resolution(request: pytest.FixtureRequest) -> Resolution:
    chosen: Resolution = request.param
    return chosen


@pytest.fixture(params=[True, False], ids=["mirrored", "at_the_end"])
def walk(
    stores: Stores,
    resolution: Resolution,
    request: pytest.FixtureRequest,
    criteria_not_awaited: None,
) -> Iterator[Walk]:
    key, hold = legacy_with_hold(stores, timeout_s=resolution.timeout_s)
    yield Walk(stores, key, hold, resolution, mirror_each_step=request.param)


def assert_the_resolution_is_in_tigerbeetle_once(walk: Walk) -> None:
    stores, key, resolution = walk.stores, walk.key, walk.resolution
    walk.finish()
    assert [r.failed for r in walk.reports.values()] == [[], []]
    assert (walk.mirrored.parked, walk.mirrored.errors) == (0, [])
    depth = stores.outbox.depth()
    assert (depth.pending, depth.parked, depth.awaiting_backfill) == (0, 0, 0)
    tigerbeetle, mongo = stores.tigerbeetle.get_balance(key), stores.mongo.get_balance(key)
    assert (tigerbeetle.fields_minor(), tigerbeetle.held_minor) == (resolution.fields_minor, 0)
    assert (mongo.fields_minor(), mongo.held_minor) == (resolution.fields_minor, 0)
    assert tigerbeetle == mongo
    # The opening balance is read either before the resolution (the hold is placed, then
    # resolved by the mirror) or after it (the opening balance holds its outcome, and the
    # hold never reaches TigerBeetle): a capture is posted at most once, never late.
    ids = ledger_scope().ids
    pending_id = ids.hold_transfer_id(walk.hold)
    placed = stores.batches.lookup_transfers([pending_id])
    posted = stores.batches.lookup_transfers([ids.hold_resolution_transfer_id(pending_id)])
    assert not stores.batches.lookup_transfers([ids.hold_late_capture_transfer_id(pending_id)])
    rows = WalletHold.objects.filter(hold_id=walk.hold)
    if not placed:
        assert (posted, list(rows)) == ([], [])
    else:
        assert [row.state for row in rows] == [resolution.state]
    if placed and resolution.captured_minor is not None:
        assert [(t.pending_id, t.amount) for t in posted] == [
            (pending_id, resolution.captured_minor)
        ]
        assert rows.get().captured_minor == resolution.captured_minor
    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run(triggered_by="test")
    assert list(ReconciliationMismatch.objects.filter(run=run).values_list("kind", "detail")) == []
    assert (run.checked, run.matched, run.mismatched) == (1, 1, 0)


def test_resolved_between_the_snapshots_the_backfill_that_read_first_imports_first(
    walk: Walk,
) -> None:
    walk.snapshot("first")
    walk.resolve()
    walk.snapshot("second")
    walk.import_("first")
    walk.import_("second")

    assert_the_resolution_is_in_tigerbeetle_once(walk)


def test_resolved_between_the_snapshots_the_backfill_that_read_later_imports_first(
    walk: Walk,
) -> None:
    walk.snapshot("first")
    walk.resolve()
    walk.snapshot("second")
    walk.import_("second")
    walk.import_("first")

    assert_the_resolution_is_in_tigerbeetle_once(walk)


@pytest.mark.parametrize("at", ["_record", "record_imported"])
@pytest.mark.parametrize(
    ("halved", "inside"),
    [("first", "second"), ("second", "first")],
    ids=["the_later_inside_the_earliers_halves", "the_earlier_inside_the_laters_halves"],
)
def test_resolved_between_the_snapshots_one_imports_between_the_others_halves(
    walk: Walk, at: str, halved: str, inside: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    walk.snapshot("first")
    walk.resolve()
    walk.snapshot("second")
    walk.import_with(halved, meanwhile=lambda: walk.import_(inside), at=at, monkeypatch=monkeypatch)

    assert_the_resolution_is_in_tigerbeetle_once(walk)


def test_resolved_after_both_snapshots_before_either_import(walk: Walk) -> None:
    walk.snapshot("first")
    walk.snapshot("second")
    walk.resolve()
    walk.import_("first")
    walk.import_("second")

    assert_the_resolution_is_in_tigerbeetle_once(walk)


@pytest.mark.parametrize("at", ["_record", "record_imported"])
def test_resolved_between_an_imports_halves_then_the_other_backfill_reads_and_imports(
    walk: Walk, at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def meanwhile() -> None:
        walk.resolve()
        walk.snapshot("second")
        walk.import_("second")

    walk.snapshot("first")
    walk.import_with("first", meanwhile=meanwhile, at=at, monkeypatch=monkeypatch)

    assert_the_resolution_is_in_tigerbeetle_once(walk)


@pytest.mark.parametrize("at", ["_record", "record_imported"])
def test_resolved_between_an_imports_halves_after_the_other_backfill_imported(
    walk: Walk, at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def meanwhile() -> None:
        walk.snapshot("second")
        walk.import_("second")
        walk.resolve()

    walk.snapshot("first")
    walk.import_with("first", meanwhile=meanwhile, at=at, monkeypatch=monkeypatch)

    assert_the_resolution_is_in_tigerbeetle_once(walk)


@pytest.mark.parametrize("at", ["_select", "_record", "record_imported"])
def test_two_whole_runs_the_second_reading_and_importing_within_the_firsts_import(
    walk: Walk, at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the share raise's task and `manage.py backfill` run: `Backfill.run` each, the
    second's snapshot read after the hold's resolution, while the first imports the
    snapshot it read before."""
    resolved: list[bool] = []

    def resolve_once(*args: object) -> None:
        if not resolved:
            resolved.append(True)
            walk.resolve()

    def second_run() -> None:
        resolve_once()
        walk.run("second")

    monkeypatch.setattr(walk.first, "_select", _after(resolve_once, walk.first._select))
    walk.import_with("first", meanwhile=second_run, at=at, monkeypatch=monkeypatch, whole_run=True)

    assert_the_resolution_is_in_tigerbeetle_once(walk)


def _after(step: Callable[..., None], method: Callable[..., object]) -> Callable[..., object]:
    def stepped(*args: object) -> object:
        step(*args)
        return method(*args)

    return stepped
