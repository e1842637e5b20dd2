"""What a full scan of the legacy wallets costs every other MongoDB client on the embedded
server, with its cycle collector tuned for a server (`wallet_site.mongo_server`) against
Python's defaults (the baseline), in the same run.

`python -m bench.mongo_scan_bench --wallets N --scans S`: for each collector, an embedded
server of its own, N legacy wallets seeded (`bench.legacy`), then S scans of them as the
backfill and reconciliation read them (`find({})` in batches of 4,000) while a second client
reads one wallet by its key every 50 ms. secantusdb builds a find's whole result before its
first batch, so each scan's start stalls the server; the figures are the scan's first batch
and whole time, and the point reads' latency during the scans (p50/p95/p99, max).
"""

from __future__ import annotations

import argparse
import threading
import time
from statistics import mean

import pymongo

from bench.common import (
    Figure,
    embedded_cache_size,
    percentile,
    print_figures,
)
from bench.legacy import LegacySeed
from ledger.stores.mongo_database import WALLETS, MongoDatabase
from ledger.stores.mongo_documents import key_filter
from wallet_site.embedded_mongo import start_embedded_mongo

SCAN_BATCH = 4_000
POINT_READ_EVERY_S = 0.05
COLLECTORS = ("python", "server")  # the baseline first


class PointReads:
    """One wallet by its key every POINT_READ_EVERY_S on a client of its own; each read's
    seconds."""

    def __init__(self, url: str, seed: LegacySeed, wallets: int) -> None:
        self.client: pymongo.MongoClient = pymongo.MongoClient(url)
        self.collection = self.client.get_default_database()[WALLETS]
        self.seed, self.wallets = seed, wallets
        self.latencies_s: list[float] = []
        self.missing: list[str] = []  # seeded keys a read did not find
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PointReads:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()
        assert not self.missing, f"seeded wallets not found: {self.missing[:5]}"

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            key = self.seed.key(number * 7_919 % self.wallets)
            number += 1
            started = time.perf_counter()
            found = self.collection.find_one(key_filter(key))
            self.latencies_s.append(time.perf_counter() - started)
            if found is None:
                self.missing.append(key.describe())
            self._stop.wait(POINT_READ_EVERY_S)


def scan(url: str) -> tuple[float, float, int]:
    """One pass over every wallet document: (first batch s, whole scan s, documents)."""
    client: pymongo.MongoClient = pymongo.MongoClient(url)
    try:
        started = time.perf_counter()
        first_s = 0.0
        documents = 0
        for _ in client.get_default_database()[WALLETS].find({}, batch_size=SCAN_BATCH):
            documents += 1
            if documents == 1:
                first_s = time.perf_counter() - started
        return first_s, time.perf_counter() - started, documents
    finally:
        client.close()


def measure(collector: str, *, wallets: int, scans: int) -> dict[str, list[float]]:
    server = start_embedded_mongo(
        database="scan_bench", cache_size=embedded_cache_size(wallets), collector=collector
    )
    try:
        seed = LegacySeed(run="scan", mixed=True)
        started = time.perf_counter()
        seed.seed(MongoDatabase(server.url, name="scan_bench", timeout_s=300), wallets)
        print(f"  {collector}: {wallets} wallets seeded in {time.perf_counter() - started:.1f} s")
        first_s, whole_s = [], []
        with PointReads(server.url, seed, wallets) as reads:
            for _ in range(scans):
                first, whole, documents = scan(server.url)
                assert documents == wallets, f"the scan read {documents} of {wallets}"
                first_s.append(first)
                whole_s.append(whole)
                print(f"  {collector}: scan's first batch {first:.2f} s, all in {whole:.1f} s")
        return {"first": first_s, "whole": whole_s, "point": reads.latencies_s}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wallets", type=int, default=1_000_000)
    parser.add_argument("--scans", type=int, default=2)
    args = parser.parse_args()
    runs = {c: measure(c, wallets=args.wallets, scans=args.scans) for c in COLLECTORS}
    base, tuned = runs["python"], runs["server"]
    figures = [
        Figure("scan's first batch (mean)", mean(tuned["first"]), mean(base["first"]), "s"),
        Figure("whole scan (mean)", mean(tuned["whole"]), mean(base["whole"]), "s"),
    ]
    for pct in (50, 95, 99):
        figures.append(
            Figure(
                f"point read p{pct} during the scans",
                percentile(tuned["point"], pct) * 1000,
                percentile(base["point"], pct) * 1000,
                "ms",
            )
        )
    figures.append(
        Figure(
            "point read max during the scans",
            max(tuned["point"]) * 1000,
            max(base["point"]) * 1000,
            "ms",
        )
    )
    print_figures(
        f"a scan of {args.wallets} wallets beside point reads, the daemon's collector tuned",
        figures,
        baseline="Python's default thresholds",
    )


if __name__ == "__main__":
    main()
