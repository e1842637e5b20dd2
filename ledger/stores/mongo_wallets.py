"""A wallet document's update inside a write's transaction, and the document after it.

An indexed `update_one` on the wallet key, then an indexed read of the document, rather than
one `find_one_and_update`: secantusdb's findAndModify writes through a filter it cannot
route by an index (the matched `_id` and the query under `$and`), so it scans every wallet
document to change one (some 25 ms at 2,000 wallets, 80 ms with a `$expr` filter, which its
find scans for too; the scan grows with the collection). A real mongod pays one more indexed
read inside the transaction. A conditional update (the wallet must hold the amount) reads
the document first and checks it here; the update then names the `wallet_seq` it read
(every write and hold event of a wallet moves it), so a wallet moved since goes again as a
write conflict, as a batch's update does (`ledger.stores.mongo_batch`).
"""

from __future__ import annotations

from typing import Any

from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from domain.ids import WalletKey
from ledger.stores.mongo_documents import key_filter

_WRITE_CONFLICT = 112


def moved_since_read(why: str) -> OperationFailure:
    """A write conflict found by the store itself: the transaction goes again, as it does on
    the server's own write conflicts (`MongoDatabase.transaction`)."""
    return OperationFailure(
        f"write conflict: {why}",
        code=_WRITE_CONFLICT,
        details={"errorLabels": ["TransientTransactionError"]},
    )


def update_wallet(
    wallets: Collection[dict[str, Any]],
    key: WalletKey,
    update: dict[str, Any],
    *,
    session: ClientSession,
    upsert: bool = False,
) -> dict[str, Any] | None:
    """The wallet moved by `update` (made by it, `upsert`), as it stands after; None when
    there is no such wallet."""
    result = wallets.update_one(key_filter(key), update, upsert=upsert, session=session)
    if not result.matched_count and result.upserted_id is None:
        return None
    wallet = wallets.find_one(key_filter(key), session=session)
    assert wallet is not None, "the wallet just written is there in its own transaction"
    return wallet


def update_wallet_as_read(
    wallets: Collection[dict[str, Any]],
    *,
    wallet: dict[str, Any],
    update: dict[str, Any],
    session: ClientSession,
) -> dict[str, Any]:
    """`wallet` (a document this transaction read) moved by `update`, only if nothing moved
    it since the read; the document after."""
    guard = {"_id": wallet["_id"], "wallet_seq": wallet.get("wallet_seq", {"$exists": False})}
    result = wallets.update_one(guard, update, session=session)
    if result.matched_count != 1:
        raise moved_since_read("the wallet changed since it was read")
    after = wallets.find_one({"_id": wallet["_id"]}, session=session)
    assert after is not None, "the wallet just written is there in its own transaction"
    return after
