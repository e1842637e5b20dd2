"""The event feed's tables: events, subscriptions, their deliveries and every attempt.

An event is one money movement (docs/events.md): its `event_id` is derived from what moved
and how (`IdSpace.event_id`), unique here, so the collector inserts a movement once whichever
store's change record it read it from; its `id` (an auto-increment) is the feed's cursor
(`GET /api/events?after=`). A delivery is one event owed to one subscription; it is
delivered in order per wallet and subscription, retried on a schedule, then failed; each HTTP
try is an attempt.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    POSTED = "posted"  # a credit or a debit posted
    REFUSED = "refused"  # a debit refused for funds
    VOIDED = "voided"  # a credit or debit voided (its compensating entry)
    HELD = "held"  # a hold placed
    CAPTURED = "captured"  # a hold captured (amount: what was captured)
    RELEASED = "released"  # a hold released (amount: the hold's)
    EXPIRED = "expired"  # a hold expired (amount: the hold's)
    CROSSED = "crossed"  # a balance monitor's line crossed (amount: the line; events/monitors.py)


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)  # the feed's cursor
    event_id = models.CharField(max_length=32, unique=True)
    type = models.CharField(max_length=8, choices=EventType.choices)
    reference_id = models.CharField(
        max_length=128, help_text="the credit's or debit's id (also of a void), or the hold's id"
    )
    transaction_kind = models.CharField(
        max_length=6, blank=True, default="", help_text="credit or debit; '' for a hold event"
    )
    wallet_ref = models.CharField(max_length=32, help_text="the wallet's id in the feed")
    client_id = models.CharField(max_length=128)
    country = models.CharField(max_length=3)
    currency = models.CharField(max_length=3)
    issuer = models.CharField(max_length=128, blank=True, default="")
    amount_minor = models.BigIntegerField()
    # The wallet's balance right after the movement (null: a refused debit, which changed
    # nothing, and a hold TigerBeetle's own timeout expired).
    available_minor = models.BigIntegerField(null=True, blank=True)
    held_minor = models.BigIntegerField(null=True, blank=True)
    debit_minor = models.BigIntegerField(null=True, blank=True)
    historical_credit_minor = models.BigIntegerField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True, default="")
    occurred_at = models.DateTimeField(help_text="the original write's time")
    collected_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=11, help_text="mongodb or tigerbeetle")
    # A `crossed` event's monitor, the side of its line the balance crossed to and the
    # movement's event that crossed it ('' and null on a movement's event).
    monitor = models.ForeignKey(
        "BalanceMonitor",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="firings",
    )
    crossed_to = models.CharField(max_length=5, blank=True, default="")
    caused_by = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["wallet_ref", "id"], name="event_wallet_cursor"),
            models.Index(fields=["type", "id"], name="event_type_cursor"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="event_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    type__in=[
                        "posted",
                        "refused",
                        "voided",
                        "held",
                        "captured",
                        "released",
                        "expired",
                        "crossed",
                    ]
                ),
                name="event_type_known",
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.id} {self.type} {self.reference_id}"


class Subscription(models.Model):
    """A webhook: events of its types (none listed: every type) POSTed to its URL, signed
    with its secret (docs/events.md, "Signature")."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="event_subscriptions"
    )
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128)
    event_types = models.JSONField(default=list, blank=True, help_text="empty: every type")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [("replay_delivery", "Can replay webhook deliveries")]

    def __str__(self) -> str:
        return f"subscription {self.pk} -> {self.url}"

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class Delivery(models.Model):
    """One event owed to one subscription."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # every attempt of the schedule failed

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="deliveries")
    wallet_ref = models.CharField(max_length=32)  # the event's: the order is per wallet
    state = models.CharField(max_length=9, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event"], name="one_delivery_per_event"
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["pending", "delivered", "failed"]),
                name="delivery_state_known",
            ),
        ]
        indexes = [
            models.Index(
                fields=["state", "subscription", "wallet_ref", "event"], name="delivery_due"
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of event {self.event_id} ({self.state})"


class DeliveryAttempt(models.Model):
    """One HTTP try of a delivery, as support sees it in the admin."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tries")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)  # null: no answer
    error = models.CharField(max_length=300, blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    succeeded = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"attempt {self.pk} of delivery {self.delivery_id}"


class BalanceMonitor(models.Model):
    """A rule on the available balance (`credit`) of one wallet or of every wallet of a
    currency: `below` fires when it goes under the line, `above` when it goes over it. It
    fires once per crossing, a `crossed` event, and re-arms when the balance is back on its
    side of the line (events/monitors.py, docs/events.md "Balance monitors")."""

    class Direction(models.TextChoices):
        BELOW = "below"
        ABOVE = "above"

    name = models.CharField(max_length=100, blank=True, default="")
    currency = models.CharField(max_length=3)
    # One wallet (its key, with the currency above), or '' for every wallet of the currency.
    client_id = models.CharField(max_length=128, blank=True, default="")
    country = models.CharField(max_length=3, blank=True, default="")
    issuer = models.CharField(max_length=128, blank=True, default="")
    direction = models.CharField(max_length=5, choices=Direction.choices)
    threshold_minor = models.BigIntegerField(help_text="the line, in the currency's minor units")
    active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(threshold_minor__gt=0), name="monitor_threshold_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(direction__in=["below", "above"]),
                name="monitor_direction_known",
            ),
            models.CheckConstraint(
                condition=models.Q(client_id="") | ~models.Q(country=""),
                name="monitor_wallet_has_country",
            ),
        ]
        indexes = [models.Index(fields=["currency", "active"], name="monitor_currency")]

    def __str__(self) -> str:
        scope = self.client_id or f"every {self.currency} wallet"
        return f"monitor {self.pk}: {scope} {self.direction} {self.threshold_minor}"

    @property
    def currency_wide(self) -> bool:
        return not self.client_id

    def watches(self, *, client_id: str, country: str, currency: str, issuer: str) -> bool:
        if currency != self.currency:
            return False
        if self.currency_wide:
            return True
        return (client_id, country, issuer) == (self.client_id, self.country, self.issuer)

    def beyond(self, available_minor: int) -> bool:
        """Whether a balance is on the far side of the line (the side that fires)."""
        if self.direction == self.Direction.BELOW:
            return available_minor < self.threshold_minor
        return available_minor > self.threshold_minor


class MonitorState(models.Model):
    """One monitor on one wallet: fired (the balance it last saw was beyond the line) or
    armed; written in the collector's transaction with the events that changed it."""

    monitor = models.ForeignKey(BalanceMonitor, on_delete=models.CASCADE, related_name="states")
    wallet_ref = models.CharField(max_length=32)
    client_id = models.CharField(max_length=128)
    fired = models.BooleanField(default=False)
    available_minor = models.BigIntegerField(help_text="the balance it last saw")
    last_event_id = models.CharField(max_length=32, help_text="the event of that balance")
    firings = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["monitor", "wallet_ref"], name="one_state_per_wallet")
        ]

    def __str__(self) -> str:
        return (
            f"monitor {self.monitor_id} on {self.client_id}: {'fired' if self.fired else 'armed'}"
        )
