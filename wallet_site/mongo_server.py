"""The embedded MongoDB-protocol daemon (secantusd-py) with a bounded transaction lifetime.

`python -m wallet_site.mongo_server [secantusd-py flags] --transaction-lifetime-s N`

A transaction whose process died mid-write (kill -9 of a worker) keeps the documents it
wrote locked until the server reaps it: mongod after `transactionLifetimeLimitSeconds` (60 s
unless an operator lowers it), secantusdb after the lifetime its server class is built with
(also 60 s, counted from the transaction's last statement). secantusd-py has no flag for it,
so this runs the same daemon entry point with the lifetime given to the server class.
"""

from __future__ import annotations

import argparse
import functools
import sys

from secantus import cli
from secantus.server import SecantusDBServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--transaction-lifetime-s", type=float, default=None)
    ours, daemon_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if ours.transaction_lifetime_s is not None:
        if ours.transaction_lifetime_s <= 0:
            parser.error("--transaction-lifetime-s must be positive")
        cli.SecantusDBServer = functools.partial(
            SecantusDBServer, transaction_lifetime_seconds=ours.transaction_lifetime_s
        )
    return cli.main(daemon_args)


if __name__ == "__main__":
    sys.exit(main())
