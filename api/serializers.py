"""Request and response shapes of the wallet API. Amounts travel as decimal strings.

How each field appears in the OpenAPI schema (the id rule's pattern, the enums, the amount's
grammar) is `api.schema`'s: the schema states every rule these fields and the service apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from domain.wallets import TransactionRecord, WalletBalance, WalletResult
from ledger.service import ID_MAX_LENGTH

VOID_REASON_MAX_LENGTH = 1000


class IdField(serializers.CharField):
    """An id from the body: a JSON string (DRF's CharField would turn 12 or 1e3 into "12"
    and "1E+3"), passed on untrimmed, so the service's one id rule
    (`ledger.service.checked_id`) judges it exactly as it judges ids from the path."""

    default_error_messages = {"invalid": "Give the id as a JSON string."}

    def __init__(self, **options: Any) -> None:
        super().__init__(max_length=ID_MAX_LENGTH, trim_whitespace=False, **options)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


@extend_schema_field(OpenApiTypes.STR)  # the whole rule: api.schema.amount_schema
class AmountField(serializers.Field):
    """A decimal amount given as a string ("10.50") or a JSON number (parsed as Decimal);
    its range and precision are checked against the currency by the service."""

    default_error_messages = {"invalid": 'Give the amount as a decimal string, e.g. "10.50".'}

    def to_internal_value(self, data: Any) -> Decimal | str:
        if isinstance(data, bool) or not isinstance(data, str | Decimal | int):
            self.fail("invalid")
        return data if isinstance(data, str | Decimal) else Decimal(data)

    def to_representation(self, value: Decimal) -> str:
        return format(value, "f")


class IssuerField(IdField):
    """The issuer in a body: an id, or "" (the default) for no issuer."""

    def __init__(self) -> None:
        super().__init__(required=False, allow_blank=True, default="")


class StatedCurrencyField(serializers.CharField):
    """The amount's currency, if the client states it: passed on untrimmed, so " " or "\r"
    is judged (unknown_currency) rather than trimmed into "not stated"."""

    def __init__(self) -> None:
        super().__init__(
            max_length=3,
            required=False,
            allow_blank=True,
            default="",
            trim_whitespace=False,
            help_text="The amount's currency; if given it must be the wallet's "
            "(else cross_currency)",
        )


class RequestBody(serializers.Serializer):
    """A request body names only the fields its operation takes: DRF drops any other, so a
    misspelt one ("amount_currency" for "currency") would be ignored and the money moved
    anyway. It is refused instead (400 validation_error, the field named)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in data if name not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Not a field of this request."] for name in unknown},
                    code="unknown_field",
                )
        return super().to_internal_value(data)


class CreditRequest(RequestBody):
    transaction_id = IdField()
    amount = AmountField()
    issuer = IssuerField()
    currency = StatedCurrencyField()


class DebitRequest(RequestBody):
    reference_id = IdField()
    amount = AmountField()
    issuer = IssuerField()
    currency = StatedCurrencyField()


class VoidReasonField(serializers.CharField):
    """Why a transaction is voided: a JSON string (DRF's CharField would take 12 as "12"),
    trimmed, then 1 to VOID_REASON_MAX_LENGTH characters."""

    default_error_messages = {"invalid": "Give the reason as a JSON string."}

    def __init__(self) -> None:
        super().__init__(max_length=VOID_REASON_MAX_LENGTH)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class VoidRequest(RequestBody):
    reason = VoidReasonField()


class WalletBalanceSerializer(serializers.Serializer):
    client_id = serializers.CharField(source="key.client_id")
    country = serializers.CharField(source="key.country")
    currency = serializers.CharField(source="key.currency")
    issuer = serializers.CharField(source="key.issuer", allow_null=True)
    credit = AmountField(
        read_only=True, help_text="available: posted credits - posted debits - held"
    )
    debit = AmountField(read_only=True)
    historical_credit = AmountField(read_only=True)
    held = AmountField(read_only=True, help_text="reserved by open holds, out of credit already")


class MultiBalanceSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    wallets = WalletBalanceSerializer(many=True)


class TransactionSerializer(serializers.Serializer):
    transaction_id = serializers.CharField()
    kind = serializers.CharField()
    client_id = serializers.CharField(source="key.client_id")
    country = serializers.CharField(source="key.country")
    currency = serializers.CharField(source="key.currency")
    issuer = serializers.CharField(source="key.issuer", allow_null=True)
    amount = AmountField(read_only=True)
    state = serializers.CharField()
    failure_code = serializers.CharField()
    created_at = serializers.DateTimeField()
    made_by = serializers.CharField(help_text="who posted it (the API token's user)")
    voided_at = serializers.DateTimeField(allow_null=True)
    voided_by = serializers.CharField()
    void_reason = serializers.CharField()


class WalletResultSerializer(serializers.Serializer):
    transaction = TransactionSerializer()
    balance = WalletBalanceSerializer()
    replayed = serializers.BooleanField()


class PingSerializer(serializers.Serializer):
    user = serializers.CharField()


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def render_result(result: WalletResult) -> dict[str, Any]:
    return WalletResultSerializer(result).data


def render_balance(balance: WalletBalance) -> dict[str, Any]:
    return WalletBalanceSerializer(balance).data


def render_transaction(record: TransactionRecord) -> dict[str, Any]:
    return TransactionSerializer(record).data
