"""Balance monitors over HTTP (`/api/balance-monitors`; issue 24 item 3, docs/events.md
"Balance monitors"): list, create (the line as a decimal string in the rule's currency),
read (with its state on the wallets it fired on), deactivate. Monitors are the deployment's,
as the feed is: the permissions `events.*_balancemonitor` say who manages them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import error_responses
from api.serializers import AmountField, IdField, IssuerField, RequestBody
from domain import errors
from domain.money import MoneyError, from_minor_units, normalize_currency
from events.models import BalanceMonitor
from ledger.service import amount_minor_of, wallet_key

VIEW_MONITORS = "events.view_balancemonitor"
ADD_MONITORS = "events.add_balancemonitor"
CHANGE_MONITORS = "events.change_balancemonitor"
ID_MAX = 2**63 - 1
FIRED_WALLETS_SHOWN = 100
_ACCESS: dict[int, Sequence[str]] = {
    401: ["not_authenticated", "authentication_failed"],
    403: ["permission_denied"],
    429: ["throttled", "too_many_failed_authentications"],
    503: ["database_unavailable"],
}
_NOT_FOUND: dict[int, Sequence[str]] = {404: ["monitor_not_found", "not_found"]}


class MonitorWalletRequest(RequestBody):
    client_id = IdField(help_text="the wallet's client")
    country = serializers.CharField(max_length=3, help_text="the wallet's country")
    issuer = IssuerField()


class MonitorRequest(RequestBody):
    currency = serializers.CharField(max_length=3, help_text="ISO 4217 (else unknown_currency)")
    direction = serializers.ChoiceField(choices=["below", "above"])
    threshold = AmountField(
        help_text="the line on the available balance, a positive amount in the currency "
        "(else 400 invalid_amount)"
    )
    wallet = MonitorWalletRequest(
        required=False, allow_null=True, help_text="one wallet; absent or null: every wallet"
    )


class MonitorWalletSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    country = serializers.CharField()
    issuer = serializers.CharField(allow_null=True)


class MonitorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    currency = serializers.CharField()
    wallet = MonitorWalletSerializer(allow_null=True, help_text="null: every wallet")
    direction = serializers.ChoiceField(choices=["below", "above"])
    threshold = serializers.CharField(help_text="a decimal string in the currency")
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    fired_on = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=f"the wallets (`wallet.id` of the feed) it is fired on now, at most "
        f"{FIRED_WALLETS_SHOWN}; only when one monitor is read",
    )


def render_monitor(monitor: BalanceMonitor, *, with_state: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": monitor.pk,
        "name": monitor.name,
        "currency": monitor.currency,
        "wallet": None
        if monitor.currency_wide
        else {
            "client_id": monitor.client_id,
            "country": monitor.country,
            "issuer": monitor.issuer or None,
        },
        "direction": monitor.direction,
        "threshold": format(from_minor_units(monitor.threshold_minor, monitor.currency), "f"),
        "active": monitor.active,
        "created_at": serializers.DateTimeField().to_representation(monitor.created_at),
    }
    if with_state:
        fired = monitor.states.filter(fired=True).order_by("wallet_ref")
        answer["fired_on"] = list(fired.values_list("wallet_ref", flat=True)[:FIRED_WALLETS_SHOWN])
    return answer


def _monitor(monitor_id: int) -> BalanceMonitor:
    found = BalanceMonitor.objects.filter(pk=monitor_id).first() if monitor_id <= ID_MAX else None
    if found is None:
        raise errors.MonitorNotFound()
    return found


def _new_monitor(data: dict[str, Any], *, created_by: str) -> BalanceMonitor:
    named = data.get("wallet")
    if named:
        key = wallet_key(
            client_id=named["client_id"],
            country=named["country"],
            currency=data["currency"],
            issuer=named.get("issuer") or None,
        )
        currency, wallet = key.currency, (key.client_id, key.country, key.issuer or "")
    else:
        try:
            currency = normalize_currency(data["currency"])
        except MoneyError as exc:
            raise errors.UnknownCurrency(
                f"Unknown currency {data['currency']!r}.", field="currency"
            ) from exc
        wallet = ("", "", "")
    threshold_minor = amount_minor_of(data["threshold"], currency)
    return BalanceMonitor.objects.create(
        currency=currency,
        client_id=wallet[0],
        country=wallet[1],
        issuer=wallet[2],
        direction=data["direction"],
        threshold_minor=threshold_minor,
        created_by=created_by,
    )


class BalanceMonitorsView(APIView):
    def get_permissions(self) -> Any:
        self.required_permissions = (
            (ADD_MONITORS,) if self.request.method == "POST" else (VIEW_MONITORS,)
        )
        return super().get_permissions()

    @extend_schema(
        operation_id="list_balance_monitors",
        summary="Balance monitors",
        responses={200: MonitorSerializer(many=True), **error_responses(_ACCESS)},
    )
    def get(self, request: Request) -> Response:
        return Response([render_monitor(m) for m in BalanceMonitor.objects.order_by("id")])

    @extend_schema(
        operation_id="create_balance_monitor",
        summary="Watch a balance: a `crossed` event once per crossing of a line",
        description="A line on the available balance of one wallet (`client_id`, `country`, "
        "`issuer`) or of every wallet of `currency`: `below` fires when the balance goes under "
        "it, `above` when it goes over it; one `crossed` event per crossing, right after the "
        "movement that crossed it in the feed, re-armed when the balance crosses back. A new "
        "monitor reads no balance: a wallet already beyond the line fires at its next "
        "movement. Needs `events.add_balancemonitor`.",
        request=MonitorRequest,
        responses={
            201: MonitorSerializer,
            **error_responses(
                {
                    400: [
                        "validation_error",
                        "malformed_request",
                        "invalid_amount",
                        "unknown_currency",
                        "unknown_country",
                    ],
                    **_ACCESS,
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        body = MonitorRequest(data=request.data)
        body.is_valid(raise_exception=True)
        monitor = _new_monitor(body.validated_data, created_by=request.user.get_username())
        return Response(render_monitor(monitor), status=status.HTTP_201_CREATED)


class BalanceMonitorView(APIView):
    def get_permissions(self) -> Any:
        self.required_permissions = (
            (CHANGE_MONITORS,) if self.request.method == "DELETE" else (VIEW_MONITORS,)
        )
        return super().get_permissions()

    @extend_schema(
        operation_id="get_balance_monitor",
        responses={200: MonitorSerializer, **error_responses({**_NOT_FOUND, **_ACCESS})},
    )
    def get(self, request: Request, monitor_id: int) -> Response:
        return Response(render_monitor(_monitor(monitor_id), with_state=True))

    @extend_schema(
        operation_id="deactivate_balance_monitor",
        description="The monitor stops firing; it and its firings stay (the feed's `crossed` "
        "events name it). Needs `events.change_balancemonitor`.",
        responses={
            204: OpenApiResponse(description="deactivated"),
            **error_responses({**_NOT_FOUND, **_ACCESS}),
        },
    )
    def delete(self, request: Request, monitor_id: int) -> Response:
        monitor = _monitor(monitor_id)
        monitor.active = False
        monitor.save(update_fields=["active"])
        return Response(status=status.HTTP_204_NO_CONTENT)
