"""The event feed over HTTP: `GET /api/events` pages events by cursor, and a caller's webhook
subscriptions (`/api/event-subscriptions`): list, create, read, delete, replay a range.

Events are read from the events table (events/, docs/events.md): a consumer keeps the last
`next_after` it processed and asks again from it after a restart. Subscriptions belong to the
user whose token created them; another user's is answered 404 subscription_not_found.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import error_responses
from api.serializers import RequestBody
from domain import errors
from events.delivery import render_event, replay_range
from events.models import Event, EventType, Subscription

VIEW_EVENTS = "events.view_event"
VIEW_SUBSCRIPTIONS = "events.view_subscription"
ADD_SUBSCRIPTIONS = "events.add_subscription"
DELETE_SUBSCRIPTIONS = "events.delete_subscription"
REPLAY_DELIVERIES = "events.replay_delivery"
EVENTS_LIMIT_DEFAULT = 100
EVENTS_LIMIT_MAX = 500
SECRET_MIN_LENGTH = 24
SECRET_MAX_LENGTH = 128
_WALLET_REF = re.compile(r"^[0-9a-f]{32}$")
_CURSOR = re.compile(r"^[0-9]{1,18}$")
# A webhook URL: http or https, a host, then anything without ASCII controls or spaces (named
# by code point: Python's `\s` and JSON Schema's differ); what `requests` cannot reach fails
# its delivery attempts, shown in the admin.
URL_PATTERN = r"^https?://[^\u0000-\u0020\u007f/?#@]+([/?#][^\u0000-\u0020\u007f]*)?$"
URL_MAX_LENGTH = 500
ID_MAX = 2**63 - 1
_ACCESS: dict[int, Sequence[str]] = {
    401: ["not_authenticated", "authentication_failed"],
    403: ["permission_denied"],
    429: ["throttled", "too_many_failed_authentications"],
    503: ["database_unavailable"],
}
EVENT_TYPES = [choice.value for choice in EventType]


class EventWalletSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="the wallet's id in the feed (`?wallet=`)")
    client_id = serializers.CharField()
    country = serializers.CharField()
    currency = serializers.CharField()
    issuer = serializers.CharField(allow_null=True)


class EventBalanceSerializer(serializers.Serializer):
    credit = serializers.CharField(help_text="available, right after the movement")
    held = serializers.CharField()
    debit = serializers.CharField()
    historical_credit = serializers.CharField()


class EventCrossingSerializer(serializers.Serializer):
    monitor_id = serializers.IntegerField(
        allow_null=True, help_text="the balance monitor (null once it is deleted)"
    )
    crossed_to = serializers.ChoiceField(
        choices=["below", "above"], help_text="the side of the line the balance went to"
    )
    line = serializers.CharField(help_text="the monitor's line, a decimal string")
    caused_by = serializers.CharField(help_text="the event_id of the movement that crossed it")


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the feed's cursor: pass the last one as `after`")
    event_id = serializers.CharField(
        help_text="stable: the same movement is the same event_id in every phase and on every "
        "delivery (a receiver drops repeats by it)"
    )
    type = serializers.ChoiceField(choices=EVENT_TYPES)
    reference_id = serializers.CharField(
        help_text="the credit's or debit's id (also of a void, which names the voided "
        "transaction), or the hold's id"
    )
    transaction_kind = serializers.CharField(
        allow_null=True, help_text="credit or debit; null for a hold event"
    )
    wallet = EventWalletSerializer()
    amount = serializers.CharField(help_text="a decimal string in the wallet's currency")
    currency = serializers.CharField()
    balance_after = EventBalanceSerializer(
        allow_null=True,
        help_text="the wallet's balance right after the movement; null for a refused debit "
        "(it changed nothing) and a hold that TigerBeetle's own timeout expired",
    )
    actor = serializers.CharField(help_text="who made the write (the API user, or support)")
    occurred_at = serializers.DateTimeField(help_text="the original write's time")
    crossing = EventCrossingSerializer(
        allow_null=True,
        help_text="a `crossed` event's balance monitor (docs/events.md, 'Balance monitors'): "
        "fired once when the available balance (`balance_after.credit`) crosses its line, "
        "right after the movement that crossed it; null on a movement's event",
    )


class EventPageSerializer(serializers.Serializer):
    events = EventSerializer(many=True, help_text="oldest first")
    next_after = serializers.IntegerField(help_text="pass as `after` for the next page")
    has_more = serializers.BooleanField()


def _events_query(params: Any) -> tuple[int, int, dict[str, Any]]:
    after_text = params.get("after", "0")
    if not _CURSOR.match(after_text):
        raise errors.InvalidCursor("`after` is an event's id (a whole number, 0 for the start).")
    limit_text = params.get("limit", str(EVENTS_LIMIT_DEFAULT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= EVENTS_LIMIT_MAX:
        raise errors.InvalidLimit(f"`limit` is a whole number from 1 to {EVENTS_LIMIT_MAX}.")
    filters: dict[str, Any] = {}
    wallet = params.get("wallet")
    if wallet is not None:
        if not _WALLET_REF.match(wallet):
            raise errors.InvalidWalletRef()
        filters["wallet_ref"] = wallet
    types = params.get("type")
    if types is not None:
        wanted = types.split(",")
        unknown = [name for name in wanted if name not in EVENT_TYPES]
        if unknown:
            raise errors.InvalidEventType(allowed=EVENT_TYPES, unknown=unknown)
        filters["type__in"] = wanted
    return int(after_text), int(limit_text), filters


class EventsView(APIView):
    required_permissions = (VIEW_EVENTS,)

    @extend_schema(
        operation_id="list_events",
        summary="Money movements, oldest first, paged by cursor",
        description="One event per money movement (posted, refused, voided, held, captured, "
        "released, expired), and a `crossed` event when a balance monitor's line is crossed "
        "(right after the movement that crossed it), in the order the feed took them, which "
        "keeps each wallet's order. Resume after a restart with the last `next_after` you "
        "processed. Needs `events.view_event`.",
        parameters=[
            OpenApiParameter(
                "after",
                {"type": "string", "pattern": _CURSOR.pattern},
                OpenApiParameter.QUERY,
                required=False,
                description="Events with a larger `id` (default 0: from the start); not a "
                "whole number: 400 invalid_cursor.",
            ),
            OpenApiParameter(
                "wallet",
                {"type": "string", "pattern": _WALLET_REF.pattern},
                OpenApiParameter.QUERY,
                required=False,
                description="One wallet's events: an event's `wallet.id` "
                "(else 400 invalid_wallet).",
            ),
            OpenApiParameter(
                "type",
                {
                    "type": "string",
                    "pattern": f"^({'|'.join(EVENT_TYPES)})(,({'|'.join(EVENT_TYPES)}))*$",
                },
                OpenApiParameter.QUERY,
                required=False,
                description="Comma-separated types (another: 400 invalid_event_type).",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": EVENTS_LIMIT_MAX},
                OpenApiParameter.QUERY,
                required=False,
                default=EVENTS_LIMIT_DEFAULT,
                description=f"Events per page, 1 to {EVENTS_LIMIT_MAX} (else 400 invalid_limit).",
            ),
        ],
        responses={
            200: EventPageSerializer,
            **error_responses(
                {
                    400: [
                        "invalid_cursor",
                        "invalid_limit",
                        "invalid_wallet",
                        "invalid_event_type",
                    ],
                    **_ACCESS,
                }
            ),
        },
    )
    def get(self, request: Request) -> Response:
        after, limit, filters = _events_query(request.query_params)
        page = list(Event.objects.filter(id__gt=after, **filters).order_by("id")[: limit + 1])
        has_more = len(page) > limit
        page = page[:limit]
        return Response(
            {
                "events": [render_event(event) for event in page],
                "next_after": page[-1].id if page else after,
                "has_more": has_more,
            }
        )


class SubscriptionRequest(RequestBody):
    url = serializers.RegexField(
        URL_PATTERN,
        max_length=URL_MAX_LENGTH,
        trim_whitespace=False,  # as the pattern says: a space is refused, not trimmed
        help_text="the http(s) URL the events are POSTed to",
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        required=False,
        default=list,
        help_text="the types to deliver; empty or absent: every type",
    )
    secret = serializers.CharField(
        required=False,
        min_length=SECRET_MIN_LENGTH,
        max_length=SECRET_MAX_LENGTH,
        trim_whitespace=False,
        help_text="the HMAC key of the signatures; absent: the server makes one (answered once)",
    )


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    secret = serializers.CharField(required=False, help_text="only in the answer to its creation")


class ReplayRequest(RequestBody):
    after = serializers.IntegerField(
        min_value=0, max_value=ID_MAX, help_text="replay events with a larger id"
    )
    until = serializers.IntegerField(
        min_value=0,
        max_value=ID_MAX,
        required=False,
        allow_null=True,
        help_text="and at most this id (absent: all)",
    )


class ReplaySerializer(serializers.Serializer):
    replayed = serializers.IntegerField(help_text="deliveries made pending again (at most 10,000)")


def render_subscription(subscription: Subscription, *, with_secret: bool = False) -> dict[str, Any]:
    answer = {
        "id": subscription.pk,
        "url": subscription.url,
        "event_types": list(subscription.event_types),
        "active": subscription.active,
        "created_at": serializers.DateTimeField().to_representation(subscription.created_at),
    }
    if with_secret:
        answer["secret"] = subscription.secret
    return answer


def _own_subscription(request: Request, subscription_id: int) -> Subscription:
    if subscription_id > ID_MAX:
        raise errors.SubscriptionNotFound()
    found = Subscription.objects.filter(pk=subscription_id, owner_id=request.user.pk).first()
    if found is None:
        raise errors.SubscriptionNotFound()
    return found


class SubscriptionsView(APIView):
    def get_permissions(self) -> Any:
        self.required_permissions = (
            (ADD_SUBSCRIPTIONS,) if self.request.method == "POST" else (VIEW_SUBSCRIPTIONS,)
        )
        return super().get_permissions()

    @extend_schema(
        operation_id="list_event_subscriptions",
        summary="Your webhook subscriptions",
        responses={200: SubscriptionSerializer(many=True), **error_responses(_ACCESS)},
    )
    def get(self, request: Request) -> Response:
        owned = Subscription.objects.filter(owner_id=request.user.pk).order_by("id")
        return Response([render_subscription(s) for s in owned])

    @extend_schema(
        operation_id="create_event_subscription",
        summary="Subscribe a URL to events (signed webhooks)",
        description="Each event of the chosen types is POSTed to `url` as JSON (the event's "
        "shape in GET /api/events), signed: header `Wallet-Signature: t=<unix seconds>,"
        "v1=<hex HMAC-SHA256 of '<t>.<body>' with the secret>`. A wallet's events arrive in "
        "order; a delivery not answered 2xx is retried with exponential backoff and marked "
        "failed after the documented limit (docs/events.md). Needs `events.add_subscription`.",
        request=SubscriptionRequest,
        responses={
            201: SubscriptionSerializer,
            **error_responses({400: ["validation_error", "malformed_request"], **_ACCESS}),
        },
    )
    def post(self, request: Request) -> Response:
        body = SubscriptionRequest(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        owner_id = request.user.pk
        assert owner_id is not None, "the permission check let a signed-in user through"
        subscription = Subscription.objects.create(
            owner_id=owner_id,
            url=data["url"],
            event_types=sorted(set(data["event_types"])),
            secret=data.get("secret") or secrets.token_hex(32),
        )
        return Response(
            render_subscription(subscription, with_secret=True), status=status.HTTP_201_CREATED
        )


_NOT_YOURS: dict[int, Sequence[str]] = {404: ["subscription_not_found", "not_found"]}


class SubscriptionView(APIView):
    def get_permissions(self) -> Any:
        self.required_permissions = (
            (DELETE_SUBSCRIPTIONS,) if self.request.method == "DELETE" else (VIEW_SUBSCRIPTIONS,)
        )
        return super().get_permissions()

    @extend_schema(
        operation_id="get_event_subscription",
        responses={200: SubscriptionSerializer, **error_responses({**_NOT_YOURS, **_ACCESS})},
    )
    def get(self, request: Request, subscription_id: int) -> Response:
        return Response(render_subscription(_own_subscription(request, subscription_id)))

    @extend_schema(
        operation_id="delete_event_subscription",
        responses={
            204: OpenApiResponse(description="deleted, with its deliveries"),
            **error_responses({**_NOT_YOURS, **_ACCESS}),
        },
    )
    def delete(self, request: Request, subscription_id: int) -> Response:
        _own_subscription(request, subscription_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubscriptionReplayView(APIView):
    required_permissions = (REPLAY_DELIVERIES,)

    @extend_schema(
        operation_id="replay_event_subscription",
        summary="Deliver a range of events again",
        description="Every event with `after` < id <= `until` of the subscription's types is "
        "delivered again (in order per wallet), also one from before the subscription; at "
        "most 10,000 a call. Needs `events.replay_delivery`.",
        request=ReplayRequest,
        responses={
            200: ReplaySerializer,
            **error_responses(
                {400: ["validation_error", "malformed_request"], **_NOT_YOURS, **_ACCESS}
            ),
        },
    )
    def post(self, request: Request, subscription_id: int) -> Response:
        subscription = _own_subscription(request, subscription_id)
        body = ReplayRequest(data=request.data)
        body.is_valid(raise_exception=True)
        replayed = replay_range(
            subscription.pk,
            after=body.validated_data["after"],
            until=body.validated_data.get("until"),
        )
        return Response({"replayed": replayed})
