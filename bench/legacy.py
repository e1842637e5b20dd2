"""Legacy wallets as the old system left them (a balance document, no transaction log), seeded
straight into MongoDB in bulk: the migration benchmarks' input."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bson.decimal128 import Decimal128

from domain.ids import WalletKey
from domain.money import from_minor_units
from ledger.stores.mongo_database import WALLETS, MongoDatabase
from ledger.stores.mongo_documents import key_filter

SEED_CHUNK = 10_000
# (country, currency) of a mixed seed's wallets, in turn: JPY has no minor unit, the others two.
CURRENCIES = (("USA", "USD"), ("DEU", "EUR"), ("GBR", "GBP"), ("JPN", "JPY"))
EMPTY_EVERY = 5  # in a mixed seed, every fifth wallet was opened and never used


@dataclass(frozen=True)
class LegacySeed:
    """Wallet number -> key and balance, the same for the seed and for whoever checks it.
    `run`: a prefix of this run's client ids only (a real cluster keeps every earlier run's
    accounts). `mixed`: several currencies and some empty wallets, else all USD, none empty."""

    run: str
    mixed: bool = False

    def client_id(self, number: int) -> str:
        return f"client-{self.run}-{number:08d}"

    def key(self, number: int) -> WalletKey:
        country, currency = CURRENCIES[number % len(CURRENCIES)] if self.mixed else ("USA", "USD")
        return WalletKey(self.client_id(number), country, currency)

    def balance_minor(self, number: int) -> tuple[int, int]:
        """(credit, debit) in minor units; historical credit is their sum."""
        if self.mixed and number % EMPTY_EVERY == EMPTY_EVERY - 1:
            return 0, 0
        return 1_000 + number % 97_000, number % 500

    def seed(self, database: MongoDatabase, count: int) -> None:
        """`count` wallet documents, then the indexes (faster than inserting into them)."""
        wallets = database.db[WALLETS]
        created = datetime(2020, 1, 1, tzinfo=UTC)
        for start in range(0, count, SEED_CHUNK):
            documents = []
            for number in range(start, min(count, start + SEED_CHUNK)):
                key = self.key(number)
                credit, debit = self.balance_minor(number)
                documents.append(
                    {
                        **key_filter(key),
                        "credit": Decimal128(from_minor_units(credit, key.currency)),
                        "debit": Decimal128(from_minor_units(debit, key.currency)),
                        "historical_credit": Decimal128(
                            from_minor_units(credit + debit, key.currency)
                        ),
                        "created_at": created + timedelta(seconds=number),
                    }
                )
            wallets.insert_many(documents, ordered=False)
        database.ensure_indexes()
