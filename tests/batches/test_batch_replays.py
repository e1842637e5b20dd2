"""A resent batch of credits, debits and hold operations through POST /api/batches, on each
store (and, with TB_ADDRESSES, the TigerBeetle store on the real server): every item answers
as the first time (the posted ones 200 and replayed, the refused ones refused alike), nothing
moves twice; and on the TigerBeetle store the replays are read in bulk, not item by item."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from api import batch_views, hold_views, views
from domain.batches import BatchItem, BatchItemKind
from domain.holds import HoldResult
from domain.ids import WalletKey
from domain.wallets import WalletResult, WalletStore
from ledger import history
from ledger.backends import LedgerBackend
from ledger.service import WalletService
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from tests.batches.test_batch_api import (
    BATCH_PERMISSIONS,
    credit_item,
    debit_item,
    new_id,
    post_batch,
)
from tests.batches.test_batch_holds_api import (
    HOLD_PERMISSIONS,
    capture_item,
    codes,
    hold_item,
    release_item,
    wallet,
)
from tests.conftest import ledger_scope, token_api_client

HOUR_S = 3600


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    service = WalletService(wallet_store)
    for module in (views, batch_views):
        monkeypatch.setattr(module, "wallet_service", lambda: service)
    monkeypatch.setattr(hold_views.views, "wallet_service", lambda: service)
    return token_api_client((*BATCH_PERMISSIONS, *HOLD_PERMISSIONS))


def mixed_batch(api: APIClient) -> tuple[list[dict[str, Any]], list[str]]:
    """Items over three wallets (one the batch creates), each wallet's items interleaved
    with the others' and with its own holds; some refused. Returns the items and clients."""
    a, b, c = (f"client-{uuid.uuid4().hex[:10]}" for _ in range(3))
    earlier = [new_id("hold"), new_id("hold")]
    setup = [credit_item(a, "10.00"), credit_item(b, "10.00")]
    setup += [hold_item(a, "2.00", earlier[0]), hold_item(a, "1.00", earlier[1])]
    assert post_batch(api, setup, atomic=True).status_code == 201
    items = [
        credit_item(c, "5.00"),
        debit_item(a, "1.00"),
        hold_item(a, "3.00"),
        credit_item(a, "2.00"),
        debit_item(c, "1.00"),
        hold_item(c, "1.00"),
        debit_item(b, "50.00"),  # refused: funds
        capture_item(earlier[0], "1.50"),
        release_item(earlier[1]),
        debit_item(b, "2.00"),
        hold_item(b, "100.00"),  # refused: funds
        credit_item(b, "0.50"),
        capture_item(new_id("nohold")),  # refused: no such hold
        debit_item(a, "0.25"),
        credit_item(c, "0.75"),
    ]
    return items, [a, b, c]


@pytest.mark.parametrize("spans", ["whole", "truncated"])
def test_a_resent_batch_answers_every_item_as_the_first_time(
    api: APIClient, spans: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spans == "truncated":  # each wallet's span read returns one snapshot: the rest alone
        monkeypatch.setattr(history, "SNAPSHOTS_PER_READ", 1)
    items, clients = mixed_batch(api)
    first = post_batch(api, items, atomic=False).json()["results"]
    wallets_after = [wallet(api, client_id) for client_id in clients]

    again = post_batch(api, items, atomic=False).json()["results"]

    assert codes(first) == [
        *[(201, None)] * 6,
        (422, "insufficient_funds"),
        *[(201, None)] * 3,
        (422, "insufficient_funds"),
        (201, None),
        (404, "hold_not_found"),
        (201, None),
        (201, None),
    ]
    assert codes(again) == [
        (200 if status == 201 else status, code) for status, code in codes(first)
    ]
    assert [result.get("replayed", False) for result in again] == [
        status == 201 for status, _ in codes(first)
    ]
    hold_kinds = {"hold", "capture", "release"}
    for item, was, now in zip(items, first, again, strict=True):
        if was["status"] != 201:
            continue
        if item["kind"] in hold_kinds:
            # A hold operation's replay: the hold as the first time, the balance now (as
            # its single endpoint's replay answers).
            assert now["hold"] == was["hold"]
            client_id = item.get("client_id") or clients[0]
            now_credit, now_held = wallet(api, client_id)
            assert (now["balance"]["credit"], now["balance"]["held"]) == (now_credit, now_held)
        else:
            # A credit's or debit's replay: the transaction and the balance right after it.
            assert now["transaction"] == was["transaction"]
            assert now["balance"] == was["balance"]
    assert [wallet(api, client_id) for client_id in clients] == wallets_after


class _Calls:
    """Counts a backend's calls by method, the backend's own methods shadowed in place."""

    def __init__(self, backend: LedgerBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        for name in (
            "lookup_accounts",
            "lookup_transfers",
            "get_account_balances",
            "begin_get_account_balances",
        ):
            monkeypatch.setattr(backend, name, self._counted(name, getattr(backend, name)))

    def _counted(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return method(*args, **kwargs)

        return call


def test_a_resent_batch_reads_its_replays_in_bulk_on_tigerbeetle(
    db: None, wallet_ledger_backend: LedgerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resent batch of 300 items over 4 wallets: the balances right after its credits and
    debits in one get_account_balances per wallet, its holds' balances now in one
    lookup_accounts, its registry rows in a few queries; not a read per item."""
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    keys = [WalletKey(f"client-{uuid.uuid4().hex[:10]}", "USA", "USD") for _ in range(4)]
    for key in keys:
        store.add_credit(key, 1_000, f"tx-{uuid.uuid4().hex}")
    items = []
    for index in range(300):
        key = keys[index % len(keys)]
        kind = (BatchItemKind.CREDIT, BatchItemKind.DEBIT, BatchItemKind.HOLD)[index % 3]
        amount_minor = 1_000 if kind is BatchItemKind.CREDIT else 10
        items.append(
            BatchItem(
                kind=kind,
                key=key,
                amount_minor=amount_minor,
                transaction_id=f"id-{uuid.uuid4().hex}",
                timeout_s=HOUR_S if kind is BatchItemKind.HOLD else 0,
            )
        )
    first = store.post_batch(items, atomic=False)
    assert all(isinstance(outcome, WalletResult | HoldResult) for outcome in first)
    calls = _Calls(wallet_ledger_backend, monkeypatch)

    with CaptureQueriesContext(connection) as queries:
        again = store.post_batch(items, atomic=False)

    assert all(isinstance(o, WalletResult | HoldResult) and o.replayed for o in again)
    for was, now in zip(first, again, strict=True):
        if isinstance(was, WalletResult):
            assert isinstance(now, WalletResult)
            assert (now.transaction, now.balance) == (was.transaction, was.balance)
    assert calls.counts["begin_get_account_balances"] <= len(keys)
    assert calls.counts["get_account_balances"] <= len(keys)  # the engine's begin calls it
    assert calls.counts["lookup_accounts"] == 1
    assert calls.counts["lookup_transfers"] == 0
    assert len(queries) <= 10, [query["sql"][:120] for query in queries]
