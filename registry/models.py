"""Relational registries: what TigerBeetle cannot index for us.

TigerBeetle has no secondary indexes on strings, so the wallet key (client, country, currency,
issuer) -> account id mapping and the transaction id -> transfer mapping (with void state and
its audit) live here. 128-bit TigerBeetle ids are stored as 32-char zero-padded hex: exact on
every database and ordered like the integers.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from ledger.ids import WalletKey, hex_to_u128


class WalletAccount(models.Model):
    """Account registry: one row per wallet, key -> TigerBeetle account id."""

    client_id = models.CharField(max_length=128, db_index=True)
    country = models.CharField(max_length=3, help_text="ISO 3166 alpha-3")
    currency = models.CharField(max_length=3, help_text="ISO 4217 alphabetic code")
    issuer = models.CharField(max_length=128, blank=True, default="", help_text="'' = none")
    tb_account_id_hex = models.CharField("TigerBeetle account id", max_length=32, unique=True)
    ledger = models.PositiveIntegerField(help_text="ISO 4217 numeric code of the currency")
    nonce = models.PositiveSmallIntegerField(default=0, help_text="bumped on an id collision")
    opening_seq = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=(
            "up to which MongoDB wallet_seq the wallet is in TigerBeetle without the mirror: "
            "S for a backfilled wallet (its opening balance), 0 for one born with the log"
        ),
    )
    imported_at = models.DateTimeField(null=True, blank=True, help_text="when the backfill ran")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "country", "currency", "issuer"], name="unique_wallet_key"
            )
        ]
        indexes = [models.Index(fields=["currency", "country"])]
        verbose_name = "wallet"
        # The REST API's permissions (README, "REST API"); a void needs
        # WalletTransfer's void_wallettransfer, as in the admin.
        permissions = [
            ("read_wallets", "Can read wallet balances and transactions through the API"),
            ("credit_wallets", "Can add credit to wallets through the API"),
            ("debit_wallets", "Can subtract credit from wallets through the API"),
        ]

    def __str__(self) -> str:
        issuer = f"/{self.issuer}" if self.issuer else ""
        return f"{self.client_id} {self.country} {self.currency}{issuer}"

    @property
    def tb_account_id(self) -> int:
        return hex_to_u128(self.tb_account_id_hex)

    @property
    def key(self) -> WalletKey:
        return WalletKey(
            client_id=self.client_id,
            country=self.country,
            currency=self.currency,
            issuer=self.issuer or None,
        )


class WalletTransfer(models.Model):
    """Transfer registry: a client's transaction id -> TigerBeetle transfer, and its void."""

    class Kind(models.TextChoices):
        CREDIT = "credit"
        DEBIT = "debit"

    class State(models.TextChoices):
        POSTED = "posted"
        VOIDED = "voided"
        FAILED = "failed"

    transaction_id = models.CharField(max_length=128, unique=True)
    wallet = models.ForeignKey(WalletAccount, on_delete=models.PROTECT, related_name="transfers")
    kind = models.CharField(max_length=6, choices=Kind.choices)
    amount_minor = models.BigIntegerField()
    state = models.CharField(max_length=6, choices=State.choices, default=State.POSTED)
    failure_code = models.CharField(max_length=32, blank=True, default="")
    tb_transfer_id_hex = models.CharField("TigerBeetle transfer id", max_length=32, unique=True)
    tb_timestamp = models.BigIntegerField(
        null=True, blank=True, help_text="TigerBeetle's ns timestamp of the transfer"
    )
    void_tb_transfer_id_hex = models.CharField(max_length=32, blank=True, default="")
    void_attempts = models.PositiveSmallIntegerField(
        default=0, help_text="voids refused for funds so far; each burns its transfer id"
    )
    voided_by = models.CharField(max_length=150, blank=True, default="")
    void_reason = models.TextField(blank=True, default="")
    made_by = models.CharField(
        max_length=150, blank=True, default="", help_text="who posted the credit or debit"
    )
    voided_at = models.DateTimeField(null=True, blank=True)
    needs_backport = models.BooleanField(
        default=False, help_text="written with TigerBeetle primary; not yet in MongoDB"
    )
    void_needs_backport = models.BooleanField(
        default=False, help_text="voided with TigerBeetle primary; void not yet in MongoDB"
    )
    created_at = models.DateTimeField(
        default=timezone.now,
        db_index=True,
        help_text="the time of the original write, in whichever store took it",
    )

    class Meta:
        indexes = [
            models.Index(fields=["state", "kind"]),
            models.Index(
                fields=["created_at"],
                name="transfer_backport_due",
                condition=models.Q(needs_backport=True) | models.Q(void_needs_backport=True),
            ),
        ]
        verbose_name = "transaction"
        permissions = [("void_wallettransfer", "Can void a transaction")]

    def __str__(self) -> str:
        return f"{self.kind} {self.transaction_id}"

    @property
    def tb_transfer_id(self) -> int:
        return hex_to_u128(self.tb_transfer_id_hex)
