"""Prometheus metrics of the wallet service and the migration (served at /metrics).

Web and worker processes each keep their own registry; under gunicorn or a prefork Celery
worker set PROMETHEUS_MULTIPROC_DIR so /metrics aggregates all processes (prometheus_client's
multiprocess mode).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# What a store took, by kind: a credit, a debit, or the void of one.
TRANSACTION_KINDS = ("credit", "debit", "void_credit", "void_debit")

OPERATION_SECONDS = Histogram(
    "wallet_operation_seconds",
    "Latency of wallet operations per store.",
    ["operation", "store"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
READ_ROUTES = Counter(
    "wallet_read_routes_total",
    "Balance reads by the route they took (mongo, tigerbeetle, fallback, ryw).",
    ["route"],
)
FALLBACKS = Counter(
    "wallet_read_fallbacks_total",
    "Phase-3 reads meant for TigerBeetle that MongoDB served after a failure.",
    ["reason"],
)
READ_RETRIES = Counter(
    "wallet_read_retries_total",
    "Phase-3 TigerBeetle reads retried after a failure (each retry once).",
)
BREAKER_OPEN = Gauge(
    "wallet_read_breaker_open", "1 while the TigerBeetle read breaker is open (or half-open)."
)
SHADOW_COMPARISONS = Counter(
    "wallet_shadow_comparisons_total", "Shadow read comparisons by outcome.", ["outcome"]
)
MIRROR_ENTRIES = Counter(
    "wallet_mirror_entries_total", "Outbox entries handled by the mirror, by result.", ["result"]
)
OUTBOX_DEPTH = Gauge(
    "wallet_outbox_entries", "Outbox entries waiting for the mirror, by state.", ["state"]
)
MIRROR_LAG_SECONDS = Gauge(
    "wallet_mirror_lag_seconds", "Age of the oldest outbox entry not yet mirrored."
)
RECONCILIATION_WALLETS = Gauge(
    "wallet_reconciliation_wallets",
    "Wallets in the last reconciliation run, by result.",
    ["result"],
)
RECONCILIATION_SECONDS = Gauge(
    "wallet_reconciliation_duration_seconds", "Duration of the last reconciliation run."
)
TRANSACTIONS = Counter(
    "wallet_transactions_total",
    "Credits, debits and voids a store took (MongoDB: the writes it was given; TigerBeetle: "
    "the writes it was given in phase 4 and those the mirror applied), per kind and currency; "
    "replays of an id already applied are not counted.",
    ["store", "kind", "currency"],
)
TRANSACTION_AMOUNT_MINOR = Counter(
    "wallet_transaction_amount_minor_total",
    "The amounts of wallet_transactions_total, in minor units of the currency (cents for "
    "USD, yen for JPY): sum per currency, never across currencies.",
    ["store", "kind", "currency"],
)


def count_transaction(*, store: str, kind: str, currency: str, amount_minor: int) -> None:
    """One transaction a store took: counted, and its amount added in minor units."""
    assert kind in TRANSACTION_KINDS, kind
    assert amount_minor > 0, "a transaction moves a positive amount"
    TRANSACTIONS.labels(store, kind, currency).inc()
    TRANSACTION_AMOUNT_MINOR.labels(store, kind, currency).inc(amount_minor)


def count_transactions(
    *, store: str, kind: str, currency: str, count: int, amount_minor: int
) -> None:
    """`count` transactions of one kind and currency a store took (a batch's), their amounts
    adding up to `amount_minor`: as many count_transaction calls, in two."""
    assert kind in TRANSACTION_KINDS, kind
    assert count > 0 and amount_minor >= count, "each transaction moves a positive amount"
    TRANSACTIONS.labels(store, kind, currency).inc(count)
    TRANSACTION_AMOUNT_MINOR.labels(store, kind, currency).inc(amount_minor)
