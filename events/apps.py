from django.apps import AppConfig


class EventsConfig(AppConfig):
    """The event feed: an event for every money movement, `/api/events`, signed webhooks."""

    name = "events"
    verbose_name = "Events and webhooks"
