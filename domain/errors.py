"""Wallet-level errors: each has a stable machine code and the HTTP status the API answers with.

Stores and the service raise these; the REST layer renders them as one JSON shape
(`{"error": {"code": ..., "message": ..., "details": ...}}`). Nothing here knows about HTTP
beyond the status number, so the admin and Celery tasks use the same errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # domain.wallets' records; errors are imported before them
    from domain.wallets import TransactionRecord


def error_body(code: str, *, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one JSON shape of every error answer (the REST API, /metrics, gunicorn's own)."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


class WalletError(Exception):
    """Base of every refusal a client can get; never a partial change behind it."""

    code = "wallet_error"
    http_status = 400
    default_message = "The wallet operation was refused."
    # When to retry, for refusals that pass (a 503): the API's Retry-After header.
    retry_after_s: int | None = None

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details


class ValidationFailed(WalletError):
    """A field is missing or malformed; `details["field"]` names it."""

    code = "validation_error"
    default_message = "The request is not valid."


class InvalidAmount(WalletError):
    code = "invalid_amount"
    default_message = "The amount is not a valid positive amount in this currency."


class UnknownCurrency(WalletError):
    code = "unknown_currency"
    default_message = "The currency is not an ISO 4217 currency."


class UnknownCountry(WalletError):
    code = "unknown_country"
    default_message = "The country is not an ISO 3166 country."


class CrossCurrency(WalletError):
    code = "cross_currency"
    http_status = 422
    default_message = "Money in one currency cannot move into a wallet of another currency."


class InsufficientFunds(WalletError):
    code = "insufficient_funds"
    http_status = 422
    default_message = "The wallet's available credit is less than the amount."


class BalanceLimitExceeded(WalletError):
    """The write would take the wallet's historical credit past `money.BALANCE_MINOR_MAX`."""

    code = "balance_limit_exceeded"
    http_status = 422
    default_message = "The wallet would hold more than the ledger's balance limit."


class ConflictWithOriginal(WalletError):
    """A write that meets what an id already did: `original` is the stored transaction (the
    API answers it in `details.original`), so a client that lost the first answer learns
    what was done; None when the store cannot name it."""

    http_status = 409

    def __init__(
        self,
        message: str | None = None,
        *,
        original: TransactionRecord | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message, **details)
        self.original = original


class IdempotencyConflict(ConflictWithOriginal):
    code = "idempotency_conflict"
    default_message = "This id was already used for a different request."


class WalletNotFound(WalletError):
    code = "wallet_not_found"
    http_status = 404
    default_message = "No such wallet."


class TransactionNotFound(WalletError):
    code = "transaction_not_found"
    http_status = 404
    default_message = "No such transaction."


class AlreadyVoided(ConflictWithOriginal):
    code = "already_voided"
    default_message = "The transaction was already voided."


class VoidWouldOverdraw(WalletError):
    code = "void_would_overdraw"
    http_status = 409
    default_message = "Voiding this credit would take the wallet below zero."


class HoldNotFound(WalletError):
    code = "hold_not_found"
    http_status = 404
    default_message = "No such hold."


class HoldNotOpen(WalletError):
    """The hold was captured, released or has expired: it cannot be captured or released
    (again, differently). `details["state"]` names what it is."""

    code = "hold_not_open"
    http_status = 409
    default_message = "The hold is no longer open."


class CaptureExceedsHold(WalletError):
    code = "capture_exceeds_hold"
    http_status = 422
    default_message = "A capture can take at most the amount the hold reserved."


class HoldRepeatedInBatch(WalletError):
    """A batch names one hold in two items (placed and captured, captured and released...):
    each hold at most once per batch, so each item answers what its single endpoint would
    (docs/holds.md, "In a batch"). `details["item"]` names the second."""

    code = "hold_repeated_in_batch"
    default_message = "A batch names each hold at most once."


class StoreUnavailable(WalletError):
    """A store (MongoDB, TigerBeetle) did not answer; the outcome of a write is unknown and
    a retry with the same id is safe."""

    code = "store_unavailable"
    http_status = 503
    default_message = "The wallet store is unavailable; retry with the same id."
    retry_after_s = 1


class WritesPaused(WalletError):
    """A migration phase change is moving where money is written; retry in a few seconds."""

    code = "writes_paused"
    http_status = 503
    default_message = "A migration step is moving the wallet store; retry in a few seconds."
    retry_after_s = 2


class DatabaseUnavailable(WalletError):
    """The relational database (tokens, registries, flags, the write lock) did not answer; a
    write was not applied unless its answer says so, and a retry with the same id is safe."""

    code = "database_unavailable"
    http_status = 503
    default_message = "The database is unavailable; retry with the same id in a few seconds."
    retry_after_s = 2


# --- a wallet's history (GET .../history): its query parameters -------------------------------


class InvalidCursor(WalletError):
    """The cursor is not one this wallet's history gave (or names a point it lacks)."""

    code = "invalid_cursor"
    default_message = "The cursor is not a next_cursor of this wallet's history."


class InvalidTime(WalletError):
    """A time bound is not an ISO-8601 time with a UTC offset; `details["field"]` names it."""

    code = "invalid_time"
    default_message = "Give the time as ISO 8601 with a UTC offset, e.g. 2026-12-01T00:00:00Z."


class InvalidTimeRange(WalletError):
    code = "invalid_time_range"
    default_message = "`from` must be earlier than `to`."


class InvalidLimit(WalletError):
    code = "invalid_limit"
    default_message = "The limit is not a whole number in the allowed range."


# --- a wallet's statement (GET .../statement): its period -------------------------------------


class StatementPeriodTooLong(WalletError):
    """The period spans more than `domain.statements.STATEMENT_SPAN_MAX_DAYS`."""

    code = "statement_period_too_long"
    default_message = "A statement covers at most 366 days; ask for a shorter period."


class StatementTooLarge(WalletError):
    """The period holds more than `domain.statements.STATEMENT_LINES_MAX` points."""

    code = "statement_too_large"
    default_message = "The period holds too many transactions for one statement; split it."


# --- the event feed (GET /api/events, webhook subscriptions) -----------------------------------


class InvalidEventType(WalletError):
    """A `type` the feed has none of; `details["allowed"]` lists the types."""

    code = "invalid_event_type"
    default_message = "Not an event type of the feed."


class InvalidWalletRef(WalletError):
    code = "invalid_wallet"
    default_message = "`wallet` is an event's wallet.id: 32 lowercase hex digits."


class MonitorNotFound(WalletError):
    code = "monitor_not_found"
    http_status = 404
    default_message = "No such balance monitor."


class SubscriptionNotFound(WalletError):
    code = "subscription_not_found"
    http_status = 404
    default_message = "No such subscription of yours."
