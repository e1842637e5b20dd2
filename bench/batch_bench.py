"""Batch benchmark: 8189-item batches through `POST /api/batches` beside the raw inputs.

    make bench-batches                              # the embedded engine (SQLite)
    TB_ADDRESSES=127.0.0.1:3000 make bench-batches  # the real TigerBeetle server
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wallet make bench-batches

The API side: the app under gunicorn (the phased store in phase 4, TigerBeetle the only
store, as a batch runs there), this process posting independent batches of 8189 credits and
debits over WALLETS wallets, one batch at a time, timed from request to parsed answer.

The raw side, in the same run, batch for batch beside the API's: the ledger backend's own
`create_transfers` of 8189 transfers of the same shape (the real `tigerbeetle` client on the
server; the engine's call on the embedded default), plus a bare bulk insert of the 8189
registry rows those transfers need, the slowest raw input the API must also pay. Two bulk
inserts are measured: the barest the driver offers (one INSERT statement sent with every
row's prepared values in one transaction, `executemany`: the strict baseline, and the one
the API's own insert uses) and Django's `bulk_create` of prepared model instances (what a
Django codebase writes). The issue wants the API at >= 0.5x the raw items/s.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

import django

django.setup()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import requests  # noqa: E402
import tigerbeetle as tb  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.common import (  # noqa: E402
    Target,
    api_authorization,
    gunicorn,
    mongo_server,
    percentile,
    print_targets,
    scratch_database,
)
from domain.batches import BATCH_ITEMS_MAX  # noqa: E402
from domain.ids import WalletKey, u128_to_hex  # noqa: E402
from domain.money import ledger_for_currency  # noqa: E402
from flags.audit import apply_state  # noqa: E402
from flags.phases import Phase, state_for_phase  # noqa: E402
from ledger.backends import LedgerBackend, get_ledger_backend  # noqa: E402
from ledger.tb_model import TRANSFER_CODE_CREDIT  # noqa: E402
from migration.runtime import process_runtime  # noqa: E402
from registry.accounts import rows_by_key  # noqa: E402
from registry.bulk_insert import unnest_insert  # noqa: E402
from registry.models import WalletAccount, WalletTransfer  # noqa: E402

# The raw multi-row INSERT's rows per statement; UNNEST: PostgreSQL's one array per column
# (the API's own insert there, and bulk_create's).
ROWS_PER_STATEMENT = 1000
UNNEST = -1


def batch_items(
    run: str, round_number: int, clients: list[str], *, holds: bool = False
) -> list[dict[str, Any]]:
    """8189 items over the wallets, credits and debits alternating (the seed covers every
    debit, so every item posts); `holds`: hold placements (for an hour) in place of the
    debits."""
    items: list[dict[str, Any]] = []
    for index in range(BATCH_ITEMS_MAX):
        client_id = clients[index % len(clients)]
        common = {"client_id": client_id, "country": "USA", "currency": "USD"}
        if index % 2 and holds:
            items.append(
                {
                    **common,
                    "kind": "hold",
                    "amount": "0.01",
                    "hold_id": f"h-{run}-{round_number}-{index}",
                    "expires_in_s": 3600,
                }
            )
        elif index % 2:
            items.append(
                {
                    **common,
                    "kind": "debit",
                    "amount": "0.01",
                    "reference_id": f"d-{run}-{round_number}-{index}",
                }
            )
        else:
            items.append(
                {
                    **common,
                    "kind": "credit",
                    "amount": "1.00",
                    "transaction_id": f"c-{run}-{round_number}-{index}",
                }
            )
    return items


WARM_BATCHES_PER_WORKER = 3


def post_batch(
    session: requests.Session, base: str, items: list[dict[str, Any]], *, status: int = 201
) -> float:
    """One batch through the API, timed from sending the body (JSON-encoded beforehand, as
    the raw side's transfers are built beforehand) to the parsed answer; every item answers
    `status` (201 posted, 200 replayed)."""
    body = json.dumps({"atomic": False, "items": items})
    started = time.perf_counter()
    response = session.post(
        f"{base}/api/batches",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=600,
    )
    results = response.json()["results"]
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text[:500]
    refused = [result for result in results if result["status"] != status]
    assert not refused, refused[:3]
    return elapsed


class RawInputs:
    """The raw side: the backend's create_transfers and a bare bulk insert of registry rows."""

    def __init__(
        self, backend: LedgerBackend | tb.ClientSync, wallets: list[WalletAccount]
    ) -> None:
        self.backend = backend
        self.wallets = wallets
        self.ledger = ledger_for_currency("USD")
        self.system_account_id = process_runtime().scope.ids.system_account_id(self.ledger)

    def create_transfers_s(self) -> float:
        transfers = [
            tb.Transfer(
                id=tb.id(),
                debit_account_id=self.system_account_id,
                credit_account_id=self.wallets[index % len(self.wallets)].tb_account_id,
                amount=1,
                ledger=self.ledger,
                code=TRANSFER_CODE_CREDIT,
            )
            for index in range(BATCH_ITEMS_MAX)
        ]
        started = time.perf_counter()
        results = self.backend.create_transfers(transfers)
        elapsed = time.perf_counter() - started
        assert all(result.status == tb.CreateTransferStatus.CREATED for result in results)
        return elapsed

    def bulk_insert_s(self, *, rows_per_statement: int | None = None) -> float:
        """The barest bulk insert of 8189 registry rows, values prepared beforehand (no model
        instances), in one transaction: one INSERT statement sent with every row's values
        (`executemany`), or (`rows_per_statement`) multi-row INSERTs; the timing covers the
        statements alone."""
        now = _CREATED_AT.get_db_prep_save(datetime.now(UTC), connection)
        rows = []
        for index in range(BATCH_ITEMS_MAX):
            values = {
                **_DEFAULTS,
                "transaction_id": f"raw-{uuid.uuid4().hex}",
                "wallet_id": self.wallets[index % len(self.wallets)].pk,
                "kind": "credit",
                "amount_minor": 1,
                "tb_transfer_id_hex": u128_to_hex(tb.id()),
                "tb_timestamp": 1,
                "created_at": now,
                "needs_copy_back": True,
            }
            rows.append([values[field.attname] for field in _FIELDS])
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            if rows_per_statement is None:
                cursor.executemany(_insert_sql(1), rows)
            elif rows_per_statement == UNNEST:
                # The API's own statement (uniform columns sent once), bare: no ON CONFLICT.
                cursor.execute(*unnest_insert(WalletTransfer, _FIELDS, rows, keep_existing=False))
            else:
                for start in range(0, len(rows), rows_per_statement):
                    chunk = rows[start : start + rows_per_statement]
                    cursor.execute(_insert_sql(len(chunk)), [v for row in chunk for v in row])
        return time.perf_counter() - started

    def orm_bulk_create_s(self) -> float:
        """The same rows through Django's `bulk_create` (model instances built beforehand):
        the bulk insert a Django codebase writes, for comparison."""
        now = datetime.now(UTC)
        rows = [
            WalletTransfer(
                transaction_id=f"orm-{uuid.uuid4().hex}",
                wallet=self.wallets[index % len(self.wallets)],
                kind="credit",
                amount_minor=1,
                tb_transfer_id_hex=u128_to_hex(tb.id()),
                tb_timestamp=1,
                created_at=now,
                needs_copy_back=True,
            )
            for index in range(BATCH_ITEMS_MAX)
        ]
        started = time.perf_counter()
        WalletTransfer.objects.bulk_create(rows)
        return time.perf_counter() - started


_FIELDS = [field for field in WalletTransfer._meta.concrete_fields if not field.primary_key]
_DEFAULTS = {f.attname: f.get_default() if f.has_default() else None for f in _FIELDS}
_CREATED_AT = WalletTransfer._meta.get_field("created_at")


def _insert_sql(rows: int) -> str:
    row = "(" + ", ".join(["%s"] * len(_FIELDS)) + ")"
    columns = ", ".join(str(f.column) for f in _FIELDS)
    return (
        f"INSERT INTO {WalletTransfer._meta.db_table} ({columns}) VALUES {', '.join([row] * rows)}"
    )


def seed(session: requests.Session, base: str, clients: list[str]) -> None:
    """Each wallet created and funded by one batch of credits (the account set-up is the
    wallets' first use, outside the timing)."""
    items = [
        {
            "kind": "credit",
            "client_id": client_id,
            "country": "USA",
            "currency": "USD",
            "amount": "1000.00",
            "transaction_id": f"seed-{client_id}",
        }
        for client_id in clients
    ]
    for start in range(0, len(items), BATCH_ITEMS_MAX):
        post_batch(session, base, items[start : start + BATCH_ITEMS_MAX])


def figures(
    *, api_s: list[float], raw_s: list[float], raw_name: str, percentiles: bool = True
) -> list[Target]:
    ms = 1000
    rows = []
    if percentiles:
        rows = [
            Target(
                f"batch p{pct}: API vs {raw_name}",
                percentile(api_s, pct) * ms,
                percentile(raw_s, pct) * ms,
                "ms",
            )
            for pct in (50, 95, 99)
        ]
    api_rate = BATCH_ITEMS_MAX * len(api_s) / sum(api_s)
    raw_rate = BATCH_ITEMS_MAX * len(raw_s) / sum(raw_s)
    rows.append(Target(f"items/s: API vs {raw_name}", api_rate, raw_rate, "it/s", ratio_min=0.5))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="timed batches of each side")
    parser.add_argument("--wallets", type=int, default=1000, help="wallets a batch spreads over")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--holds", action="store_true", help="hold placements in place of the debits"
    )
    parser.add_argument(
        "--replay", action="store_true", help="then resend every timed batch (all replays)"
    )
    args = parser.parse_args(argv)
    backend_name = "real TigerBeetle server" if settings.TB_ADDRESSES else "embedded engine"
    run = uuid.uuid4().hex[:8]
    clients = [f"batch-{run}-{index}" for index in range(args.wallets)]
    with mongo_server() as mongo_url, scratch_database("batches") as database_name:
        apply_state(state_for_phase(Phase.TIGERBEETLE_ONLY), actor="bench")
        user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:6]}")
        authorization = api_authorization(user)
        user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="registry",
                codename__in=("post_batches", "add_wallethold"),
            )
        )
        connection.close()  # gunicorn workers open their own
        api_s: list[float] = []
        replay_s: list[float] = []
        raw_parts: list[tuple[float, ...]] = []
        unnest = connection.vendor == "postgresql"
        with gunicorn(
            store_name="phased",
            database_name=database_name,
            workers=args.workers,
            extra_env={"MONGO_URL": mongo_url, "GUNICORN_CMD_ARGS": "--timeout 600"},
        ) as base:
            session = requests.Session()
            session.headers["Authorization"] = authorization
            seed(session, base, clients)
            wallets = list(rows_by_key(WalletKey(c, "USA", "USD") for c in clients).values())
            raw_backend: Any = (
                tb.ClientSync(
                    cluster_id=settings.TB_CLUSTER_ID, replica_addresses=settings.TB_ADDRESSES
                )
                if settings.TB_ADDRESSES
                else get_ledger_backend()
            )
            raw = RawInputs(raw_backend, wallets)
            try:
                # Warm both sides: the raw client, and every gunicorn worker (each takes the
                # next connection it accepts, so a few batches per worker reach each).
                for warm_round in range(WARM_BATCHES_PER_WORKER * args.workers):
                    warm = batch_items(run, -1 - warm_round, clients, holds=args.holds)
                    post_batch(session, base, warm)
                raw.create_transfers_s()
                for round_number in range(args.batches):
                    items = batch_items(run, round_number, clients, holds=args.holds)
                    api_s.append(post_batch(session, base, items))
                    raw_parts.append(
                        (
                            raw.create_transfers_s(),
                            raw.bulk_insert_s(),
                            raw.bulk_insert_s(rows_per_statement=ROWS_PER_STATEMENT),
                            raw.orm_bulk_create_s(),
                            raw.bulk_insert_s(rows_per_statement=UNNEST) if unnest else 1e9,
                        )
                    )
                for round_number in range(args.batches if args.replay else 0):
                    items = batch_items(run, round_number, clients, holds=args.holds)
                    replay_s.append(post_batch(session, base, items, status=200))
            finally:
                if settings.TB_ADDRESSES:
                    raw_backend.close()
        # The strict baseline: each round's create_transfers plus its fastest bare insert.
        raw_s = [parts[0] + min(parts[1:]) for parts in raw_parts]
        raw_orm_s = [parts[0] + parts[3] for parts in raw_parts]

    def median_ms(part: int) -> str:
        return f"{percentile([parts[part] for parts in raw_parts], 50) * 1000:.1f} ms"

    print(
        f"\n{backend_name}, database {connection.vendor}, {args.wallets} wallets, "
        f"{args.batches} batches of {BATCH_ITEMS_MAX}"
        f"{' (credits and holds)' if args.holds else ''}; raw parts per batch (median): "
        f"create_transfers {median_ms(0)}; registry insert: executemany {median_ms(1)}, "
        f"{ROWS_PER_STATEMENT}-row INSERTs {median_ms(2)}, bulk_create {median_ms(3)}"
        + (f", UNNEST {median_ms(4)}" if raw_parts[0][4] < 1e9 else "")
    )
    print_targets(
        "POST /api/batches beside the raw inputs of the same run",
        figures(api_s=api_s, raw_s=raw_s, raw_name="create_transfers + fastest bare insert")
        + figures(
            api_s=api_s,
            raw_s=raw_orm_s,
            raw_name="create_transfers + bulk_create",
            percentiles=False,
        ),
    )
    if replay_s:
        print(
            f"replays (every timed batch resent, each item answered 200): "
            f"{BATCH_ITEMS_MAX * len(replay_s) / sum(replay_s):,.0f} items/s, "
            f"p50 per batch {percentile(replay_s, 50) * 1000:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
