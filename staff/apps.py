from django.apps import AppConfig


class StaffConfig(AppConfig):
    """Staff accounts (issue 27): lockout after failed sign-ins, idle sessions ended, the
    sign-in audit. Hooks into Django's auth signals and django-axes; owns the audit records."""

    default = True
    name = "staff"
    verbose_name = "Staff accounts"

    def ready(self) -> None:
        # Connects the audit's signal receivers (Django's documented place to do it).
        from staff import audit  # noqa: F401, PLC0415
