"""The Celery app; eager (in-process) unless CELERY_BROKER_URL is set."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

app = Celery("wallet_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
