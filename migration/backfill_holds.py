"""The backfill's part for holds: a legacy wallet's holds open at its snapshot, carried into
TigerBeetle after its imported opening balance as ordinary pending transfers.

Why ordinary, not imported: an imported pending transfer must have timeout 0 (so the cluster
would never expire it), and the post or void of a pending transfer that has a timeout, sent
imported, crashes TigerBeetle 0.17.9. So a hold open at the wallet's snapshot (seq S) becomes
the pending transfer the mirror would have sent for it (`tb_model.hold_transfer`, the hold's
own id), with `timeout` = what is left of MongoDB's expiry (`hold_mirror.timeout_left_s`), sent
without the IMPORTED flag after the wallet's imported account and opening pair: TigerBeetle
timestamps it itself, later than every imported event it holds, which is allowed (only
imported events must postdate what the cluster holds). Its later capture, release or expiry
(log entries after S) is mirrored as for any hold: an ordinary post or void.

Which holds are open at S comes from the wallet's transaction log, where every hold event is
an entry with the wallet's seq: placed at or before S, and neither captured, released nor
expired at or before S. Their sum must be the `held` the snapshot read in the same document;
a wallet where it is not is refused (its log lacks a hold event) and left for support.
The hold registry rows are written as the mirror writes them (`hold_mirror.record_hold_events`),
so the mirror, phase 4 and reconciliation's `held` comparison treat them as mirrored holds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone
from tigerbeetle import CreateTransferStatus, Transfer, TransferFlags

from domain.ids import WalletKey
from domain.money import ledger_for_currency
from ledger.batches import LedgerBatches
from ledger.stores.mongo_documents import key_of
from ledger.stores.mongo_holds import HoldEventKind
from ledger.tb_model import hold_transfer
from migration.hold_mirror import record_hold_events, timeout_left_s
from migration.legacy_scan import WalletSnapshot
from migration.outbox import MirrorOutbox, OutboxEntry, outbox_entry
from registry import accounts as account_registry

# A place the cluster holds already (an earlier, interrupted run sent it): with a timeout
# from that run, which the registry row then takes.
_PLACED = {
    CreateTransferStatus.CREATED,
    CreateTransferStatus.EXISTS,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_TIMEOUT,
}


@dataclass
class CarriedHolds:
    """Holds open at wallets' snapshots (`open_at`, each wallet's in seq order), then what
    TigerBeetle took of them (`placed`: entry, transfer, its timestamp) and the wallets it did
    not take whole (`refused`, why), which the backfill leaves unimported."""

    open_at: dict[WalletKey, list[OutboxEntry]] = field(default_factory=dict)
    placed: list[tuple[OutboxEntry, Transfer, int]] = field(default_factory=list)
    refused: dict[WalletKey, str] = field(default_factory=dict)

    def replaced(self, *, keys: set[WalletKey], by: CarriedHolds) -> CarriedHolds:
        """These holds with those of `keys` taken from `by` instead (read at other seqs)."""
        return CarriedHolds(
            open_at={
                **{k: v for k, v in self.open_at.items() if k not in keys},
                **{k: v for k, v in by.open_at.items() if k in keys},
            },
            placed=[p for p in self.placed if p[0].key not in keys]
            + [p for p in by.placed if p[0].key in keys],
            refused={
                **{k: v for k, v in self.refused.items() if k not in keys},
                **{k: v for k, v in by.refused.items() if k in keys},
            },
        )

    def latest_timestamp(self) -> int:
        """The latest timestamp TigerBeetle gave a placed hold (0 without one)."""
        return max((timestamp for _e, _t, timestamp in self.placed), default=0)


class HoldImport:
    """Reads a page's open holds from MongoDB's log, places them in TigerBeetle, and writes
    their registry rows."""

    def __init__(self, outbox: MirrorOutbox, tigerbeetle: LedgerBatches) -> None:
        self.outbox = outbox
        self.tigerbeetle = tigerbeetle

    def read(self, snapshots: list[WalletSnapshot]) -> CarriedHolds:
        """The holds open at each snapshot's seq, for the wallets whose document holds any
        (one read of the log a page; none when no wallet holds anything), checked against the
        document's `held`."""
        holding = {s.balance.key: s for s in snapshots if s.recorded_held_minor}
        carried = CarriedHolds(
            open_at=self._open_at({key: s.wallet_seq for key, s in holding.items()})
        )
        for key, snapshot in holding.items():
            logged = sum(entry.amount_minor for entry in carried.open_at.get(key, []))
            if logged != snapshot.recorded_held_minor:
                carried.refused[key] = (
                    f"{key.describe()}: holds {snapshot.recorded_held_minor} in its document, "
                    f"{logged} in its log's open holds"
                )
        return carried

    def read_at(self, opening_seqs: dict[WalletKey, int]) -> CarriedHolds:
        """The holds open at the given seqs (wallets an earlier run imported at another
        snapshot, whose `held` at that seq this run did not read)."""
        return CarriedHolds(open_at=self._open_at(opening_seqs))

    def place(
        self, carried: CarriedHolds, *, account_ids: dict[WalletKey, int], imported: set[WalletKey]
    ) -> None:
        """Send the open holds of the `imported` wallets (their opening pairs are in) as
        ordinary pending transfers, in one request; note what TigerBeetle took or refused."""
        keys = [key for key in carried.open_at if key in imported and key not in carried.refused]
        if not keys:
            return
        now = timezone.now()
        scope = self.tigerbeetle.scope
        entries = [entry for key in keys for entry in carried.open_at[key]]
        transfers = [
            hold_transfer(
                entry.hold_id,
                ids=scope.ids,
                tb_account_id=account_ids[entry.key],
                ledger=ledger_for_currency(entry.key.currency),
                amount_minor=entry.amount_minor,
                timeout_s=timeout_left_s(_expiry(entry), now=now),
            )
            for entry in entries
        ]
        assert not any(t.flags & TransferFlags.IMPORTED for t in transfers), (
            "a hold is never imported"
        )
        results = self.tigerbeetle.create_transfers(transfers)
        for entry, transfer, result in zip(entries, transfers, results, strict=True):
            if result.status in _PLACED:
                carried.placed.append((entry, transfer, result.timestamp))
            else:
                carried.refused.setdefault(
                    entry.key,
                    f"{entry.key.describe()}: open hold {entry.hold_id} refused "
                    f"({result.status.name})",
                )

    def record(self, carried: CarriedHolds) -> int:
        """The placed holds' registry rows (their wallets' rows are in), as the mirror writes
        a placed hold's; how many."""
        placed = [p for p in carried.placed if p[0].key not in carried.refused]
        if placed:
            rows = account_registry.rows_by_key({entry.key for entry, _t, _ts in placed})
            record_hold_events(placed, dict(rows), ledger=self.tigerbeetle)
        return len(placed)

    def _open_at(self, opening_seqs: dict[WalletKey, int]) -> dict[WalletKey, list[OutboxEntry]]:
        if not opening_seqs:
            return {}
        database = self.outbox.database
        query = {
            "client_id": {"$in": sorted({key.client_id for key in opening_seqs})},
            "kind": {"$in": sorted(HoldEventKind.ALL)},
        }
        documents = database.read(lambda: list(database.log().find(query)))
        placed: dict[str, OutboxEntry] = {}
        resolved: set[str] = set()
        for document in documents:
            seq = opening_seqs.get(key_of(document))
            if seq is None or int(document["wallet_seq"]) > seq:
                continue
            if document["kind"] == HoldEventKind.PLACE:
                placed[document["hold_id"]] = outbox_entry(document)
            else:
                resolved.add(document["hold_id"])
        found: defaultdict[WalletKey, list[OutboxEntry]] = defaultdict(list)
        for entry in sorted(placed.values(), key=lambda e: e.wallet_seq):
            if entry.hold_id not in resolved:
                found[entry.key].append(entry)
        return dict(found)


def _expiry(entry: OutboxEntry) -> datetime:
    assert entry.expires_at is not None, "a hold's placement carries its expiry"
    return entry.expires_at
