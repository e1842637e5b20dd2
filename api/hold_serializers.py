"""Request and response shapes of the hold API (docs/holds.md). Amounts travel as decimal
strings, as in the rest of the API; how each field appears in the OpenAPI schema is
`api.schema`'s (`hold_field_schemas`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers import (
    AmountField,
    IdField,
    IssuerField,
    RequestBody,
    StatedCurrencyField,
    WalletBalanceSerializer,
)
from domain.holds import Hold, HoldResult


@extend_schema_field(OpenApiTypes.INT)  # the whole rule: api.schema.EXPIRES_IN_SCHEMA
class ExpiresInField(serializers.Field):
    """Whole seconds as a JSON integer (DRF's IntegerField would take "60" and 60.0); the
    service judges the range (`ledger.service._checked_timeout`)."""

    default_error_messages = {"invalid": "Give expires_in_s as a JSON integer of seconds."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(data)

    def to_representation(self, value: int) -> int:
        return value


class HoldRequest(RequestBody):
    hold_id = IdField()
    amount = AmountField()
    expires_in_s = ExpiresInField()
    issuer = IssuerField()
    currency = StatedCurrencyField()


class CaptureRequest(RequestBody):
    amount = AmountField(required=False, allow_null=True, default=None)


class ReleaseRequest(RequestBody):
    """A release takes no fields (an empty object or no body)."""


class HoldSerializer(serializers.Serializer):
    hold_id = serializers.CharField()
    client_id = serializers.CharField(source="key.client_id")
    country = serializers.CharField(source="key.country")
    currency = serializers.CharField(source="key.currency")
    issuer = serializers.CharField(source="key.issuer", allow_null=True)
    amount = AmountField(read_only=True, help_text="what the hold reserved")
    captured = AmountField(read_only=True, help_text="what its capture posted (0 until then)")
    state = serializers.ChoiceField(
        choices=["open", "captured", "released", "expired", "failed"],
        help_text="failed: refused when placed (failure_code says why)",
    )
    failure_code = serializers.CharField()
    expires_in_s = serializers.IntegerField(source="timeout_s")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    made_by = serializers.CharField(help_text="who placed it (the API token's user)")
    resolved_at = serializers.DateTimeField(
        allow_null=True, help_text="when it was captured, released or expired"
    )
    resolved_by = serializers.CharField(help_text="who captured or released it ('' if expired)")


class HoldResultSerializer(serializers.Serializer):
    hold = HoldSerializer()
    balance = WalletBalanceSerializer()
    replayed = serializers.BooleanField()


def render_hold_result(result: HoldResult) -> dict[str, Any]:
    return HoldResultSerializer(result).data


def render_hold(hold: Hold) -> dict[str, Any]:
    return HoldSerializer(hold).data
