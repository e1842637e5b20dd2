"""Events benchmark (issue 24, item 5): a burst of API writes, their events collected and
delivered as signed webhooks to a local receiver; delivery throughput and the delay from each
write's acknowledgement to its event's arrival, beside the write rate of the same run.

    make bench-events                                   # embedded defaults
    make bench-events BENCH_ARGS="--writes 5000 --phase 4"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wallet TB_ADDRESSES=127.0.0.1:3000 \
        make bench-events

The app runs under gunicorn (bench.common) on a scratch database; this process is the load
(`--clients` threads posting credits to `--wallets` wallets), the receiver (an http.server
thread that verifies each delivery's signature and timestamp as docs/events.md says) and the
feed: the collector and the deliverer that the Celery tasks `events.collect` and
`events.deliver` run, here called back to back in one thread instead of on beat's tick
(EVENTS_COLLECT_INTERVAL_S, 2 s), so the figures are the feed's own cost, not the schedule's.
`--phase 4` writes through TigerBeetle (the store's outbox; on SQLite collected once
EVENTS_STORE_SETTLE_S old); the default, phase 0, through MongoDB's log.

Delay: receiver's arrival time - the time the write's 201 came back, both on this process's
monotonic clock. Delivery throughput: events received / (last arrival - first write sent);
the write rate: writes / (last acknowledgement - first write sent). The last line is
machine-readable: `events: writes=N ... lost=0 forged=0 out_of_order=0` (each wallet's events
arrive in its order: the receiver checks that the wallet's total received rises with each).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

import django

django.setup()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from decimal import Decimal  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from bench.common import (  # noqa: E402
    api_authorization,
    gunicorn,
    mongo_server,
    percentile,
    scratch_database,
)
from events.delivery import deliver_due  # noqa: E402
from events.models import Subscription  # noqa: E402
from events.tasks import collect_events_now, delivery_policy  # noqa: E402
from flags.audit import apply_state  # noqa: E402
from flags.phases import Phase, state_for_phase  # noqa: E402
from ledger.stores.mongo_database import MongoDatabase  # noqa: E402
from migration.runtime import Runtime  # noqa: E402
from wallet_site.wiring import build_runtime  # noqa: E402

RUN = uuid.uuid4().hex[:8]
SIGNATURE_TOLERANCE_S = 300
WAIT_FOR_EVENTS_S = 120.0  # after the burst, the feed has this long to deliver every event
FEED_IDLE_SLEEP_S = 0.02
DELIVER_BATCH = 500
RETRIES_503_MAX = 5
RETRY_503_WAIT_S = 0.5


class Receiver:
    """A webhook receiver on a free loopback port: verifies each delivery (HMAC-SHA256 over
    `<t>.<body>`, timestamp within SIGNATURE_TOLERANCE_S) and notes when each event first
    arrived, by its reference (the write's transaction id)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.arrived: dict[str, float] = {}
        self.repeats = 0
        self.forged = 0
        # A wallet's total received after each of its events, in arrival order: every burst
        # write is a credit, so the wallet's order makes it rise with each event.
        self.last_total: dict[str, Decimal] = {}
        self.out_of_order = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                verified = receiver.verified(self.headers.get("Wallet-Signature", ""), body)
                self.send_response(204 if verified else 400)
                self.end_headers()
                if verified:
                    receiver.note(json.loads(body), time.perf_counter())

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verified(self, header: str, body: bytes) -> bool:
        fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        try:
            timestamp = int(fields["t"])
        except (KeyError, ValueError):
            timestamp = 0
        expected = hmac.new(
            self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        fresh = abs(time.time() - timestamp) <= SIGNATURE_TOLERANCE_S
        if fresh and hmac.compare_digest(expected, fields.get("v1", "")):
            return True
        with self.lock:
            self.forged += 1
        return False

    def note(self, event: dict[str, Any], arrived_at: float) -> None:
        reference_id = event["reference_id"]
        wallet_id = event["wallet"]["id"]
        total = Decimal(event["balance_after"]["historical_credit"])
        with self.lock:
            if reference_id in self.arrived:
                self.repeats += 1
                return
            self.arrived[reference_id] = arrived_at
            if total <= self.last_total.get(wallet_id, Decimal(-1)):
                self.out_of_order += 1
            self.last_total[wallet_id] = total

    def received(self) -> int:
        with self.lock:
            return len(self.arrived)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Feed(threading.Thread):
    """The collector (with a runtime) and the deliverer back to back until stopped, what
    beat's two tasks do; without a runtime, a deliverer only (another worker process's
    `events.deliver`: deliveries are claimed with a lease, a wallet's in order)."""

    def __init__(self, runtime: Runtime | None) -> None:
        super().__init__(daemon=True)
        self.runtime = runtime
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        policy = delivery_policy()
        try:
            while not self.stopping.is_set():
                inserted = collect_events_now(self.runtime)["inserted"] if self.runtime else 0
                delivered = deliver_due(policy, limit=DELIVER_BATCH)
                if not inserted and not delivered.attempted:
                    time.sleep(FEED_IDLE_SLEEP_S)
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)
        if self.error is not None:
            raise RuntimeError("the feed failed") from self.error


def write_burst(
    base: str, *, authorization: str, writes: int, wallets: int, clients: int, retried: list[str]
) -> tuple[dict[str, float], float]:
    """`writes` credits of 1.00 over `wallets` wallets from `clients` threads; each write's
    acknowledgement time by its transaction id, and when the first was sent. A 503 (a store
    that timed out on a loaded machine) or no answer is sent again with the same id (a
    credit is idempotent by its id), noted in `retried`."""
    local = threading.local()
    acknowledged: dict[str, float] = {}

    def credit(number: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = authorization
        transaction_id = f"ev-{RUN}-{number}"
        answer = "not sent"
        for _ in range(RETRIES_503_MAX + 1):
            try:
                response = session.post(
                    f"{base}/api/clients/ev-{RUN}-{number % wallets}/wallets/USA/USD/credits",
                    json={"transaction_id": transaction_id, "amount": "1.00"},
                    timeout=30,
                )
            except requests.RequestException as error:  # no answer: the write may have landed
                answer = repr(error)
            else:
                if response.status_code != 503:
                    # 200: a retried write that had landed (replayed), acknowledged now.
                    assert response.status_code in (200, 201), response.text
                    break
                answer = response.text
            retried.append(transaction_id)  # as a client does: again, with the same id
            time.sleep(RETRY_503_WAIT_S)
        else:
            raise AssertionError(f"{transaction_id} not acknowledged: {answer}")
        acknowledged[transaction_id] = time.perf_counter()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(credit, range(writes)))
    return acknowledged, started


def with_database(mongo_url: str, *, name: str) -> str:
    parts = urlsplit(mongo_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def measure(args: argparse.Namespace, *, mongo_url: str) -> dict[str, float]:
    settings.TB_ID_NAMESPACE = f"events-{RUN}"
    mongo_name = f"events_bench_{RUN}"
    database = MongoDatabase(with_database(mongo_url, name=mongo_name), timeout_s=60)
    secret = secrets.token_hex(32)
    retried: list[str] = []
    with scratch_database(f"events_{RUN}") as database_name, Receiver(secret) as receiver:
        if args.phase == 4:
            apply_state(
                state_for_phase(
                    Phase.TIGERBEETLE_ONLY,
                    shadow_percent=Decimal(100),
                    rollout_percent=Decimal(100),
                ),
                actor="bench",
            )
        user = get_user_model().objects.create_user(f"events-bench-{RUN}")
        authorization = api_authorization(user)
        Subscription.objects.create(
            owner=user, url=receiver.url, secret=secret, event_types=["posted"]
        )
        connection.close()
        extra = {
            "MONGO_URL": with_database(mongo_url, name=mongo_name),
            "TB_ADDRESSES": settings.TB_ADDRESSES,
            "TB_ID_NAMESPACE": settings.TB_ID_NAMESPACE,
            "CACHE_KEY_PREFIX": f"events-{RUN}",
        }
        try:
            with gunicorn(
                store_name="phased",
                database_name=database_name,
                workers=args.workers,
                threads=args.threads,
                keep_alive_s=5,
                extra_env=extra,
            ) as base:
                feeds = [Feed(build_runtime(mongo_database=database))]
                feeds += [Feed(None) for _ in range(args.deliverers - 1)]
                for feed in feeds:
                    feed.start()
                try:
                    acknowledged, started = write_burst(
                        base,
                        authorization=authorization,
                        writes=args.writes,
                        wallets=args.wallets,
                        clients=args.clients,
                        retried=retried,
                    )
                    deadline = time.monotonic() + WAIT_FOR_EVENTS_S
                    while receiver.received() < args.writes and time.monotonic() < deadline:
                        time.sleep(0.05)
                finally:
                    for feed in feeds:
                        feed.stop()
        finally:
            database.client.drop_database(mongo_name)
        return {**figures(acknowledged, receiver, started=started), "retried_503": len(retried)}


def figures(
    acknowledged: dict[str, float], receiver: Receiver, *, started: float
) -> dict[str, float]:
    arrived = {ref: t for ref, t in receiver.arrived.items() if ref in acknowledged}
    delays_ms = [(arrived[ref] - acknowledged[ref]) * 1000 for ref in arrived]
    write_s = max(acknowledged.values()) - started
    deliver_s = (max(arrived.values()) - started) if arrived else float("inf")
    write_rate = len(acknowledged) / write_s
    delivery_rate = len(arrived) / deliver_s
    return {
        "writes": len(acknowledged),
        "write_s": write_s,
        "write_per_s": write_rate,
        "delivered": len(arrived),
        "deliver_s": deliver_s,
        "delivered_per_s": delivery_rate,
        "ratio": delivery_rate / write_rate,
        "delay_p50_ms": percentile(delays_ms, 50) if delays_ms else float("inf"),
        "delay_p99_ms": percentile(delays_ms, 99) if delays_ms else float("inf"),
        "delay_max_ms": max(delays_ms) if delays_ms else float("inf"),
        "lost": len(acknowledged) - len(arrived),
        "repeats": receiver.repeats,
        "forged": receiver.forged,
        "out_of_order": receiver.out_of_order,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=2000, help="credits in the burst")
    parser.add_argument("--wallets", type=int, default=100, help="wallets they go to")
    parser.add_argument("--clients", type=int, default=8, help="threads posting")
    parser.add_argument("--phase", type=int, choices=(0, 4), default=0)
    parser.add_argument(
        "--deliverers", type=int, default=1, help="threads delivering (one also collects)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    args = parser.parse_args(argv)
    assert args.writes > 0 and args.wallets > 0 and args.clients > 0 and args.deliverers > 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = f"server at {settings.TB_ADDRESSES}" if settings.TB_ADDRESSES else "embedded engine"
    load = os.getloadavg()[0]
    with mongo_server() as mongo_url:
        result = measure(args, mongo_url=mongo_url)
    print(
        f"\nEvents: {result['writes']:.0f} credits over the API (phase {args.phase}, "
        f"{args.wallets} wallets, {args.clients} clients, {args.deliverers} deliverers; "
        f"gunicorn {args.workers}x{args.threads}; "
        f"{engine}; {connection.vendor}; load average {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, {os.cpu_count()} cores)"
    )
    print(f"{'figure':<46} {'value':>10}")
    rows = [
        ("write rate (writes/s)", result["write_per_s"]),
        ("delivery throughput (events/s)", result["delivered_per_s"]),
        ("delivery / write rate (x)", result["ratio"]),
        ("delay ack -> receiver p50 (ms)", result["delay_p50_ms"]),
        ("delay ack -> receiver p99 (ms)", result["delay_p99_ms"]),
        ("delay ack -> receiver max (ms)", result["delay_max_ms"]),
        ("burst wall time (s)", result["write_s"]),
        ("last event delivered after (s)", result["deliver_s"]),
        ("503s or no answer, sent again with the same id", result["retried_503"]),
        ("repeated deliveries (at least once)", result["repeats"]),
        ("events out of their wallet's order", result["out_of_order"]),
    ]
    for name, value in rows:
        print(f"{name:<46} {Decimal(value).quantize(Decimal('0.001')):>10}")
    print(
        f"events: writes={result['writes']:.0f} write_per_s={result['write_per_s']:.1f} "
        f"delivered_per_s={result['delivered_per_s']:.1f} ratio={result['ratio']:.2f} "
        f"delay_p50_ms={result['delay_p50_ms']:.0f} delay_p99_ms={result['delay_p99_ms']:.0f} "
        f"lost={result['lost']:.0f} forged={result['forged']:.0f} "
        f"out_of_order={result['out_of_order']:.0f}"
    )
    failed = result["lost"] or result["forged"] or result["out_of_order"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
