"""The account registry: wallet key -> TigerBeetle account, its lookups (cached) and its
writes (a wallet's account registered, a legacy wallet imported, a new wallet settled).

Balance reads hit this on every request, so key -> (row id, account id, ledger) is cached
through Django's cache (Redis when REDIS_URL is set) for 30 minutes and invalidated whenever a
row changes. A row is only written after its TigerBeetle account exists, so a cached entry
always names a real account.

In front of it, each process keeps the mappings it read for a minute, by wallet key, in a
plain in-memory TTL cache: a row's key, id and ledger never change once written (the admin is
read-only), and a Redis round trip cost as much as half a TigerBeetle lookup_accounts on a
balance read (Django's local-memory cache, pickling each entry, cost 17 us a read).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import TTLCache
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from domain.ids import WalletKey, hex_to_u128, u128_to_hex, wallet_key_bytes
from registry.models import UNIQUE_WALLET_KEY, WalletAccount

CACHE_TTL_S = 30 * 60
CACHE_VERSION = 2  # 2: the entry holds limit_reserved
# Clients per query of `find_accounts` (an IN list PostgreSQL and SQLite take whole).
FIND_MANY_CLIENTS = 900
LOCAL_TTL_S = 60
LOCAL_ENTRIES_MAX = 100_000


@dataclass(frozen=True)
class RegisteredAccount:
    """What the TigerBeetle store needs of a registry row, small enough to cache."""

    registry_pk: int
    tb_account_id: int
    ledger: int
    limit_reserved: bool


_local: TTLCache[WalletKey, RegisteredAccount] = TTLCache(
    maxsize=LOCAL_ENTRIES_MAX, ttl=LOCAL_TTL_S
)
_local_lock = threading.Lock()  # TTLCache is not thread-safe; web workers run threads


def forget_local_mappings() -> None:
    """Empty this process's mappings (tests whose database rolls back)."""
    with _local_lock:
        _local.clear()


def _keep_local(key: WalletKey, registered: RegisteredAccount) -> None:
    with _local_lock:
        _local[key] = registered


def _cache_key(key: WalletKey) -> str:
    return "registry:wallet:" + hashlib.sha256(wallet_key_bytes(key)).hexdigest()


def as_registered(row: WalletAccount) -> RegisteredAccount:
    """What the store needs of a row it already holds (a void's wallet)."""
    return RegisteredAccount(row.pk, row.tb_account_id, row.ledger, row.limit_reserved)


def _cache_entry(row: WalletAccount) -> tuple[int, str, int, bool]:
    """A row as the shared cache keeps it (CACHE_VERSION)."""
    return (row.pk, row.tb_account_id_hex, row.ledger, row.limit_reserved)


def _from_cache_entry(cached: tuple[int, str, int, bool]) -> RegisteredAccount:
    return RegisteredAccount(cached[0], hex_to_u128(cached[1]), cached[2], cached[3])


def find_account(key: WalletKey) -> RegisteredAccount | None:
    """The registered account of a wallet, from the cache or the database."""
    with _local_lock:
        registered = _local.get(key)
    if registered is not None:
        return registered
    cached = cache.get(_cache_key(key), version=CACHE_VERSION)
    if cached is not None:
        registered = _from_cache_entry(cached)
        _keep_local(key, registered)
        return registered
    row = WalletAccount.objects.filter(**key.as_columns()).first()
    if row is None:
        return None
    _remember(key, row)
    return as_registered(row)


def find_accounts(keys: Iterable[WalletKey]) -> dict[WalletKey, RegisteredAccount]:
    """The registered accounts of many wallets (a batch's), by key; a wallet with no row is
    left out. What neither cache holds is read in one query per FIND_MANY_CLIENTS clients,
    not one per wallet (8,189 wallets of one batch cost seconds one by one)."""
    keys = list(dict.fromkeys(keys))
    found: dict[WalletKey, RegisteredAccount] = {}
    with _local_lock:
        for key in keys:
            registered = _local.get(key)
            if registered is not None:
                found[key] = registered
    missing = [key for key in keys if key not in found]
    if not missing:
        return found
    names = {_cache_key(key): key for key in missing}
    for name, cached in cache.get_many(list(names), version=CACHE_VERSION).items():
        registered = _from_cache_entry(cached)
        found[names[name]] = registered
        _keep_local(names[name], registered)
    wanted = {key for key in missing if key not in found}
    clients = sorted({key.client_id for key in wanted})
    read: dict[str, tuple[int, str, int, bool]] = {}
    for start in range(0, len(clients), FIND_MANY_CLIENTS):
        rows = WalletAccount.objects.filter(
            client_id__in=clients[start : start + FIND_MANY_CLIENTS]
        )
        for row in rows:
            key = row.key
            if key in wanted:
                found[key] = as_registered(row)
                read[_cache_key(key)] = _cache_entry(row)
    if read and not _caching_paused.get():
        cache.set_many(read, timeout=CACHE_TTL_S, version=CACHE_VERSION)
        for name in read:
            _keep_local(names[name], found[names[name]])
    return found


