"""The embedded MongoDB-protocol daemon (secantusd-py) with a bounded transaction lifetime.

`python -m wallet_site.mongo_server [secantusd-py flags] --transaction-lifetime-s N`

A transaction whose process died mid-write (kill -9 of a worker) keeps the documents it
wrote locked until the server reaps it: mongod after `transactionLifetimeLimitSeconds` (60 s
unless an operator lowers it), secantusdb after the lifetime its server class is built with
(also 60 s, counted from the transaction's last statement). secantusd-py has no flag for it,
so this runs the same daemon entry point with the lifetime given to the server class.

It also sets Python's cycle collector for a server (`--collector`). The documents live in
WiredTiger, outside the Python heap, but secantusdb builds a find's whole result before its
first batch: a scan of a million wallets is some ten million objects, and with Python's
default thresholds each quarter the heap grows brings a full pass over all of them, holding
the interpreter lock while every connection's thread waits (about 5 s of passes a scan, none
of them finding garbage; `bench.mongo_scan_bench` measures it).
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys

from secantus import cli
from secantus.server import SecantusDBServer

# The youngest generation every 50,000 new container objects (not 700), the older ones at
# 20x and 100x that: a full pass about every 100 million, so a scan's result is walked
# rarely instead of every time it grew by a quarter (gunicorn.conf.py does the same for
# the app's workers).
SERVER_GC_THRESHOLDS = (50_000, 20, 100)


def configure_collector(collector: str) -> None:
    """`server`: the objects of start-up frozen out of every pass and SERVER_GC_THRESHOLDS;
    `python`: Python's defaults, as the daemon runs on its own (the benchmark's baseline)."""
    if collector == "server":
        gc.freeze()
        gc.set_threshold(*SERVER_GC_THRESHOLDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--transaction-lifetime-s", type=float, default=None)
    parser.add_argument("--collector", choices=("server", "python"), default="server")
    ours, daemon_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    configure_collector(ours.collector)
    if ours.transaction_lifetime_s is not None:
        if ours.transaction_lifetime_s <= 0:
            parser.error("--transaction-lifetime-s must be positive")
        cli.SecantusDBServer = functools.partial(
            SecantusDBServer, transaction_lifetime_seconds=ours.transaction_lifetime_s
        )
    return cli.main(daemon_args)


if __name__ == "__main__":
    sys.exit(main())
