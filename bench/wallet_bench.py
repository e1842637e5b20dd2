"""Wallet benchmark: latency of each wallet operation per store, in-process and over HTTP.

    make bench-wallet          # embedded defaults: SQLite, embedded MongoDB (secantusdb)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wallet make bench-wallet
    TB_ADDRESSES=127.0.0.1:3000 make bench-wallet   # plus the targets on the real server

In-process, each operation goes through the wallet service; its baseline is the raw backend
call of the same store in the same run (a TigerBeetle lookup_accounts, a pymongo find_one).
Over HTTP, the app runs under gunicorn and this process is the load; the baseline is the
bare authenticated endpoint `/api/ping` on the same server.

With TB_ADDRESSES set, the TigerBeetle targets are measured against the raw `tigerbeetle`
client of the same run, each sample of the service interleaved with one of its baseline so
that the machine's load falls on both alike: GetBalance p50 at most 1.5x a raw
`lookup_accounts` p50 and p95 under 1 ms; a credit p50 at most 3x a raw single
`create_transfers` p50.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

import django

django.setup()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402

import requests  # noqa: E402
import tigerbeetle as tb  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from bench.common import (  # noqa: E402
    Figure,
    Target,
    api_authorization,
    gunicorn,
    latency_figures,
    mongo_server,
    percentile,
    print_figures,
    print_targets,
    scratch_database,
)
from bench.phases import CLOCK, Phases, TimedBackend, print_breakdown  # noqa: E402
from domain.ids import WalletKey  # noqa: E402
from domain.money import ledger_for_currency  # noqa: E402
from ledger.backends import get_ledger_backend  # noqa: E402
from ledger.service import WalletService  # noqa: E402
from ledger.stores.mongo_database import WALLETS, MongoDatabase  # noqa: E402
from ledger.stores.mongo_documents import key_filter  # noqa: E402
from ledger.stores.mongo_store import MongoWalletStore  # noqa: E402
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore  # noqa: E402
from migration.outbox import LOG_MARKS  # noqa: E402
from migration.runtime import process_runtime  # noqa: E402
from registry.accounts import find_account  # noqa: E402

OPERATIONS = ("add_credit", "subtract_credit", "get_balance", "get_balances", "void")


def timed(call: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - started


def seed_each(service: WalletService, keys: list[WalletKey], *, id_prefix: str) -> None:
    """1000.00 into each wallet, so each exists and has room for the debits and voids."""
    for key in keys:
        service.add_credit(
            client_id=key.client_id,
            country=key.country,
            currency=key.currency,
            amount=Decimal("1000.00"),
            transaction_id=f"{id_prefix}{key.client_id}",
        )


def in_process(
    store_name: str, service: WalletService, raw: Callable[[WalletKey], object], count: int
) -> list[Figure]:
    run = uuid.uuid4().hex[:8]
    keys = [WalletKey(f"bench-{run}-{i}", "USA", "USD") for i in range(count)]
    seed_each(service, keys, id_prefix="seed-")
    samples: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    for i, key in enumerate(keys):
        client = key.client_id
        samples["add_credit"].append(
            timed(
                service.add_credit,
                client_id=client,
                country="USA",
                currency="USD",
                amount="5.00",
                transaction_id=f"c-{run}-{i}",
            )
        )
        samples["subtract_credit"].append(
            timed(
                service.subtract_credit,
                client_id=client,
                country="USA",
                currency="USD",
                amount="1.00",
                reference_id=f"d-{run}-{i}",
            )
        )
        samples["get_balance"].append(
            timed(service.get_balance, client_id=client, country="USA", currency="USD")
        )
        samples["get_balances"].append(timed(service.get_balances, client))
        samples["void"].append(
            timed(service.void_transaction, f"c-{run}-{i}", voided_by="bench", reason="benchmark")
        )
    baseline = [timed(raw, key) for key in keys]
    figures: list[Figure] = []
    for op in OPERATIONS:
        figures += latency_figures(
            f"{store_name} in-process {op}", samples_s=samples[op], baseline_s=baseline
        )
    return figures


def timed_tigerbeetle_service() -> WalletService:
    """The wallet service on a TigerBeetle store whose backend calls are timed (bench.phases)."""
    scope = process_runtime().scope
    return WalletService(TigerBeetleWalletStore(TimedBackend(get_ledger_backend()), scope=scope))


def registered_account_id(key: WalletKey) -> int:
    """The TigerBeetle account of a wallet the run has just credited (so it is registered)."""
    registered = find_account(key)
    assert registered is not None, key
    return registered.tb_account_id


def tigerbeetle_targets(service: WalletService, count: int) -> list[Target]:
    """The issue's targets on the real server; none on the embedded engine."""
    if not settings.TB_ADDRESSES:
        return []
    run = uuid.uuid4().hex[:8]
    ledger = ledger_for_currency("USD")
    keys = [WalletKey(f"target-{run}-{i}", "USA", "USD") for i in range(count)]
    seed_each(service, keys, id_prefix="t-seed-")
    account_ids = [registered_account_id(key) for key in keys]
    raw = tb.ClientSync(cluster_id=settings.TB_CLUSTER_ID, replica_addresses=settings.TB_ADDRESSES)
    try:
        raw.lookup_accounts(account_ids[:1])  # the session is opened outside the timing
        balance, lookup, credit, create = [], [], [], []
        credit_phases = Phases()
        for i, (key, account_id) in enumerate(zip(keys, account_ids, strict=True)):
            balance.append(
                timed(service.get_balance, client_id=key.client_id, country="USA", currency="USD")
            )
            lookup.append(timed(raw.lookup_accounts, [account_id]))
            with CLOCK.measuring(credit_phases):
                credit.append(
                    timed(
                        service.add_credit,
                        client_id=key.client_id,
                        country="USA",
                        currency="USD",
                        amount="1.00",
                        transaction_id=f"t-{run}-{i}",
                    )
                )
            transfer = tb.Transfer(
                id=tb.id(),
                debit_account_id=process_runtime().scope.ids.system_account_id(ledger),
                credit_account_id=account_id,
                amount=100,
                ledger=ledger,
                code=1,
            )
            create.append(timed(raw.create_transfers, [transfer]))
    finally:
        raw.close()
    print_breakdown("credit through the service", sum(credit), credit_phases, per=len(credit))
    return service_targets(balance_s=balance, lookup_s=lookup, credit_s=credit, create_s=create)