# Set while rows written in an uncommitted transaction may roll back (`uncached_until_commit`).
_caching_paused: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "registry_caching_paused", default=False
)


@contextlib.contextmanager
def uncached_until_commit() -> Iterator[None]:
    """A transaction whose new rows may roll back (an all-or-nothing batch's wallets): no
    mapping read or written inside it is cached, so no process, this one included, ever
    reads from a cache a row that was never committed. Run it inside the transaction."""
    token = _caching_paused.set(True)
    try:
        yield
    finally:
        _caching_paused.reset(token)


def _remember(key: WalletKey, row: WalletAccount) -> None:
    if _caching_paused.get():
        return
    cached = _cache_entry(row)
    cache.set(_cache_key(key), cached, timeout=CACHE_TTL_S, version=CACHE_VERSION)
    _keep_local(key, as_registered(row))


def forget(key: WalletKey) -> None:
    """Drop a cached mapping (here and in the shared cache); called on every change to the
    row."""
    cache.delete(_cache_key(key), version=CACHE_VERSION)
    with _local_lock:
        _local.pop(key, None)


class AccountIdTaken(Exception):
    """The candidate account id is registered to a different wallet key: bump the nonce."""


def register_account(
    key: WalletKey, *, tb_account_id: int, ledger: int, nonce: int, limit_reserved: bool = False
) -> RegisteredAccount:
    """Record key -> id after the TigerBeetle account (and, `limit_reserved`, its limit
    reservation) exists.

    Idempotent for the same key (a concurrent registration of the same wallet returns the row
    that won); raises AccountIdTaken if the id already belongs to another key.
    """
    try:
        with transaction.atomic():
            row = WalletAccount.objects.create(
                **key.as_columns(),
                tb_account_id_hex=u128_to_hex(tb_account_id),
                ledger=ledger,
                nonce=nonce,
                limit_reserved=limit_reserved,
            )
    except IntegrityError as exc:
        existing = WalletAccount.objects.filter(**key.as_columns()).first()
        if existing is None:
            raise AccountIdTaken(
                f"account id {tb_account_id:#x} is registered to another wallet"
            ) from exc
        row = existing
    forget(key)
    _remember(key, row)
    return as_registered(row)


def mark_limit_reserved(key: WalletKey, *, registry_pk: int) -> None:
    """The wallet's limit reservation is in TigerBeetle: later credits post alone. Other
    processes may hold the old entry for up to LOCAL_TTL_S; they reserve again, which
    TigerBeetle answers `exists`."""
    WalletAccount.objects.filter(pk=registry_pk, limit_reserved=False).update(limit_reserved=True)
    forget(key)


def accounts_of_client(client_id: str) -> dict[int, WalletAccount]:
    """All registered wallets of a client, by TigerBeetle account id."""
    return {row.tb_account_id: row for row in WalletAccount.objects.filter(client_id=client_id)}


