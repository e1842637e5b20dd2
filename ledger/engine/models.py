"""Tables of the embedded ledger engine.

128-bit values (ids, amounts, user_data_128) are 32-char zero-padded hex and user_data_64 is
16-char hex: exact on SQLite (whose NUMERIC loses precision past 2^63) and PostgreSQL alike,
and ordered like the integers. Timestamps are nanoseconds below 2^63, so BIGINT holds them.
"""

from __future__ import annotations

from django.db import models


class Clock(models.Model):
    """The single row every write locks: it serialises writers across processes and holds
    the last assigned timestamps (strictly increasing, like a TigerBeetle cluster's)."""

    last_timestamp = models.BigIntegerField(default=0)
    last_account_timestamp = models.BigIntegerField(default=0)
    last_transfer_timestamp = models.BigIntegerField(default=0)


class LedgerAccount(models.Model):
    id = models.CharField(primary_key=True, max_length=32)
    debits_pending = models.CharField(max_length=32)
    debits_posted = models.CharField(max_length=32)
    credits_pending = models.CharField(max_length=32)
    credits_posted = models.CharField(max_length=32)
    user_data_128 = models.CharField(max_length=32, db_index=True)
    user_data_64 = models.CharField(max_length=16, db_index=True)
    user_data_32 = models.BigIntegerField(db_index=True)
    ledger = models.BigIntegerField(db_index=True)
    code = models.IntegerField()
    flags = models.IntegerField()
    timestamp = models.BigIntegerField(unique=True)


class PendingStatus(models.IntegerChoices):
    NONE = 0
    PENDING = 1
    POSTED = 2
    VOIDED = 3
    EXPIRED = 4


class LedgerTransfer(models.Model):
    id = models.CharField(primary_key=True, max_length=32)
    debit_account_id = models.CharField(max_length=32, db_index=True)
    credit_account_id = models.CharField(max_length=32, db_index=True)
    amount = models.CharField(max_length=32)
    pending_id = models.CharField(max_length=32, db_index=True)
    user_data_128 = models.CharField(max_length=32, db_index=True)
    user_data_64 = models.CharField(max_length=16, db_index=True)
    user_data_32 = models.BigIntegerField(db_index=True)
    timeout = models.BigIntegerField()
    ledger = models.BigIntegerField(db_index=True)
    code = models.IntegerField(db_index=True)
    flags = models.IntegerField()
    timestamp = models.BigIntegerField(unique=True)
    # Engine bookkeeping for pending transfers (not part of TigerBeetle's Transfer).
    pending_status = models.SmallIntegerField(default=PendingStatus.NONE)
    expires_at = models.BigIntegerField(null=True, db_index=True)


class AccountBalanceSnapshot(models.Model):
    """get_account_balances: an account's balance after each transfer (accounts with
    `history` only)."""

    account_id = models.CharField(max_length=32)
    timestamp = models.BigIntegerField()
    debits_pending = models.CharField(max_length=32)
    debits_posted = models.CharField(max_length=32)
    credits_pending = models.CharField(max_length=32)
    credits_posted = models.CharField(max_length=32)

    class Meta:
        indexes = [models.Index(fields=["account_id", "timestamp"])]


class FailedTransferId(models.Model):
    """Ids refused with a transient error: TigerBeetle answers `id_already_failed` forever."""

    id = models.CharField(primary_key=True, max_length=32)
    status = models.IntegerField()
