"""Holds on MongoDB: documents of their own, written in one transaction with the wallet's `held`.

Why the wallet document carries `held`: a debit (and the void of a credit) spends only what
`credit - held` allows, checked on the wallet document its transaction read and spent by an
update naming the `wallet_seq` it read (`spend_wallet`); a hold reserves only what that
allows, the same way. Racing holds and debits of one wallet conflict on its document and are
serialised by MongoDB's transactions, so none overdraws. The wallet's `credit` stays the
posted credit minus posted debits (what the migration's backfill and reconciliation read);
what a client is shown as available is `credit - held` (`available_balance_of`).

Collection `wallet_holds`: `_id` the client's hold id, the wallet key's four fields, the
amounts in minor units, `state` (open, captured, released, expired, failed), `timeout_s`,
`expires_at`, `made_by`, and on resolution `resolved_at`, `resolved_by`.

Expiry: MongoDB has no clock of its own to void a hold. A hold past `expires_at` no longer
counts: every write transaction of its wallet first expires the wallet's due holds
(`expire_due`), a read computes `held` from open holds not yet due, and a Celery beat task
(`sweep_expired`) expires the rest every HOLD_SWEEP_INTERVAL_S. So expiry on MongoDB is
enforced at the next touch of the wallet and by the sweep (docs/holds.md).

Every hold event (placed, captured, released, expired) is logged in the transaction log in
the same transaction, with the wallet's next `wallet_seq` and its balance after (held
included), as credits and debits are, in every phase: the wallet's balance history reads it
(`mongo_history`), and the mirror carries it (`migration.mirror`, `migration.hold_mirror`) in
the wallet's order with its other writes, so a capture keeps the log complete (`log_complete`)
and no second outbox is needed (`HoldEventKind`: what each entry asks TigerBeetle for).
Holds TigerBeetle placed or resolved alone in phase 4 are copied back on a step back
(`MongoHoldCopyBack`), each logged as copied back (never sent again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Context, localcontext
from typing import Any

from bson import ObjectId
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from domain import errors
from domain.holds import Hold, HoldResult, HoldState
from domain.ids import WalletKey
from domain.money import from_minor_units
from domain.wallets import WalletBalance, write_time
from ledger.stores.mongo_database import MongoDatabase, Refusal
from ledger.stores.mongo_documents import (
    EVENT_PENDING,
    MONGO_KEY_FIELDS,
    LogMarks,
    balance_fields,
    balance_of,
    decimal128,
    key_filter,
    key_of,
    minor,
    of_wallets,
    stored_decimal,
)
from ledger.stores.mongo_wallets import update_wallet, update_wallet_as_read

# How many wallets one sweep expires holds of; the next sweep takes the rest.
SWEEP_WALLETS_MAX = 500
# A wallet's open holds support's page lists (the oldest first).
OPEN_HOLDS_LISTED_MAX = 100
# Digits enough to subtract two stored amounts exactly (Decimal128 holds 34).
_EXACT_DIGITS = 70


def held_minor(wallet: dict[str, Any], key: WalletKey) -> int:
    """The held amount a wallet document records (0 before holds existed)."""
    return minor(wallet["held"], key.currency) if "held" in wallet else 0


def available_balance_of(
    wallet: dict[str, Any], *, live_held_minor: int | None = None
) -> WalletBalance:
    """The client's balance of a wallet document: available = credit - held. `live_held_minor`:
    the held amount of holds still open now, when the document's may count expired ones
    (a read); a write's transaction expired them first, so its document's is live."""
    posted = balance_of(wallet)
    held = held_minor(wallet, posted.key) if live_held_minor is None else live_held_minor
    return WalletBalance(
        key=posted.key,
        credit_minor=posted.credit_minor - held,
        debit_minor=posted.debit_minor,
        historical_credit_minor=posted.historical_credit_minor,
        held_minor=held,
    )


def live_held_minor(database: MongoDatabase, key: WalletKey, *, now: datetime) -> int:
    """What the wallet's open holds not yet due reserve."""
    found = database.holds().find(
        {**key_filter(key), "state": HoldState.OPEN.value, "expires_at": {"$gt": now}},
        {"amount_minor": 1},
    )
    return sum(int(hold["amount_minor"]) for hold in found)