def rows_by_key(keys: Iterable[WalletKey]) -> dict[WalletKey, WalletAccount]:
    """The registry rows of many wallets at once (one query on the indexed client id)."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = WalletAccount.objects.filter(client_id__any_of=sorted({key.client_id for key in wanted}))
    return {row.key: row for row in rows if row.key in wanted}


@dataclass(frozen=True, kw_only=True)
class ImportedWallet:
    """A legacy wallet the backfill imported: its account and opening balance are in
    TigerBeetle, which holds its log up to `opening_seq`."""

    key: WalletKey
    tb_account_id: int
    ledger: int
    opening_seq: int
    # What its opening pair posted; None when not known (an import an earlier run made).
    opening_credits_minor: int | None = None
    opening_debits_minor: int | None = None


def record_imported(
    wallets: list[ImportedWallet], *, imported_at: datetime, batch_size: int
) -> None:
    """Register imported wallets: a new row each, or the opening_seq and import time of a
    row registered before its import (its account created before the backfill reached it).
    A row already imported is left as it is.

    The page's rows are inserted first, skipping keys already registered, and only those
    are read back: one transaction, and one statement a page in the common case."""
    insert = _insert_new_postgresql if connection.vendor == "postgresql" else _insert_new
    with transaction.atomic():
        inserted: set[WalletKey] = set()
        for start in range(0, len(wallets), batch_size):
            inserted |= insert(wallets[start : start + batch_size], imported_at=imported_at)
        existing_rows = rows_by_key([w.key for w in wallets if w.key not in inserted])
        unfinished = []
        for wallet in wallets:
            current = existing_rows.get(wallet.key)
            if current is not None and current.opening_seq is None:
                current.opening_seq, current.imported_at = wallet.opening_seq, imported_at
                current.opening_credits_minor = wallet.opening_credits_minor
                current.opening_debits_minor = wallet.opening_debits_minor
                unfinished.append(current)
        WalletAccount.objects.bulk_update(
            unfinished,
            ["opening_seq", "imported_at", "opening_credits_minor", "opening_debits_minor"],
        )


# New rows are written from plain values, not model instances: bulk_create built an instance
# and prepared every field of every row, a fifth of the backfill's time.
_IMPORTED_FIELDS = (  # a row's own values; nonce and the two timestamps are one a page
    *WalletKey.FIELDS,
    "tb_account_id_hex",
    "ledger",
    "opening_seq",
    "opening_credits_minor",
    "opening_debits_minor",
)
_PAGE_FIELDS = ("nonce", "limit_reserved", "imported_at", "created_at")
_KEY_COLUMNS = len(WalletKey.FIELDS)  # the first of _IMPORTED_FIELDS


def _new_rows(
    wallets: list[ImportedWallet], *, imported_at: datetime
) -> tuple[str, list[Any], list[tuple[Any, ...]], list[Any]]:
    """The table, its fields in _IMPORTED_FIELDS + _PAGE_FIELDS order, a row of values each
    (_IMPORTED_FIELDS), and the page's values (_PAGE_FIELDS), in the database's form."""
    meta = WalletAccount._meta
    by_name = {field.name: field for field in meta.concrete_fields}
    fields: list[Any] = [by_name[name] for name in (*_IMPORTED_FIELDS, *_PAGE_FIELDS)]
    rows = [
        (
            *wallet.key.column_values(),
            u128_to_hex(wallet.tb_account_id),
            wallet.ledger,
            wallet.opening_seq,
            wallet.opening_credits_minor,
            wallet.opening_debits_minor,
        )
        for wallet in wallets
    ]
    page_values = [
        0,  # nonce: an imported wallet's account is account_id_for(key), nonce 0
        False,  # limit_reserved: the store reserves before the wallet's first credit
        by_name["imported_at"].get_db_prep_save(imported_at, connection),
        by_name["created_at"].get_db_prep_save(timezone.now(), connection),
    ]
    return connection.ops.quote_name(meta.db_table), fields, rows, page_values


def _insert_new_postgresql(
    wallets: list[ImportedWallet], *, imported_at: datetime
) -> set[WalletKey]:
    """One INSERT ... SELECT of the page's rows, sent as one JSON array of rows, skipping
    keys already registered: the keys inserted.

    psycopg dumps a list parameter (the earlier UNNEST of a column array each) one element
    at a time in Python, a quarter of the main thread's time; the JSON is one C call, and
    its CPU is a fifth of the arrays' (COPY into a temporary table was as cheap but took
    three statements). Each value is cast to its column's type on the server."""
    table, fields, rows, page_values = _new_rows(wallets, imported_at=imported_at)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in fields)
    values = ", ".join(
        f"(new_row->>{index})::{field.db_type(connection)}"
        for index, field in enumerate(fields[: len(_IMPORTED_FIELDS)])
    )
    key_columns = ", ".join(quote(str(field.column)) for field in fields[:_KEY_COLUMNS])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns})"
            f" SELECT {values}, %s, %s, %s, %s FROM json_array_elements(%s::json) AS new_row"
            f" ON CONFLICT ON CONSTRAINT {quote(UNIQUE_WALLET_KEY)} DO NOTHING"
            f" RETURNING {key_columns}",
            [*page_values, json.dumps(rows)],
        )
        return {WalletKey(*row) for row in cursor.fetchall()}


def _insert_new(wallets: list[ImportedWallet], *, imported_at: datetime) -> set[WalletKey]:
    """SQLite's INSERT ... SELECT of the page's rows from one JSON array (json_each),
    skipping keys already registered: the keys inserted, when all were (none otherwise, and
    the caller reads the page's rows back).

    One statement and no rows back: sqlite3 lets go of the GIL around each step, a row each
    for an executemany or a RETURNING, and with the backfill's reader and TigerBeetle
    threads running, taking it back 2,000 times a page cost more than the insert itself."""
    table, fields, rows, page_values = _new_rows(wallets, imported_at=imported_at)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in fields)
    values = ", ".join(
        f"json_extract(new_row.value, '$[{index}]')" for index in range(len(_IMPORTED_FIELDS))
    )
    marks = ", ".join(["%s"] * len(page_values))
    key_columns = ", ".join(quote(str(field.column)) for field in fields[:_KEY_COLUMNS])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns})"
            f" SELECT {values}, {marks} FROM json_each(%s) AS new_row"
            # WHERE: SQLite's parser would read the ON of ON CONFLICT as a join's.
            f" WHERE true ON CONFLICT ({key_columns}) DO NOTHING",
            [*page_values, json.dumps(rows)],
        )
        inserted_all = cursor.rowcount == len(wallets)
    return {wallet.key for wallet in wallets} if inserted_all else set()


def settle_born_with_log(*, registry_pk: int) -> None:
    """A wallet born with a complete log: TigerBeetle needs all of it, nothing is covered
    (opening_seq 0). Only a row not settled yet is changed."""
    WalletAccount.objects.filter(pk=registry_pk, opening_seq__isnull=True).update(opening_seq=0)
