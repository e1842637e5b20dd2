"""Deterministic TigerBeetle ids (design.md, "TigerBeetle data model").

Account ids are the first 128 bits of SHA-256 over a versioned, unambiguous encoding of the
wallet key plus a nonce (bumped on a collision). Transfer ids derive from the operation's
idempotency key (one namespace for credits and debits), so a retry maps to the same transfer
and TigerBeetle answers `exists` instead of posting twice. No id is ever 0 or 2^128-1, the
values TigerBeetle reserves.

TB_ID_NAMESPACE (empty by default) is mixed into every derived value when set, so that two
deployments, or two test runs, sharing one cluster never derive the same ids from the same keys
("alice", "tx-1"). The empty default derives exactly the ids of ID_SCHEME_VERSION 1, so a
deployment's existing ids stay valid. Every derivation is a method of an `IdSpace`, built once
per process with the deployment's namespace (the process runtime, `migration.runtime`) and
passed to whatever derives ids: no derivation can happen outside one, so none can silently
miss the namespace.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, ClassVar

ID_SCHEME_VERSION = 1
_U128_MAX = 2**128 - 1
_U64_MAX = 2**64 - 1
# json.dumps with these options builds a new encoder each call; the backfill hashes four
# values a wallet, so one encoder serves them all (the same output).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(parts: list[object]) -> str:
    """`_JSON.encode(parts)`, written out for the str and int parts every id is made of: the
    encoder still sets itself up on every call, twice the time of this (four encodings a
    backfilled wallet). A string is encoded by the function the encoder uses
    (ensure_ascii=False), an int by its repr, as the encoder does; any other part goes
    through the encoder."""
    encoded: list[str] = []
    for part in parts:
        if type(part) is str:
            encoded.append(encode_basestring(part))
        elif type(part) is int:
            encoded.append(int.__repr__(part))
        else:
            return _JSON.encode(parts)
    return "[" + ",".join(encoded) + "]"


@dataclass(frozen=True)
class WalletKey:
    """What identifies a wallet. `issuer` None means "no issuer" ("" is normalised to None).

    Its four fields are named once, in FIELDS: the registry's columns, a task's argument, a
    page's query string and the CSV exports all use these names in this order (MongoDB names
    the issuer its own way: `ledger.stores.mongo_documents.MONGO_KEY_FIELDS`)."""

    FIELDS: ClassVar[tuple[str, str, str, str]] = ("client_id", "country", "currency", "issuer")

    client_id: str
    country: str  # ISO 3166 alpha-3
    currency: str  # ISO 4217 alphabetic
    issuer: str | None = None

    def __post_init__(self) -> None:
        if self.issuer == "":
            object.__setattr__(self, "issuer", None)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], *, names: Sequence[str] = FIELDS
    ) -> WalletKey:
        """The key whose fields a mapping holds under `names` (in FIELDS' order): a task's
        argument, a request's parameters, a MongoDB document. The values are taken as they
        are; a missing or empty issuer is none, a missing other field a KeyError."""
        client_id, country, currency, issuer = names
        return cls(
            mapping[client_id], mapping[country], mapping[currency], mapping.get(issuer) or None
        )

    @classmethod
    def from_row(cls, row: object) -> WalletKey:
        """The key of a row that holds the four fields as attributes, issuer "" for none (the
        registry's, a reconciliation mismatch's)."""
        client_id, country, currency, issuer = (getattr(row, name) for name in cls.FIELDS)
        return cls(client_id, country, currency, issuer or None)

    def column_values(self) -> tuple[str, str, str, str]:
        """The fields in FIELDS' order, issuer "" for none, as the registry's columns, a
        page's query string, the CSV exports and MongoDB's documents hold them."""
        return (self.client_id, self.country, self.currency, self.issuer or "")

    def as_columns(self, prefix: str = "") -> dict[str, str]:
        """`column_values` by name, each name behind `prefix` ("wallet__" for a lookup
        through a relation): a row's fields, a query's filter, a query string."""
        names = (prefix + name for name in self.FIELDS)
        return dict(zip(names, self.column_values(), strict=True))

    def as_dict(self) -> dict[str, str | None]:
        """The fields by name, issuer None for none: a Celery task's argument."""
        return {**self.as_columns(), "issuer": self.issuer}

    def describe(self) -> str:
        issuer = f"/{self.issuer}" if self.issuer else ""
        return f"{self.client_id} {self.country} {self.currency}{issuer}"

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.client_id, self.currency, self.country, self.issuer or "")