def live_held_minor_of(
    database: MongoDatabase, keys: Iterable[WalletKey], *, now: datetime
) -> dict[WalletKey, int]:
    """`live_held_minor` of many wallets, asked by client id ($in on the indexed field, a
    chunk at a time) rather than a round trip each; a wallet with none is 0."""
    held = dict.fromkeys(keys, 0)
    live = {"state": HoldState.OPEN.value, "expires_at": {"$gt": now}}
    projection = {**dict.fromkeys(MONGO_KEY_FIELDS, 1), "amount_minor": 1}
    for key, hold in of_wallets(database.holds(), held, live, projection=projection):
        held[key] += int(hold["amount_minor"])
    return held


def read_balance(database: MongoDatabase, wallet: dict[str, Any]) -> WalletBalance:
    """A wallet document's client balance at read time: held from its live holds (only
    asked when the document holds anything)."""
    key = key_of(wallet)
    if held_minor(wallet, key) == 0:
        return available_balance_of(wallet, live_held_minor=0)
    live = live_held_minor(database, key, now=datetime.now(UTC))
    return available_balance_of(wallet, live_held_minor=live)


class HoldEventKind:
    """The `kind` of a hold event in the transaction log: what the mirror asks TigerBeetle for
    (migration.hold_mirror). Stored in every event: never change one."""

    PLACE = "hold"  # a pending transfer
    CAPTURE = "capture"  # its post (`amount_minor`: what was captured)
    RELEASE = "release"  # its void
    EXPIRE = "expire"  # its void, unless the cluster's timeout came first

    ALL = frozenset({PLACE, CAPTURE, RELEASE, EXPIRE})


def log_hold_event(
    database: MongoDatabase,
    session: ClientSession,
    *,
    kind: str,
    hold_id: str,
    amount_minor: int,
    balance: WalletBalance,
    wallet_seq: int,
    at: datetime,
    mirror_state: str,
    made_by: str,
    placed: dict[str, Any] | None = None,
) -> None:
    """One hold event in the transaction log: a point of the wallet's history and a write
    the mirror carries (`hold_event_entry`)."""
    database.log().insert_one(
        hold_event_entry(
            kind=kind,
            hold_id=hold_id,
            amount_minor=amount_minor,
            balance=balance,
            wallet_seq=wallet_seq,
            at=at,
            mirror_state=mirror_state,
            made_by=made_by,
            placed=placed,
        ),
        session=session,
    )