def service_targets(
    *, balance_s: list[float], lookup_s: list[float], credit_s: list[float], create_s: list[float]
) -> list[Target]:
    """The service's balance reads and credits against the raw client's lookups and creates."""
    ms = 1000
    return [
        Target(
            "GetBalance (service) p50 vs raw lookup_accounts p50",
            percentile(balance_s, 50) * ms,
            percentile(lookup_s, 50) * ms,
            "ms",
            ratio_max=1.5,
        ),
        Target(
            "GetBalance (service) p95 vs 1 ms",
            percentile(balance_s, 95) * ms,
            1.0,
            "ms",
            ratio_max=1.0,
        ),
        Target(
            "credit (service) p50 vs raw single create_transfers p50",
            percentile(credit_s, 50) * ms,
            percentile(create_s, 50) * ms,
            "ms",
            ratio_max=3.0,
        ),
        Target(
            "credit (service) p95 vs raw single create_transfers p95",
            percentile(credit_s, 95) * ms,
            percentile(create_s, 95) * ms,
            "ms",
        ),
        Target(
            "GetBalance (service) p95 vs raw lookup_accounts p95",
            percentile(balance_s, 95) * ms,
            percentile(lookup_s, 95) * ms,
            "ms",
        ),
    ]


def over_http(store_name: str, *, base: str, authorization: str, count: int) -> list[Figure]:
    session = requests.Session()
    session.headers["Authorization"] = authorization
    run = uuid.uuid4().hex[:8]
    clients = [f"http-{run}-{i}" for i in range(count)]
    for client in clients:
        credit = session.post(
            f"{base}/api/clients/{client}/wallets/USA/USD/credits",
            json={"transaction_id": f"seed-{client}", "amount": "100.00"},
        )
        assert credit.status_code == 201, credit.text
    balance = [
        timed(lambda c=c: session.get(f"{base}/api/clients/{c}/wallets/USA/USD").raise_for_status())
        for c in clients
    ]
    credits = [
        timed(
            lambda c=c, i=i: session.post(
                f"{base}/api/clients/{c}/wallets/USA/USD/credits",
                json={"transaction_id": f"h-{run}-{i}", "amount": "1.00"},
            ).raise_for_status()
        )
        for i, c in enumerate(clients)
    ]
    ping = [timed(lambda: session.get(f"{base}/api/ping").raise_for_status()) for _ in clients]
    return latency_figures(
        f"{store_name} HTTP get_balance", samples_s=balance, baseline_s=ping
    ) + latency_figures(f"{store_name} HTTP add_credit", samples_s=credits, baseline_s=ping)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="operations of each kind")
    parser.add_argument(
        "--targets-only", action="store_true", help="only the TigerBeetle targets (TB_ADDRESSES)"
    )
    args = parser.parse_args(argv)
    if args.targets_only:
        with scratch_database("wallet"):
            targets = tigerbeetle_targets(timed_tigerbeetle_service(), args.count)
        print_targets("TigerBeetle targets, against the raw client in the same run", targets)
        return 0
    in_process_figures: list[Figure] = []
    http_figures: list[Figure] = []
    with mongo_server() as mongo_url, scratch_database("wallet") as database_name:
        mongo_database = MongoDatabase(mongo_url, name=f"wallet_bench_{uuid.uuid4().hex[:6]}")
        mongo_store = MongoWalletStore(mongo_database, marks=LOG_MARKS)
        tb_store = TigerBeetleWalletStore(scope=process_runtime().scope)
        wallets = mongo_database.db[WALLETS]

        def raw_mongo(key: WalletKey) -> object:
            return wallets.find_one(key_filter(key))

        def raw_tigerbeetle(key: WalletKey) -> object:
            registered = find_account(key)
            assert registered is not None
            return tb_store.backend.lookup_accounts([registered.tb_account_id])

        in_process_figures += in_process("mongo", WalletService(mongo_store), raw_mongo, args.count)
        in_process_figures += in_process(
            "tigerbeetle", WalletService(tb_store), raw_tigerbeetle, args.count
        )
        targets = tigerbeetle_targets(timed_tigerbeetle_service(), args.count)
        user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:6]}")
        authorization = api_authorization(user)
        connection.close()  # gunicorn workers open their own
        for store_name in ("mongo", "tigerbeetle"):
            with gunicorn(
                store_name=store_name,
                database_name=database_name,
                extra_env={"MONGO_URL": mongo_url},
            ) as base:
                http_figures += over_http(
                    store_name, base=base, authorization=authorization, count=args.count
                )
        mongo_database.client.drop_database(mongo_database.db.name)
    print_figures(
        "Wallet operations in-process",
        in_process_figures,
        "raw store call: pymongo find_one / TigerBeetle lookup_accounts",
    )
    print_figures(
        "Wallet operations over HTTP (gunicorn, 2 workers)",
        http_figures,
        "bare authenticated endpoint /api/ping",
    )
    if targets:
        print_targets("TigerBeetle targets, against the raw client in the same run", targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
