"""The MongoDB store's batches, their hold items: placed, captured and released in the batch's
one transaction, as the single operations (`mongo_holds.MongoHolds`) place and resolve them.

A batch reads its holds at once (one query on their ids, after the due holds of its wallets
expired), walks each hold item on its wallet as it stands after the items before it (the
same rules as the single operations: a known hold id replays or conflicts, a placement
within the available credit, a capture never more than held, a hold no longer open refused
unless asked the same again), then writes once: the new holds, each resolved hold's update
(only if still open: a resolution racing the batch makes the transaction go again), and
every event's log entry with the wallet's next `wallet_seq` and its balance after
(`mongo_holds.hold_event_entry`), so the balance history and the mirror see a batch's hold
events exactly as a single operation's. The wallets' `held` moves with the batch's one
update per wallet (`mongo_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pymongo
from pymongo.client_session import ClientSession

from domain import errors
from domain.batches import BatchItem, BatchItemKind, BatchOutcome, capture_minor_of, refused_at
from domain.holds import HoldResult, HoldState
from domain.ids import WalletKey
from domain.wallets import WalletBalance, write_time
from ledger.stores.mongo_database import MongoDatabase, Refusal
from ledger.stores.mongo_documents import LogMarks, key_of, minor
from ledger.stores.mongo_holds import HoldEventKind, hold_document, hold_event_entry, hold_of

# Values per `$in` query and documents per write command: as `mongo_batch`'s.
IN_VALUES_PER_QUERY = 50
WRITES_PER_COMMAND = 1000


@dataclass
class BatchWallet:
    """One wallet through the batch: as read (None: no document yet), and as it stands
    after the items walked so far, in minor units."""

    key: WalletKey
    document: dict[str, Any] | None
    credit: int = 0
    debit: int = 0
    historical: int = 0
    held: int = 0
    seq: int = 0
    posted: int = 0  # items posted to it by this batch

    @classmethod
    def read(cls, key: WalletKey, document: dict[str, Any] | None) -> BatchWallet:
        if document is None:
            return cls(key, None)
        currency = key.currency
        return cls(
            key,
            document,
            credit=minor(document["credit"], currency),
            debit=minor(document["debit"], currency),
            historical=minor(document["historical_credit"], currency),
            held=minor(document["held"], currency) if "held" in document else 0,
            seq=int(document.get("wallet_seq", 0)),
        )

    def exists(self) -> bool:
        return self.document is not None or self.posted > 0

    def balance(self) -> WalletBalance:
        return WalletBalance(
            key=self.key,
            credit_minor=self.credit - self.held,
            debit_minor=self.debit,
            historical_credit_minor=self.historical,
            held_minor=self.held,
        )


class BatchHolds:
    """A batch's hold items on MongoDB: read, walked, written (one per transaction attempt)."""

    def __init__(self, database: MongoDatabase, marks: LogMarks, *, made_by: str) -> None:
        self._database = database
        self._marks = marks
        self._made_by = made_by
        self._documents: dict[str, dict[str, Any]] = {}
        self._placed: list[dict[str, Any]] = []
        self._resolved: list[tuple[str, dict[str, Any]]] = []

    def read(self, session: ClientSession, items: Sequence[BatchItem]) -> None:
        """The documents of the batch's hold ids (after its wallets' due holds expired)."""
        ids = [item.transaction_id for item in items if item.kind.is_hold_operation]
        for start in range(0, len(ids), IN_VALUES_PER_QUERY):
            chunk = ids[start : start + IN_VALUES_PER_QUERY]
            for document in self._database.holds().find({"_id": {"$in": chunk}}, session=session):
                self._documents[document["_id"]] = document

    def walk(
        self,
        index: int,
        item: BatchItem,
        wallets: dict[WalletKey, BatchWallet],
        *,
        now: datetime,
        entries: list[dict[str, Any]],
    ) -> BatchOutcome:
        if item.kind is BatchItemKind.HOLD:
            return self._place(item, wallets[item.wallet], now=now, entries=entries)
        return self._resolve(index, item, wallets, now=now, entries=entries)

    def write(self, session: ClientSession) -> bool:
        """The batch's hold writes; False when a hold it resolved is no longer open (a
        resolution racing the batch committed first: the transaction goes again)."""
        holds = self._database.holds()
        for start in range(0, len(self._placed), WRITES_PER_COMMAND):
            holds.insert_many(
                self._placed[start : start + WRITES_PER_COMMAND], ordered=True, session=session
            )
        updates = [
            pymongo.UpdateOne({"_id": hold_id, "state": HoldState.OPEN.value}, {"$set": fields})
            for hold_id, fields in self._resolved
        ]
        for start in range(0, len(updates), WRITES_PER_COMMAND):
            chunk = updates[start : start + WRITES_PER_COMMAND]
            if holds.bulk_write(chunk, ordered=False, session=session).matched_count != len(chunk):
                return False
        return True

    def refused_placement(self, item: BatchItem, *, now: datetime) -> dict[str, Any]:
        """A hold refused for funds, remembered so a retry of its id is refused alike."""
        document = hold_document(
            item.transaction_id,
            item.wallet,
            item.amount_minor,
            timeout_s=item.timeout_s,
            now=now,
            made_by=self._made_by,
        )
        document.update(state=HoldState.FAILED.value, failure_code=errors.InsufficientFunds.code)
        return document

    # --- one item ----------------------------------------------------------------------------

    def _place(
        self, item: BatchItem, wallet: BatchWallet, *, now: datetime, entries: list[dict[str, Any]]
    ) -> BatchOutcome:
        key, amount_minor = item.wallet, item.amount_minor
        known = self._documents.get(item.transaction_id)
        if known is not None:
            if (
                key_of(known) != key
                or int(known["amount_minor"]) != amount_minor
                or int(known["timeout_s"]) != item.timeout_s
            ):
                return errors.IdempotencyConflict(
                    f"Hold id {item.transaction_id!r} was already used for a different hold."
                )
            if known["state"] == HoldState.FAILED:
                return errors.InsufficientFunds(
                    f"Wallet {key.describe()} had less available credit than the hold."
                )
            return HoldResult(hold=hold_of(known), balance=wallet.balance(), replayed=True)
        if not wallet.exists():
            return errors.WalletNotFound(f"No wallet {key.describe()}.")
        if wallet.credit - wallet.held < amount_minor:
            self._placed.append(self.refused_placement(item, now=now))
            return errors.InsufficientFunds(
                f"Wallet {key.describe()} has less available credit than the hold."
            )
        wallet.held += amount_minor
        document = hold_document(
            item.transaction_id,
            key,
            amount_minor,
            timeout_s=item.timeout_s,
            now=now,
            made_by=self._made_by,
        )
        self._placed.append(document)
        balance = self._logged(
            wallet, HoldEventKind.PLACE, document, amount_minor, now=now, entries=entries
        )
        return HoldResult(hold=hold_of(document), balance=balance)

    def _resolve(
        self,
        index: int,
        item: BatchItem,
        wallets: dict[WalletKey, BatchWallet],
        *,
        now: datetime,
        entries: list[dict[str, Any]],
    ) -> BatchOutcome:
        document = self._documents.get(item.transaction_id)
        if document is None:
            return errors.HoldNotFound(f"No hold {item.transaction_id!r}.")
        key = key_of(document)
        wallet = wallets.get(key)
        if wallet is None:  # placed since the batch looked its holds' wallets up
            return errors.HoldNotFound(f"No hold {item.transaction_id!r}.")
        amount_minor = int(document["amount_minor"])
        wanted = None
        if item.kind is BatchItemKind.CAPTURE:
            try:
                wanted = capture_minor_of(item, key.currency) or amount_minor
            except errors.WalletError as refusal:  # a 400: the whole batch, nothing written
                raise Refusal(refused_at(index, refusal)) from None
            if wanted > amount_minor:
                return errors.CaptureExceedsHold(
                    f"Hold {item.transaction_id!r} reserved {amount_minor} minor units; "
                    f"a capture of {wanted} is more.",
                    hold_amount_minor=amount_minor,
                )
        hold = hold_of(document)
        if hold.state != HoldState.OPEN:
            same = (
                hold.state == HoldState.RELEASED
                if wanted is None
                else hold.state == HoldState.CAPTURED and hold.captured_minor == wanted
            )
            if not same:
                return errors.HoldNotOpen(
                    f"Hold {hold.hold_id!r} is {hold.state.value}.", state=hold.state.value
                )
            return HoldResult(hold=hold, balance=wallet.balance(), replayed=True)
        wallet.held -= amount_minor
        if wanted is not None:
            wallet.credit -= wanted
            wallet.debit += wanted
        resolved = {
            "state": (HoldState.RELEASED if wanted is None else HoldState.CAPTURED).value,
            "captured_minor": wanted or 0,
            "resolved_at": write_time(now),
            "resolved_by": self._made_by,
        }
        self._resolved.append((item.transaction_id, resolved))
        kind = HoldEventKind.RELEASE if wanted is None else HoldEventKind.CAPTURE
        balance = self._logged(
            wallet,
            kind,
            document,
            amount_minor if wanted is None else wanted,
            now=now,
            entries=entries,
        )
        return HoldResult(hold=hold_of({**document, **resolved}), balance=balance)

    def _logged(
        self,
        wallet: BatchWallet,
        kind: str,
        document: dict[str, Any],
        amount_minor: int,
        *,
        now: datetime,
        entries: list[dict[str, Any]],
    ) -> WalletBalance:
        """The event's log entry, with the wallet's next wallet_seq and its balance after."""
        wallet.seq += 1
        wallet.posted += 1
        balance = wallet.balance()
        entries.append(
            hold_event_entry(
                kind=kind,
                hold_id=document["_id"],
                amount_minor=amount_minor,
                balance=balance,
                wallet_seq=wallet.seq,
                at=now,
                mirror_state=self._marks.new_write,
                made_by=self._made_by,
                placed=document if kind == HoldEventKind.PLACE else None,
            )
        )
        return balance
