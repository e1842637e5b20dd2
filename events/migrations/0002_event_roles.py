"""The event feed's roles: the service accounts (the payment systems calling the API) read the
feed and manage their own webhook subscriptions (and replay their deliveries); support sees
the events, subscriptions, deliveries and attempts in the admin and replays deliveries."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Service account": [
        ("events", "view_event"),
        ("events", "view_subscription"),
        ("events", "add_subscription"),
        ("events", "change_subscription"),
        ("events", "delete_subscription"),
        ("events", "replay_delivery"),
    ],
    "Support": [
        ("events", "view_event"),
        ("events", "view_subscription"),
        ("events", "view_delivery"),
        ("events", "view_deliveryattempt"),
        ("events", "replay_delivery"),
    ],
}


def grant_event_roles(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_event_roles(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0001_initial"),
        ("flags", "0010_product_reads_wallets"),
        ("staff", "0005_support_approves_voids"),
    ]

    operations = [migrations.RunPython(grant_event_roles, revoke_event_roles)]
