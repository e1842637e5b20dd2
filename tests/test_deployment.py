"""Deployment and exposure: the README's production environment passes `check --deploy`,
DEBUG is off unless asked for, /metrics answers only its scraper, the schema is not open to
anonymous callers by default, and service accounts get tokens from a command or the admin."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.roles import SERVICE_ACCOUNT, role
from tests.second_factor import signed_in_with_second_factor

ROOT = Path(__file__).resolve().parent.parent
# Variables the settings read that must not leak from the test run into a production check.
_OWN_PREFIXES = ("DJANGO_", "API_", "METRICS_", "DATABASE_", "REDIS_", "CELERY_", "MONGO_", "TB_")


def documented_production_environment() -> dict[str, str]:
    """The README's "Production environment" block, placeholders filled with random values."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Production environment", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the README's production environment block is missing"
    environment = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        if value.startswith("<"):
            value = secrets.token_urlsafe(50)
        environment[name.strip()] = value.strip()
    return environment


def run_settings(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_no_issue_under_the_documented_production_environment() -> None:
    environment = documented_production_environment()
    assert "DJANGO_DEBUG" not in environment and "DJANGO_HTTPS" not in environment

    result = run_settings(environment, "manage.py", "check", "--deploy", "--fail-level", "DEBUG")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_debug_is_off_and_https_hardening_on_when_the_environment_says_nothing() -> None:
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    environment = {"DJANGO_SETTINGS_MODULE": "wallet_site.settings"}

    result = run_settings(environment, "-c", probe)

    assert result.stdout.split() == ["False", "True", "True", "31536000"], result.stderr


def test_make_run_asks_for_debug() -> None:
    makefile = (ROOT / "Makefile").read_text()

    run_recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]

    assert "DJANGO_DEBUG=$${DJANGO_DEBUG:-true}" in run_recipe and "rundev" in run_recipe


@pytest.mark.django_db
def test_metrics_without_the_scrapers_token_are_refused(settings: Any) -> None:
    settings.METRICS_BEARER_TOKEN = "scraper-secret"

    anonymous = Client().get("/metrics")
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-secret")

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert b"wallet_" not in anonymous.content + wrong.content


@pytest.mark.django_db
def test_metrics_answer_the_scrapers_bearer_token(settings: Any) -> None:
    settings.METRICS_BEARER_TOKEN = "scraper-secret"

    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scraper-secret")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.django_db
def test_metrics_answer_no_one_when_no_scraper_token_is_set(settings: Any) -> None:
    settings.METRICS_BEARER_TOKEN = ""

    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 403


@pytest.mark.django_db
def test_the_schema_is_closed_to_anonymous_callers_by_default() -> None:
    for url in ("/api/schema/", "/api/schema/ui/"):
        assert APIClient().get(url).status_code == 401


@pytest.mark.django_db
def test_an_admin_session_may_read_the_schema() -> None:
    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("root", password="pw-x"))

    assert browser.get("/api/schema/").status_code == 200


def token_from(output: str) -> str:
    return output.strip().splitlines()[-1]


def api_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.mark.django_db
def test_create_service_account_prints_a_token_that_may_read_and_credit_but_not_void() -> None:
    role(SERVICE_ACCOUNT)
    out = StringIO()

    call_command("create_service_account", "payments-gateway", stdout=out)

    user = get_user_model().objects.get(username="payments-gateway")
    assert not user.has_usable_password() and not user.is_staff
    assert user.has_perms(["registry.read_wallets", "registry.credit_wallets"])
    assert not user.has_perm("registry.void_wallettransfer")
    token = token_from(out.getvalue())
    assert api_with(token).get("/api/ping").json() == {"user": "payments-gateway"}
    assert AuthToken.objects.get(user=user).expiry is not None


@pytest.mark.django_db
def test_create_service_account_rotates_with_revoke_others() -> None:
    role(SERVICE_ACCOUNT)
    first, second = StringIO(), StringIO()
    call_command("create_service_account", "payments-gateway", stdout=first)

    call_command("create_service_account", "payments-gateway", "--revoke-others", stdout=second)

    assert api_with(token_from(first.getvalue())).get("/api/ping").status_code == 401
    assert api_with(token_from(second.getvalue())).get("/api/ping").status_code == 200


@pytest.mark.django_db
def test_create_service_account_refuses_to_hand_a_token_to_a_staff_user() -> None:
    role(SERVICE_ACCOUNT)
    get_user_model().objects.create_user("alice", is_staff=True)

    with pytest.raises(CommandError, match="not a service account"):
        call_command("create_service_account", "alice", stdout=StringIO())
    assert not AuthToken.objects.exists()


@pytest.mark.django_db
def test_the_admin_creates_a_token_and_shows_it_once() -> None:
    account = get_user_model().objects.create_user("batch-job")
    account.groups.add(role(SERVICE_ACCOUNT))
    browser = signed_in_with_second_factor(
        Client(), get_user_model().objects.create_superuser("root", password="pw-x")
    )

    response = browser.post(
        "/admin/knox/authtoken/add/", {"user": account.pk, "expiry": ""}, follow=True
    )

    shown = [str(m) for m in response.context["messages"] if str(m).startswith("TOKEN ")]
    assert len(shown) == 1
    token = shown[0].removeprefix("TOKEN ")
    assert api_with(token).get("/api/ping").json() == {"user": "batch-job"}
    assert token not in browser.get("/admin/knox/authtoken/").content.decode()


def test_a_gunicorn_worker_freezes_its_start_up_and_collects_young_objects_less_often() -> None:
    """A worker runs the config's post_fork hook: checked in a child process, since the
    collector's settings are the whole process's."""
    script = (
        "import gc, runpy; conf = runpy.run_path('gunicorn.conf.py'); "
        "conf['post_fork'](None, None); "
        "print(gc.get_threshold() == conf['GC_THRESHOLDS'], gc.get_freeze_count() > 0)"
    )
    answer = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["True", "True"]
