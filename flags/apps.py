from django.apps import AppConfig


class FlagsConfig(AppConfig):
    """Migration phases on django-waffle, and the audit of every flip."""

    name = "flags"