def hold_event_entry(
    *,
    kind: str,
    hold_id: str,
    amount_minor: int,
    balance: WalletBalance,
    wallet_seq: int,
    at: datetime,
    mirror_state: str,
    made_by: str,
    placed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A hold event's log entry (a single operation's and a batch's alike). `_id` is an
    ObjectId (no client id can equal it), `hold_id` names the hold; a placement carries the
    hold's timeout and expiry (`placed`, its document)."""
    key = balance.key
    hold_fields = (
        {"timeout_s": placed["timeout_s"], "expires_at": placed["expires_at"]} if placed else {}
    )
    return {
        **hold_fields,
        "_id": ObjectId(),
        "kind": kind,
        "hold_id": hold_id,
        **key_filter(key),
        "amount": decimal128(amount_minor, key.currency),
        "amount_minor": amount_minor,
        "state": "posted",
        "failure_code": "",
        "made_by": made_by,
        "balance_after": balance_fields(balance),
        "wallet_seq": wallet_seq,
        "mirror_state": mirror_state,
        "created_at": write_time(at),
        EVENT_PENDING: True,
    }


def expire_due(
    database: MongoDatabase,
    key: WalletKey,
    *,
    now: datetime,
    session: ClientSession,
    marks: LogMarks,
) -> None:
    """Inside a write transaction of the wallet: its open holds past `expires_at` become
    expired, and their amounts leave the wallet's `held`; each is logged (oldest expiry
    first) at its `expires_at`, with the balance after it."""
    holds = database.holds()
    due = list(
        holds.find(
            {**key_filter(key), "state": HoldState.OPEN.value, "expires_at": {"$lte": now}},
            {"amount_minor": 1, "expires_at": 1},
            session=session,
        ).sort([("expires_at", 1), ("_id", 1)])
    )
    if not due:
        return
    holds.update_many(
        {"_id": {"$in": [hold["_id"] for hold in due]}, "state": HoldState.OPEN.value},
        {"$set": {"state": HoldState.EXPIRED.value}},
        session=session,
    )
    total = sum(int(hold["amount_minor"]) for hold in due)
    before = database.wallets().find_one(key_filter(key), session=session)
    assert before is not None, "a hold's wallet exists"
    update_wallet_as_read(
        database.wallets(),
        wallet=before,
        update={"$inc": {"held": decimal128(-total, key.currency), "wallet_seq": len(due)}},
        session=session,
    )
    balance = available_balance_of(before)
    seq = int(before.get("wallet_seq", 0))
    for hold in due:
        amount_minor = int(hold["amount_minor"])
        seq += 1
        balance = replace(
            balance,
            credit_minor=balance.credit_minor + amount_minor,
            held_minor=balance.held_minor - amount_minor,
        )
        log_hold_event(
            database,
            session,
            kind=HoldEventKind.EXPIRE,
            hold_id=hold["_id"],
            amount_minor=amount_minor,
            balance=balance,
            wallet_seq=seq,
            at=hold["expires_at"],
            mirror_state=marks.new_write,
            made_by="",
        )


def spend_wallet(
    wallets: Collection[dict[str, Any]],
    key: WalletKey,
    amount_minor: int,
    update: dict[str, Any],
    *,
    session: ClientSession,
) -> dict[str, Any] | None:
    """The wallet moved by `update`, only if `credit - held` covers `amount_minor` (held
    missing reads as 0), as it stands after; None when it does not (or no such wallet).
    Checked on the document this transaction read, the update naming the wallet_seq it read
    (`ledger.stores.mongo_wallets`)."""
    wallet = wallets.find_one(key_filter(key), session=session)
    if wallet is None or not _covers(wallet, key, amount_minor):
        return None
    return update_wallet_as_read(wallets, wallet=wallet, update=update, session=session)


def _covers(wallet: dict[str, Any], key: WalletKey, amount_minor: int) -> bool:
    """Whether the document's `credit - held` is at least `amount_minor`, compared exactly
    as the stored decimals (a $expr on them compared the same)."""
    with localcontext(Context(prec=_EXACT_DIGITS)):
        available = stored_decimal(wallet["credit"]) - stored_decimal(wallet.get("held", 0))
        return available >= from_minor_units(amount_minor, key.currency)


def hold_of(document: dict[str, Any]) -> Hold:
    """A hold document as the hold every store returns (an open one past its expiry is
    expired, whether or not a write or the sweep has marked it yet)."""
    state = HoldState(document["state"])
    expires_at: datetime = document["expires_at"]
    resolved_at = document.get("resolved_at")
    if state == HoldState.EXPIRED or (state == HoldState.OPEN and expires_at <= datetime.now(UTC)):
        state, resolved_at = HoldState.EXPIRED, expires_at
    return Hold(
        hold_id=document["_id"],
        key=key_of(document),
        amount_minor=int(document["amount_minor"]),
        captured_minor=int(document.get("captured_minor", 0)),
        state=state,
        timeout_s=int(document["timeout_s"]),
        created_at=document["created_at"],
        expires_at=expires_at,
        made_by=document.get("made_by", ""),
        resolved_at=resolved_at,
        resolved_by=document.get("resolved_by", ""),
        failure_code=document.get("failure_code", ""),
    )


class _Answer(Exception):
    """Carries a hold operation's answer out of its transaction (a replay, which writes
    nothing, so the transaction aborts)."""

    def __init__(self, result: HoldResult) -> None:
        super().__init__("answer")
        self.result = result


class MongoHolds:
    """The hold operations of the MongoDB store."""

    def __init__(self, database: MongoDatabase, marks: LogMarks) -> None:
        self.database = database
        self.marks = marks

    def _mark(self, key: WalletKey) -> Callable[[], object]:
        def mark() -> object:
            return self.database.wallets().find_one(key_filter(key), {"_id": 0, "wallet_seq": 1})

        return mark

    def _run(self, key: WalletKey, callback: Callable[[ClientSession], HoldResult]) -> HoldResult:
        def run() -> HoldResult:
            for _ in range(2):  # a concurrent insert of the same hold id: the retry replays
                try:
                    return self.database.transaction(callback, wallet_mark=self._mark(key))
                except _Answer as answer:
                    return answer.result
                except DuplicateKeyError:
                    continue
            raise errors.StoreUnavailable("The hold id is being written by another request.")

        return self.database.guarded(run)

    def place_hold(
        self, key: WalletKey, amount_minor: int, hold_id: str, *, timeout_s: int, made_by: str
    ) -> HoldResult:
        assert amount_minor > 0 and timeout_s > 0, "the service validated the hold"

        def place(session: ClientSession) -> HoldResult:
            holds, wallets = self.database.holds(), self.database.wallets()
            known = holds.find_one({"_id": hold_id}, session=session)
            if known is not None:
                self._replay_place(known, key, amount_minor=amount_minor, timeout_s=timeout_s)
            now = datetime.now(UTC)
            expire_due(self.database, key, now=now, session=session, marks=self.marks)
            wallet = spend_wallet(
                wallets,
                key,
                amount_minor,
                {
                    "$inc": {
                        "held": decimal128(amount_minor, key.currency),
                        "wallet_seq": 1,
                    },
                    "$set": {"updated_at": now},
                },
                session=session,
            )
            if wallet is None:
                if wallets.find_one(key_filter(key), {"_id": 1}, session=session) is None:
                    raise Refusal(errors.WalletNotFound(f"No wallet {key.describe()}."))
                raise Refusal(
                    errors.InsufficientFunds(
                        f"Wallet {key.describe()} has less available credit than the hold."
                    )
                )
            document = hold_document(
                hold_id, key, amount_minor, timeout_s=timeout_s, now=now, made_by=made_by
            )
            holds.insert_one(document, session=session)
            balance = available_balance_of(wallet)
            log_hold_event(
                self.database,
                session,
                kind=HoldEventKind.PLACE,
                hold_id=hold_id,
                amount_minor=amount_minor,
                balance=balance,
                wallet_seq=int(wallet["wallet_seq"]),
                at=now,
                mirror_state=self.marks.new_write,
                made_by=made_by,
                placed=document,
            )
            return HoldResult(hold=hold_of(document), balance=balance)

        try:
            return self._run(key, place)
        except errors.InsufficientFunds:
            self._remember_refusal(
                hold_id, key, amount_minor=amount_minor, timeout_s=timeout_s, made_by=made_by
            )
            raise

    def capture_hold(self, hold_id: str, *, amount_minor: int | None, made_by: str) -> HoldResult:
        return self._resolve(hold_id, capture_minor=amount_minor, made_by=made_by, release=False)

    def release_hold(self, hold_id: str, *, made_by: str) -> HoldResult:
        return self._resolve(hold_id, capture_minor=None, made_by=made_by, release=True)

    def get_hold(self, hold_id: str) -> Hold:
        def read() -> Hold:
            document = self.database.holds().find_one({"_id": hold_id})
            if document is None:
                raise errors.HoldNotFound(f"No hold {hold_id!r}.")
            return hold_of(document)

        return self.database.guarded(read)

    def sweep_expired(self, *, now: datetime | None = None) -> int:
        """Expire the due holds of up to SWEEP_WALLETS_MAX wallets (the beat task); how many
        wallets it touched."""
        now = now or datetime.now(UTC)

        def due_wallets() -> list[WalletKey]:
            found = self.database.holds().find(
                {"state": HoldState.OPEN.value, "expires_at": {"$lte": now}},
                {"client_id": 1, "country": 1, "currency": 1, "issuer_type_identifier": 1},
            )
            keys: dict[WalletKey, None] = {}
            for document in found:
                keys[key_of(document)] = None
                if len(keys) >= SWEEP_WALLETS_MAX:
                    break
            return list(keys)

        keys = self.database.guarded(due_wallets)
        for key in keys:
            self._expire_wallet(key, now=now)
        return len(keys)

    def _expire_wallet(self, key: WalletKey, *, now: datetime) -> None:
        def expire(session: ClientSession) -> None:
            expire_due(self.database, key, now=now, session=session, marks=self.marks)

        def run() -> None:
            self.database.transaction(expire, wallet_mark=self._mark(key))

        self.database.guarded(run)

    # --- internals --------------------------------------------------------------------------

    def _resolve(
        self, hold_id: str, *, capture_minor: int | None, made_by: str, release: bool
    ) -> HoldResult:
        key = self._key_of_hold(hold_id)

        def resolve(session: ClientSession) -> HoldResult:
            holds = self.database.holds()
            now = datetime.now(UTC)
            expire_due(self.database, key, now=now, session=session, marks=self.marks)
            document = holds.find_one({"_id": hold_id}, session=session)
            assert document is not None, "a hold is never deleted"
            wanted = None if release else (capture_minor or int(document["amount_minor"]))
            if wanted is not None and wanted > int(document["amount_minor"]):
                raise Refusal(
                    errors.CaptureExceedsHold(
                        f"Hold {hold_id!r} reserved {document['amount_minor']} minor units; "
                        f"a capture of {wanted} is more.",
                        hold_amount_minor=int(document["amount_minor"]),
                    )
                )
            if document["state"] != HoldState.OPEN:
                self._replay_resolution(document, wanted)
            wallet = self._resolve_on_wallet(document, key, wanted, now=now, session=session)
            resolved = {
                "state": (HoldState.RELEASED if wanted is None else HoldState.CAPTURED).value,
                "captured_minor": wanted or 0,
                "resolved_at": write_time(now),
                "resolved_by": made_by,
            }
            holds.update_one(
                {"_id": hold_id, "state": HoldState.OPEN.value}, {"$set": resolved}, session=session
            )
            balance = available_balance_of(wallet)
            log_hold_event(
                self.database,
                session,
                kind=HoldEventKind.RELEASE if wanted is None else HoldEventKind.CAPTURE,
                hold_id=hold_id,
                amount_minor=int(document["amount_minor"]) if wanted is None else wanted,
                balance=balance,
                wallet_seq=int(wallet["wallet_seq"]),
                at=now,
                mirror_state=self.marks.new_write,
                made_by=made_by,
            )
            return HoldResult(hold=hold_of({**document, **resolved}), balance=balance)

        return self._run(key, resolve)

    def _resolve_on_wallet(
        self,
        document: dict[str, Any],
        key: WalletKey,
        wanted: int | None,
        *,
        now: datetime,
        session: ClientSession,
    ) -> dict[str, Any]:
        """The held amount leaves `held`; a capture posts `wanted` of it as a debit."""
        currency = key.currency
        change: dict[str, Any] = {
            "$inc": {
                "held": decimal128(-int(document["amount_minor"]), currency),
                "wallet_seq": 1,
            },
            "$set": {"updated_at": now},
        }
        if wanted is not None:
            change["$inc"]["credit"] = decimal128(-wanted, currency)
            change["$inc"]["debit"] = decimal128(wanted, currency)
        wallet = update_wallet(self.database.wallets(), key, change, session=session)
        assert wallet is not None, "a hold's wallet exists"
        return wallet

    def _key_of_hold(self, hold_id: str) -> WalletKey:
        document = self.database.guarded(
            lambda: self.database.holds().find_one({"_id": hold_id}, {"amount_minor": 0})
        )
        if document is None:
            raise errors.HoldNotFound(f"No hold {hold_id!r}.")
        return key_of(document)

    def _replay_place(
        self, known: dict[str, Any], key: WalletKey, *, amount_minor: int, timeout_s: int
    ) -> None:
        if (
            key_of(known) != key
            or int(known["amount_minor"]) != amount_minor
            or int(known["timeout_s"]) != timeout_s
        ):
            raise Refusal(
                errors.IdempotencyConflict(
                    f"Hold id {known['_id']!r} was already used for a different hold."
                )
            )
        if known["state"] == HoldState.FAILED:
            raise Refusal(
                errors.InsufficientFunds(
                    f"Wallet {key.describe()} had less available credit than the hold."
                )
            )
        raise _Answer(self._answer_now(known, replayed=True))

    def _replay_resolution(self, document: dict[str, Any], wanted: int | None) -> None:
        """A hold no longer open: the same resolution again replays, anything else is
        HoldNotOpen."""
        hold = hold_of(document)
        same = (
            hold.state == HoldState.RELEASED
            if wanted is None
            else hold.state == HoldState.CAPTURED and hold.captured_minor == wanted
        )
        if not same:
            raise Refusal(
                errors.HoldNotOpen(
                    f"Hold {hold.hold_id!r} is {hold.state.value}.", state=hold.state.value
                )
            )
        raise _Answer(self._answer_now(document, replayed=True))

    def _answer_now(self, document: dict[str, Any], *, replayed: bool) -> HoldResult:
        key = key_of(document)
        wallet = self.database.wallets().find_one(key_filter(key))
        assert wallet is not None, "a hold's wallet exists"
        return HoldResult(
            hold=hold_of(document), balance=read_balance(self.database, wallet), replayed=replayed
        )

    def _remember_refusal(
        self, hold_id: str, key: WalletKey, *, amount_minor: int, timeout_s: int, made_by: str
    ) -> None:
        """Record a refused hold so a retry of the id is refused the same way."""
        document = hold_document(
            hold_id, key, amount_minor, timeout_s=timeout_s, now=datetime.now(UTC), made_by=made_by
        )
        document.update(state=HoldState.FAILED.value, failure_code="insufficient_funds")

        def insert() -> None:
            # A concurrent retry of the same refused hold recorded it first.
            with contextlib.suppress(DuplicateKeyError):
                self.database.holds().insert_one(document)

        self.database.guarded(insert)


def hold_document(
    hold_id: str,
    key: WalletKey,
    amount_minor: int,
    *,
    timeout_s: int,
    now: datetime,
    made_by: str,
) -> dict[str, Any]:
    created_at = write_time(now)
    return {
        "_id": hold_id,
        **key_filter(key),
        "amount": decimal128(amount_minor, key.currency),
        "amount_minor": amount_minor,
        "captured_minor": 0,
        "state": HoldState.OPEN.value,
        "failure_code": "",
        "timeout_s": timeout_s,
        "made_by": made_by,
        "created_at": created_at,
        "expires_at": created_at + timedelta(seconds=timeout_s),
    }


def _resolve_copied_back(
    database: MongoDatabase,
    known: dict[str, Any],
    hold: Hold,
    *,
    session: ClientSession,
    marks: LogMarks,
) -> bool:
    """MongoDB's open hold `known` resolved as TigerBeetle resolved `hold` (a copy-back): its
    amount leaves `held`, a capture posts its debit, and the resolution is logged as copied
    back (TigerBeetle holds it; the balance history shows it); False when it is not open."""
    if known["state"] != HoldState.OPEN.value:
        return False
    key = hold.key
    if hold.resolved_at is not None:  # the wallet's other holds due by then expire first
        expire_due(database, key, now=hold.resolved_at, session=session, marks=marks)
    captured = hold.captured_minor if hold.state == HoldState.CAPTURED else 0
    database.holds().update_one(
        {"_id": hold.hold_id, "state": HoldState.OPEN.value},
        {
            "$set": {
                "state": hold.state.value,
                "captured_minor": captured,
                "resolved_at": hold.resolved_at,
                "resolved_by": hold.resolved_by,
                "copied_back": True,
            }
        },
        session=session,
    )
    change: dict[str, Any] = {
        "held": decimal128(-int(known["amount_minor"]), key.currency),
        "wallet_seq": 1,
    }
    if captured:
        change["credit"] = decimal128(-captured, key.currency)
        change["debit"] = decimal128(captured, key.currency)
    wallet = update_wallet(
        database.wallets(),
        key,
        {"$inc": change, "$set": {"updated_at": datetime.now(UTC)}},
        session=session,
    )
    assert wallet is not None, "a hold's wallet exists"
    log_hold_event(
        database,
        session,
        kind=HoldEventKind.CAPTURE if captured else HoldEventKind.RELEASE,
        hold_id=hold.hold_id,
        amount_minor=captured or int(known["amount_minor"]),
        balance=available_balance_of(wallet),
        wallet_seq=int(wallet["wallet_seq"]),
        at=hold.resolved_at or datetime.now(UTC),
        mirror_state=marks.copied_back,
        made_by=hold.resolved_by,
    )
    return True


class MongoHoldCopyBack:
    """Holds TigerBeetle placed or resolved alone in phase 4, copied into MongoDB on a step
    back. Each is logged as a copied-back hold event (`LogMarks.copied_back`: the mirror
    never sends it, TigerBeetle holds it), with the wallet's next wallet_seq, so MongoDB's
    balance history shows it as every copied-back write."""

    def __init__(self, database: MongoDatabase, marks: LogMarks) -> None:
        self.database = database
        self.marks = marks

    def _transaction(self, key: WalletKey, copy: Callable[[ClientSession], bool]) -> bool:
        def mark() -> object:
            return self.database.wallets().find_one(key_filter(key), {"_id": 0, "wallet_seq": 1})

        def run() -> bool:
            try:
                return self.database.transaction(copy, wallet_mark=mark)
            except DuplicateKeyError:
                return False

        return self.database.guarded(run)

    def copy_back_capture(self, hold: Hold) -> bool:
        """A hold TigerBeetle captured alone (phase 4): the hold as captured and its capture's
        debit on the wallet, in one transaction; False when MongoDB had it already. The debit
        is applied whatever the wallet's available credit: TigerBeetle took it, and copied
        back after every other write it only lowers it. A hold MongoDB still holds open
        (placed in phases 0-3, carried by the mirror) is resolved in place."""
        assert hold.state == HoldState.CAPTURED and hold.captured_minor > 0
        key = hold.key

        def copy(session: ClientSession) -> bool:
            known = self.database.holds().find_one({"_id": hold.hold_id}, session=session)
            if known is not None:
                return _resolve_copied_back(
                    self.database,
                    known,
                    hold,
                    session=session,
                    marks=self.marks,
                )
            captured = hold.captured_minor
            self._insert_copied_back(
                session,
                hold,
                fields={
                    "state": HoldState.CAPTURED.value,
                    "captured_minor": captured,
                    "resolved_at": hold.resolved_at,
                    "resolved_by": hold.resolved_by,
                },
                increments={
                    "credit": decimal128(-captured, key.currency),
                    "debit": decimal128(captured, key.currency),
                },
                kind=HoldEventKind.CAPTURE,
                amount_minor=captured,
                at=hold.resolved_at or hold.created_at,
                made_by=hold.resolved_by,
            )
            return True

        return self._transaction(key, copy)

    def copy_back_resolution(self, hold: Hold) -> bool:
        """A hold MongoDB holds open that TigerBeetle resolved alone (phase 4), resolved the
        same way in MongoDB on a step back; False when MongoDB's hold is no longer open."""
        assert hold.state in (HoldState.CAPTURED, HoldState.RELEASED)

        def copy(session: ClientSession) -> bool:
            known = self.database.holds().find_one({"_id": hold.hold_id}, session=session)
            if known is None:
                return False
            return _resolve_copied_back(
                self.database, known, hold, session=session, marks=self.marks
            )

        return self._transaction(hold.key, copy)

    def copy_back_placement(self, hold: Hold) -> bool:
        """A hold TigerBeetle placed alone (phase 4), copied back on a step back at its place
        among the wallet's copied-back writes, whatever became of it since: open, with the
        expiry the cluster gives it, its amount held, its `hold` point logged at its time
        (after the wallet's holds due by then expire). Its capture or release follows as its
        own copied-back event (`copy_back_capture`, `copy_back_resolution`), its expiry as
        MongoDB's own, at the next copied event past it or the copy back's sweep. False when
        MongoDB has it."""
        key = hold.key

        def copy(session: ClientSession) -> bool:
            if self.database.holds().find_one({"_id": hold.hold_id}, session=session):
                return False
            expire_due(self.database, key, now=hold.created_at, session=session, marks=self.marks)
            self._insert_copied_back(
                session,
                hold,
                fields={"expires_at": hold.expires_at},
                increments={"held": decimal128(hold.amount_minor, key.currency)},
                kind=HoldEventKind.PLACE,
                amount_minor=hold.amount_minor,
                at=hold.created_at,
                made_by=hold.made_by,
            )
            return True

        return self._transaction(key, copy)

    def copy_back_open(self, hold: Hold) -> bool:
        """A hold TigerBeetle holds open (placed in phase 4 before placements were marked for
        the copy back), copied back as a placement is; its capture, release or expiry in
        phases 1-3 is then a hold event the mirror sends as an ordinary post or void of its
        pending transfer. False when MongoDB has it."""
        assert hold.state == HoldState.OPEN
        return self.copy_back_placement(hold)

    def _insert_copied_back(
        self,
        session: ClientSession,
        hold: Hold,
        *,
        fields: dict[str, Any],
        increments: dict[str, Any],
        kind: str,
        amount_minor: int,
        at: datetime,
        made_by: str,
    ) -> None:
        """A hold MongoDB lacks, inserted as TigerBeetle holds it (`fields` over a new hold's
        document), its wallet moved by `increments`, and its event logged as copied back (a
        point of MongoDB's history the mirror never sends again)."""
        key = hold.key
        document = hold_document(
            hold.hold_id,
            key,
            hold.amount_minor,
            timeout_s=hold.timeout_s,
            now=hold.created_at,
            made_by=hold.made_by,
        )
        document.update(fields, copied_back=True)
        self.database.holds().insert_one(document, session=session)
        wallet = update_wallet(
            self.database.wallets(),
            key,
            {"$inc": {**increments, "wallet_seq": 1}, "$set": {"updated_at": datetime.now(UTC)}},
            session=session,
        )
        assert wallet is not None, "a copied-back hold's wallet was copied back first"
        log_hold_event(
            self.database,
            session,
            kind=kind,
            hold_id=hold.hold_id,
            amount_minor=amount_minor,
            balance=available_balance_of(wallet),
            wallet_seq=int(wallet["wallet_seq"]),
            at=at,
            mirror_state=self.marks.copied_back,
            made_by=made_by,
            placed=document if kind == HoldEventKind.PLACE else None,
        )


class MongoHoldOperations:
    """The MongoDB store's hold operations (`MongoWalletStore` inherits them), over
    `MongoHolds` and the store's database."""

    database: MongoDatabase
    marks: LogMarks

    def place_hold(
        self, key: WalletKey, amount_minor: int, hold_id: str, *, timeout_s: int, made_by: str = ""
    ) -> HoldResult:
        return MongoHolds(self.database, self.marks).place_hold(
            key, amount_minor, hold_id, timeout_s=timeout_s, made_by=made_by
        )

    def capture_hold(
        self, hold_id: str, *, amount_minor: int | None = None, made_by: str = ""
    ) -> HoldResult:
        return MongoHolds(self.database, self.marks).capture_hold(
            hold_id, amount_minor=amount_minor, made_by=made_by
        )

    def release_hold(self, hold_id: str, *, made_by: str = "") -> HoldResult:
        return MongoHolds(self.database, self.marks).release_hold(hold_id, made_by=made_by)

    def get_hold(self, hold_id: str) -> Hold:
        return MongoHolds(self.database, self.marks).get_hold(hold_id)

    def sweep_expired_holds(self) -> int:
        """Expire due holds of wallets nobody touched (the beat task); wallets touched."""
        return MongoHolds(self.database, self.marks).sweep_expired()

    def copy_back_capture(self, hold: Hold) -> bool:
        return MongoHoldCopyBack(self.database, self.marks).copy_back_capture(hold)

    def copy_back_resolution(self, hold: Hold) -> bool:
        return MongoHoldCopyBack(self.database, self.marks).copy_back_resolution(hold)

    def copy_back_open(self, hold: Hold) -> bool:
        return MongoHoldCopyBack(self.database, self.marks).copy_back_open(hold)

    def copy_back_placement(self, hold: Hold) -> bool:
        return MongoHoldCopyBack(self.database, self.marks).copy_back_placement(hold)

    def known_hold_ids(self, hold_ids: list[str]) -> set[str]:
        """Which of these hold ids MongoDB has a hold of."""
        return self.database.guarded(
            lambda: {
                document["_id"]
                for document in self.database.holds().find({"_id": {"$in": hold_ids}}, {"_id": 1})
            }
        )

    def open_hold_ids(self) -> list[str]:
        """The ids of the holds MongoDB holds open (every one is carried by the mirror):
        what a step back from phase 4 asks TigerBeetle's registry about."""
        return self.database.guarded(
            lambda: [
                document["_id"]
                for document in self.database.holds().find(
                    {"state": HoldState.OPEN.value}, {"_id": 1}
                )
            ]
        )

    def open_holds(self, key: WalletKey) -> list[Hold]:
        """The wallet's holds open now, oldest first (at most OPEN_HOLDS_LISTED_MAX)."""

        def read() -> list[Hold]:
            found = (
                self.database.holds()
                .find(
                    {
                        **key_filter(key),
                        "state": HoldState.OPEN.value,
                        "expires_at": {"$gt": datetime.now(UTC)},
                    }
                )
                .sort([("created_at", 1), ("_id", 1)])
                .limit(OPEN_HOLDS_LISTED_MAX)
            )
            return [hold_of(document) for document in found]

        return self.database.guarded(read)
