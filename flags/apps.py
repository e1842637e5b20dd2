from django.apps import AppConfig
from django.db.models.signals import post_save, pre_delete, pre_save


class FlagsConfig(AppConfig):
    """Migration phases on django-waffle, and the audit of every flip."""

    name = "flags"
    verbose_name = "Migration audit"

    def ready(self) -> None:
        # App-loading breaker (a cycle through Django's registry): flags.audit and waffle's
        # model getters need the models that are loaded only once every app is configured.
        from waffle import get_waffle_sample_model, get_waffle_switch_model  # noqa: PLC0415

        from flags.audit import record_change, refuse_deleting, remember_old_value  # noqa: PLC0415

        for model in (get_waffle_switch_model(), get_waffle_sample_model()):
            pre_save.connect(remember_old_value, sender=model, dispatch_uid=f"audit-pre-{model}")
            post_save.connect(record_change, sender=model, dispatch_uid=f"audit-post-{model}")
            pre_delete.connect(refuse_deleting, sender=model, dispatch_uid=f"guard-del-{model}")
