"""Relational registries: what TigerBeetle cannot index for us.

TigerBeetle has no secondary indexes on strings, so the wallet key (client, country, currency,
issuer) -> account id mapping and the transaction id -> transfer mapping (with void state and
its audit) live here. 128-bit TigerBeetle ids are stored as 32-char zero-padded hex: exact on
every database and ordered like the integers.

The invariants of both registries are CHECK constraints (Meta.constraints), so a bulk insert,
an `.update()` or raw SQL that would break one is refused by the database, not only by the
code that usually writes the rows (tests/registry/test_registry_constraints.py).
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.models.lookups import Regex
from django.utils import timezone

from domain.ids import WalletKey, hex_to_u128

# A 128-bit TigerBeetle id as u128_to_hex writes it; id 0 is reserved by TigerBeetle.
TB_ID_HEX_PATTERN = r"^[0-9a-f]{32}$"
TB_ID_HEX_ZERO = "0" * 32
UNIQUE_WALLET_KEY = "unique_wallet_key"  # the backfill's inserts skip rows it refuses


class AnyOf(models.Lookup):
    """`field__any_of=[...]` on a text field: on PostgreSQL the whole list as one JSON
    array parameter, `IN (...)` elsewhere. A page of 2,000 keys as `IN` binds 2,000
    placeholders, and psycopg parses so long a statement anew on every call (a tenth of a
    backfill page's time); as an array parameter psycopg dumps it element by element in
    Python (12 ms of CPU a page), json.dumps in one C call."""

    lookup_name = "any_of"
    prepare_rhs = False  # the list as it is, not one value

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [str(value) for value in self.rhs]
        if connection.vendor == "postgresql":
            return (
                f"{lhs} = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))",
                (*lhs_params, json.dumps(values)),
            )
        if not values:
            return "1 = 0", ()
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", (*lhs_params, *values)


class IsTbIdHex(models.Func):
    """True when a text is 32 lowercase hex digits (TB_ID_HEX_PATTERN). The registry's
    migrations name this class: change what it writes only under a new name.

    PostgreSQL matches the pattern itself. SQLite has no regex of its own: Django's REGEXP
    is a Python function called for every row checked, which takes the GIL back from the
    process's other threads each time (the backfill's reader and TigerBeetle threads). There
    the same test is written natively: text of 32 characters and 32 bytes (so no NUL and
    nothing outside ASCII), none of them outside 0-9a-f. Stricter than Python's `$`, which
    also matched before a final newline."""

    arity = 1
    output_field = models.BooleanField()

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> Any:
        return compiler.compile(Regex(self.source_expressions[0], TB_ID_HEX_PATTERN))

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        text, params = compiler.compile(self.source_expressions[0])
        return (
            f"(typeof({text}) = 'text' AND length({text}) = 32"
            f" AND length(CAST({text} AS BLOB)) = 32 AND {text} NOT GLOB %s)",
            (*params, *params, *params, *params, "*[^0-9a-f]*"),
        )


def _tb_id_hex(field: str) -> models.Q:
    return models.Q(IsTbIdHex(field)) & ~models.Q(**{field: TB_ID_HEX_ZERO})


class WalletAccount(models.Model):
    """Account registry: one row per wallet, key -> TigerBeetle account id."""

    client_id = models.CharField(max_length=128, db_index=True)
    client_id.register_lookup(AnyOf)
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
    opening_credits_minor = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=(
            "what the backfill's opening pair credited (credit + debit at S); none for a wallet "
            "born with the log, or imported before the registry kept it"
        ),
    )
    opening_debits_minor = models.BigIntegerField(
        null=True, blank=True, help_text="what the backfill's opening pair debited (debit at S)"
    )
    limit_reserved = models.BooleanField(
        default=False,
        help_text=(
            "whether the wallet's limit reservation is in TigerBeetle (ledger/tb_model.py); "
            "the store reserves it before a wallet's next credit when not"
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=WalletKey.FIELDS, name=UNIQUE_WALLET_KEY),
            models.CheckConstraint(
                condition=~models.Q(client_id=""), name="wallet_client_id_not_empty"
            ),
            # Not a format check: a legacy MongoDB wallet is imported under its key as stored.
            models.CheckConstraint(
                condition=~models.Q(country="") & ~models.Q(currency=""),
                name="wallet_country_and_currency_not_empty",
            ),
            models.CheckConstraint(
                condition=_tb_id_hex("tb_account_id_hex"), name="wallet_account_id_hex"
            ),
            # A TigerBeetle ledger is never 0; ours are ISO 4217 numeric codes (1..999).
            models.CheckConstraint(
                condition=models.Q(ledger__gt=0, ledger__lte=999), name="wallet_ledger_iso_numeric"
            ),
            models.CheckConstraint(
                condition=models.Q(opening_seq__isnull=True) | models.Q(opening_seq__gte=0),
                name="wallet_opening_seq_not_negative",
            ),
            # The backfill sets both at once; the mirror sets opening_seq alone (0).
            models.CheckConstraint(
                condition=models.Q(imported_at__isnull=True) | models.Q(opening_seq__isnull=False),
                name="wallet_imported_has_opening_seq",
            ),
            # The opening pair's amounts: both or neither, never negative, only when imported.
            models.CheckConstraint(
                condition=models.Q(
                    opening_credits_minor__isnull=True, opening_debits_minor__isnull=True
                )
                | models.Q(
                    opening_credits_minor__gte=0,
                    opening_debits_minor__gte=0,
                    imported_at__isnull=False,
                ),
                name="wallet_opening_amounts",
            ),
        ]
        indexes = [models.Index(fields=["currency", "country"])]
        verbose_name = "wallet"
        # The REST API's permissions (README, "REST API"); a void needs
        # WalletTransfer's void_wallettransfer, as in the admin.
        permissions = [
            ("read_wallets", "Can read wallet balances and transactions through the API"),
            ("credit_wallets", "Can add credit to wallets through the API"),
            ("debit_wallets", "Can subtract credit from wallets through the API"),
            ("post_batches", "Can post batches of credits and debits through the API"),
            # A wallet's statement for a period (API CSV, admin page and CSV download).
            ("view_statement", "Can view and download wallet statements"),
        ]

    def __str__(self) -> str:
        issuer = f"/{self.issuer}" if self.issuer else ""
        return f"{self.client_id} {self.country} {self.currency}{issuer}"

    @property
    def tb_account_id(self) -> int:
        return hex_to_u128(self.tb_account_id_hex)

    @property
    def key(self) -> WalletKey:
        return WalletKey.from_row(self)


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
    needs_copy_back = models.BooleanField(
        default=False, help_text="written with TigerBeetle primary; not yet in MongoDB"
    )
    void_needs_copy_back = models.BooleanField(
        default=False, help_text="voided with TigerBeetle primary; void not yet in MongoDB"
    )
    created_at = models.DateTimeField(
        default=timezone.now,
        db_index=True,
        help_text="the time of the original write, in whichever store took it",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(transaction_id=""), name="transfer_transaction_id_not_empty"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["credit", "debit"]), name="transfer_kind_known"
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["posted", "voided", "failed"]),
                name="transfer_state_known",
            ),
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="transfer_amount_positive"
            ),
            models.CheckConstraint(
                condition=_tb_id_hex("tb_transfer_id_hex"), name="transfer_id_hex"
            ),
            models.CheckConstraint(
                condition=models.Q(void_tb_transfer_id_hex="")
                | _tb_id_hex("void_tb_transfer_id_hex"),
                name="transfer_void_id_hex",
            ),
            models.CheckConstraint(
                condition=models.Q(tb_timestamp__isnull=True) | models.Q(tb_timestamp__gt=0),
                name="transfer_tb_timestamp_positive",
            ),
            # Refused exactly when it carries the refusal's code.
            models.CheckConstraint(
                condition=models.Q(state="failed", failure_code__gt="")
                | (~models.Q(state="failed") & models.Q(failure_code="")),
                name="transfer_failed_has_code",
            ),
            # Voided exactly when voided_at is set, and then by someone. A transaction the
            # backfill registered as voided has no void transfer (its opening balance holds it).
            models.CheckConstraint(
                condition=models.Q(state="voided", voided_at__isnull=False, voided_by__gt="")
                | (
                    ~models.Q(state="voided")
                    & models.Q(
                        voided_at__isnull=True,
                        voided_by="",
                        void_reason="",
                        void_tb_transfer_id_hex="",
                        void_needs_copy_back=False,
                    )
                ),
                name="transfer_voided_when_voided_at",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="failed", needs_copy_back=True),
                name="transfer_failed_never_copied_back",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "kind"]),
            # Support finds a transaction by its void's transfer id too (only voids have one).
            models.Index(
                fields=["void_tb_transfer_id_hex"],
                name="transfer_void_id",
                condition=~models.Q(void_tb_transfer_id_hex=""),
            ),
            models.Index(
                fields=["created_at"],
                name="transfer_copy_back_due",
                condition=models.Q(needs_copy_back=True) | models.Q(void_needs_copy_back=True),
            ),
        ]
        verbose_name = "transaction"
        permissions = [("void_wallettransfer", "Can void a transaction")]

    def __str__(self) -> str:
        return f"{self.kind} {self.transaction_id}"

    @property
    def tb_transfer_id(self) -> int:
        return hex_to_u128(self.tb_transfer_id_hex)


class WalletHold(models.Model):
    """Hold registry: a client's hold id -> the TigerBeetle pending transfer that reserves its
    money, and the transfer that resolved it (capture or release), with their audit.

    `state` is what this row last learnt: an open row whose `expires_at` has passed is expired
    (TigerBeetle voided it by itself), and the store says so when it reads the row."""

    class State(models.TextChoices):
        OPEN = "open"
        CAPTURED = "captured"
        RELEASED = "released"
        EXPIRED = "expired"
        FAILED = "failed"

    hold_id = models.CharField(max_length=128, unique=True)
    wallet = models.ForeignKey(WalletAccount, on_delete=models.PROTECT, related_name="holds")
    amount_minor = models.BigIntegerField()
    captured_minor = models.BigIntegerField(default=0)
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    failure_code = models.CharField(max_length=32, blank=True, default="")
    timeout_s = models.PositiveIntegerField(help_text="the pending transfer's timeout")
    tb_transfer_id_hex = models.CharField(
        "TigerBeetle pending transfer id", max_length=32, unique=True
    )
    tb_timestamp = models.BigIntegerField(
        null=True, blank=True, help_text="TigerBeetle's ns timestamp of the pending transfer"
    )
    resolution_tb_transfer_id_hex = models.CharField(max_length=32, blank=True, default="")
    made_by = models.CharField(max_length=150, blank=True, default="")
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    needs_copy_back = models.BooleanField(
        default=False,
        help_text="captured or released with TigerBeetle primary; not yet in MongoDB",
    )
    place_needs_copy_back = models.BooleanField(
        default=False, help_text="placed with TigerBeetle primary; not yet in MongoDB"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~models.Q(hold_id=""), name="hold_id_not_empty"),
            models.CheckConstraint(
                condition=~models.Q(needs_copy_back=True)
                | models.Q(state__in=["captured", "released"]),
                name="hold_copied_back_only_when_resolved",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["open", "captured", "released", "expired", "failed"]),
                name="hold_state_known",
            ),
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="hold_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(captured_minor__gte=0)
                & models.Q(captured_minor__lte=models.F("amount_minor")),
                name="hold_captured_within_amount",
            ),
            # Captured exactly when something was captured.
            models.CheckConstraint(
                condition=models.Q(state="captured", captured_minor__gt=0)
                | (~models.Q(state="captured") & models.Q(captured_minor=0)),
                name="hold_captured_when_captured_minor",
            ),
            models.CheckConstraint(
                condition=models.Q(state="failed", failure_code__gt="")
                | (~models.Q(state="failed") & models.Q(failure_code="")),
                name="hold_failed_has_code",
            ),
            models.CheckConstraint(
                condition=models.Q(timeout_s__gt=0), name="hold_timeout_positive"
            ),
            models.CheckConstraint(condition=_tb_id_hex("tb_transfer_id_hex"), name="hold_id_hex"),
            models.CheckConstraint(
                condition=models.Q(resolution_tb_transfer_id_hex="")
                | _tb_id_hex("resolution_tb_transfer_id_hex"),
                name="hold_resolution_id_hex",
            ),
            # Resolved (captured or released) exactly when its resolving transfer is named.
            models.CheckConstraint(
                condition=models.Q(state__in=["captured", "released"], resolved_at__isnull=False)
                & ~models.Q(resolution_tb_transfer_id_hex="")
                | (
                    ~models.Q(state__in=["captured", "released"])
                    & models.Q(resolution_tb_transfer_id_hex="")
                ),
                name="hold_resolved_when_resolution_id",
            ),
        ]
        indexes = [models.Index(fields=["wallet", "state"], name="hold_wallet_state")]
        verbose_name = "hold"
        permissions = [
            ("capture_wallethold", "Can capture a hold"),
            ("release_wallethold", "Can release a hold"),
        ]

    def __str__(self) -> str:
        return f"hold {self.hold_id}"

    @property
    def tb_transfer_id(self) -> int:
        return hex_to_u128(self.tb_transfer_id_hex)


class StoreMovement(models.Model):
    """The TigerBeetle store's transactional outbox for the event feed (events/): one row per
    money movement the store made (phase 4), written in the same database transaction as the
    registry row that records it (registry/transfers.py, registry/holds.py). The event
    collector turns rows into events and deletes them in one transaction of its own, so a
    movement becomes exactly one event whichever process dies when. The mirror's rows (phases
    1-3) write none: MongoDB's log is the source then."""

    class Movement(models.TextChoices):
        POSTED = "posted"
        REFUSED = "refused"
        VOIDED = "voided"
        HELD = "held"
        CAPTURED = "captured"
        RELEASED = "released"
        EXPIRED = "expired"

    movement = models.CharField(max_length=8, choices=Movement.choices)
    # The credit's or debit's id (also of its void), or the hold's id.
    reference_id = models.CharField(max_length=128)
    transaction_kind = models.CharField(max_length=6, blank=True, default="")  # credit, debit
    # Neither a constraint nor an index: the row is written in the transaction of a registry
    # row that references the same wallet (its constraint checks it), and it lives until the
    # next collector run (whose one look-up by wallet scans a table of what is not collected
    # yet). A batch writes 8,189 rows: each constraint check and index entry was its to pay.
    wallet = models.ForeignKey(
        WalletAccount,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    amount_minor = models.BigIntegerField()
    # The transfer whose TigerBeetle timestamp gives the balance after ("" when TigerBeetle
    # holds none: a refused debit, a hold the cluster's timeout voided).
    tb_transfer_id_hex = models.CharField(max_length=32, blank=True, default="")
    actor = models.CharField(max_length=150, blank=True, default="")
    occurred_at = models.DateTimeField(help_text="the original write's time")
    # A movement TigerBeetle holds no transfer for but gave a place in its order: a refused
    # debit (TigerBeetle gives every event of a request a timestamp, refused ones too). The
    # collector orders the wallet's events by it as by a transfer's timestamp.
    tb_timestamp = models.BigIntegerField(null=True, blank=True)
    # Read only by SQLite's settling (a small table there): no index.
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # No unique (reference, movement): a repeat (a retried request re-registering its
        # lost row) is one event all the same, the events' ids being unique and derived from
        # both (events/collector.py), and a batch's 8,189 rows paid for that index.
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="store_movement_amount_positive"
            ),
        ]
        verbose_name = "store movement (event outbox)"