def wallet_key_bytes(key: WalletKey) -> bytes:
    """The canonical encoding: JSON of a list, so no separator inside a field can make two
    different keys encode alike ("a|b","c" vs "a","b|c")."""
    fields = [
        "wallet",
        ID_SCHEME_VERSION,
        key.client_id,
        key.country,
        key.currency,
        key.issuer or "",
    ]
    return _json(fields).encode()


def _namespaced_hash_bits(parts: list[object], bits: int, namespace: str) -> int:
    """First `bits` bits of SHA-256 over the JSON of parts (behind the id namespace, when one
    is set); a reserved value (0 or all ones) re-hashes with a counter appended,
    deterministically."""
    maximum = 2**bits - 1
    if namespace:
        parts = ["namespace", namespace, *parts]
    salt = 0
    while True:
        payload = _json([*parts, salt] if salt else parts).encode()
        value = int.from_bytes(hashlib.sha256(payload).digest()[: bits // 8], "big")
        if value not in (0, maximum):
            return value
        salt += 1


@functools.lru_cache(maxsize=1024)
def _ledger_account_id(kind: str, ledger: int, namespace: str) -> int:
    """A ledger's own accounts are named in every credit and debit: hashed once per ledger
    (and namespace)."""
    return _namespaced_hash_bits([kind, ID_SCHEME_VERSION, ledger], 128, namespace)


@functools.lru_cache(maxsize=64)
def _deployment_stamp(namespace: str) -> int:
    """22 bits of the namespace's hash, never 0: 0 is what accounts created before stamps
    carry."""
    stamp = _namespaced_hash_bits(["deployment-stamp", ID_SCHEME_VERSION], 32, namespace) >> 10
    return stamp or 1


@dataclass(frozen=True, slots=True)
class IdSpace:
    """The ids one deployment derives: every value hashed behind its `namespace`
    (TB_ID_NAMESPACE; empty derives the ids of ID_SCHEME_VERSION 1, as before namespaces)."""

    namespace: str

    def _hash_bits(self, parts: list[object], bits: int) -> int:
        return _namespaced_hash_bits(parts, bits, self.namespace)

    def account_id(self, key: WalletKey, *, nonce: int = 0) -> int:
        """The wallet's TigerBeetle account id for a given nonce."""
        return self._hash_bits(["account", wallet_key_bytes(key).decode(), nonce], 128)

    def system_account_id(self, ledger: int) -> int:
        """The funding account of a ledger: the other side of every credit and debit."""
        return _ledger_account_id("system-account", ledger, self.namespace)

    def deployment_stamp(self) -> int:
        """A 22-bit mark of this deployment (of its namespace). Wallet accounts carry it, so
        one deployment's reconciliation on a cluster it shares with others (staging beside
        production, a benchmark beside a trial; same account codes) looks at its own accounts
        only."""
        return _deployment_stamp(self.namespace)

    def client_hash_128(self, client_id: str) -> int:
        """`user_data_128` of a client's wallets; never 0, which TigerBeetle's filters read as
        "any"."""
        return self._hash_bits(["client", ID_SCHEME_VERSION, client_id], 128)

    def issuer_hash_64(self, issuer: str | None) -> int:
        """`user_data_64` of a wallet: 0 when it has no issuer."""
        if not issuer:
            return 0
        return self._hash_bits(["issuer", ID_SCHEME_VERSION, issuer], 64)

    def transaction_transfer_id(self, transaction_id: str) -> int:
        """The transfer of a credit or a debit: one id per client id, whatever the kind.

        Credit transaction ids and debit reference ids share one namespace, so a credit and a
        debit racing on one id must map to one transfer: TigerBeetle then posts exactly one
        and answers `exists_with_different_*` to the other, and never holds a transfer the
        registry does not name. The domain stays "credit" because credits were posted under
        it before debits shared it, so every credit transfer already in TigerBeetle keeps its
        id.
        """
        return self._hash_bits(["credit", ID_SCHEME_VERSION, transaction_id], 128)

    def void_transfer_id(self, voided_transfer_id: int, *, attempt: int = 0) -> int:
        """The compensating transfer of a void. `attempt` moves past ids that TigerBeetle
        refused for funds (`id_already_failed` forbids reusing them)."""
        return self._hash_bits(["void", ID_SCHEME_VERSION, voided_transfer_id, attempt], 128)

    def opening_balance_transfer_id(self, account_id: int) -> int:
        """The backfill's opening-balance transfer of an account."""
        return self._hash_bits(["opening-balance", ID_SCHEME_VERSION, account_id], 128)

    def limit_account_id(self, wallet_account_id: int) -> int:
        """A wallet's limit account: the debit side of its limit reservation, which only it
        can hold (a reservation fills an account's 128-bit debits_pending)."""
        return self._hash_bits(["limit-account", ID_SCHEME_VERSION, wallet_account_id], 128)

    def limit_reservation_transfer_id(self, wallet_account_id: int) -> int:
        """A wallet's limit reservation: one per wallet, so a retry or a second process
        reserving the same wallet gets `exists`."""
        return self._hash_bits(["limit-reservation", ID_SCHEME_VERSION, wallet_account_id], 128)

    def hold_transfer_id(self, hold_id: str) -> int:
        """A hold's pending transfer: a namespace of its own, so a hold id may equal a
        transaction id without the two meeting in TigerBeetle."""
        return self._hash_bits(["hold", ID_SCHEME_VERSION, hold_id], 128)

    def hold_resolution_transfer_id(self, hold_transfer_id: int) -> int:
        """The one transfer that resolves a hold, its capture (post) or its release (void):
        one id for both, so TigerBeetle itself lets exactly one of a racing capture and
        release through (the other answers `exists_with_different_*`)."""
        return self._hash_bits(["hold-resolution", ID_SCHEME_VERSION, hold_transfer_id], 128)

    def hold_late_capture_transfer_id(self, hold_transfer_id: int) -> int:
        """The plain debit that stands for a mirrored capture the cluster's timeout beat
        (migration.hold_mirror): an id of its own, so a repeated mirror run finds it."""
        return self._hash_bits(["hold-late-capture", ID_SCHEME_VERSION, hold_transfer_id], 128)

    def event_id(self, reference_id: str, *, event_type: str) -> str:
        """A money movement's event (events/): derived from what moved (the transaction's or
        the hold's id) and how, so whichever store's change record the collector reads it
        from, before or after a phase change, it is the same event (32 hex digits)."""
        return u128_to_hex(
            self._hash_bits(["event", ID_SCHEME_VERSION, event_type, reference_id], 128)
        )

    def wallet_ref(self, key: WalletKey) -> str:
        """A wallet's name in the event feed (`wallet` of an event, `?wallet=`): 32 hex
        digits of its key, the same in every store and phase."""
        return u128_to_hex(self._hash_bits(["event-wallet", wallet_key_bytes(key).decode()], 128))


def u128_to_hex(value: int) -> str:
    """Fixed-width hex: exact on every database and ordered like the integers."""
    return f"{value:032x}"


def hex_to_u128(value: str) -> int:
    return int(value, 16)
