"""Where the back-office's pages are: a wallet (by registry row, or by key for a wallet only
MongoDB holds), a transaction, its void page (returning to the page the agent is on), the
lists of cases that keep a step's criterion from holding."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme

from domain.ids import WalletKey
from migration import criteria
from registry import accounts as account_registry


def wallet_url(key: WalletKey) -> str:
    """A wallet's page: by its registry row when TigerBeetle knows it, else by its key (a
    wallet only MongoDB holds)."""
    registered = account_registry.find_account(key)
    if registered is not None:
        return reverse("admin:registry_walletaccount_change", args=[registered.registry_pk])
    return f"{reverse('admin:registry_walletaccount_by_key')}?{urlencode(key_params(key))}"


def key_params(key: WalletKey) -> dict[str, str]:
    """A wallet's key as a query string's (or a form's) parameters: `WalletKey.from_mapping`
    reads them back."""
    return key.as_columns()


def transaction_url(transaction_id: str, registry_pk: int | None = None) -> str:
    if registry_pk is not None:
        return reverse("admin:registry_wallettransfer_change", args=[registry_pk])
    return reverse("admin:registry_wallettransfer_record", args=[transaction_id])


def void_url(transaction_id: str, request: HttpRequest) -> str:
    """The void page, which returns to the page the agent is on."""
    base = reverse("admin:registry_wallettransfer_void", args=[transaction_id])
    return f"{base}?{urlencode({'next': request.get_full_path()})}"


def back_url(request: HttpRequest, default: str = "") -> str:
    """Where the person came from (a `next` parameter, else the Referer), if it is ours."""
    for candidate in (request.GET.get("next"), request.POST.get("next"), _referer(request)):
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
    return default or reverse("admin:index")


def case_list_url(cases: str) -> str:
    """The admin list that shows a criterion's blocking cases, by the name the criterion
    gives it (`migration.criteria.CASES_*`)."""
    if cases == criteria.CASES_SHADOW_MISMATCHES:
        shadow = reverse("admin:migration_shadowcomparison_changelist")
        return f"{shadow}?outcome__exact=mismatch"
    changelists = {
        criteria.CASES_SHADOW_COMPARISONS: "admin:migration_shadowcomparison_changelist",
        criteria.CASES_LEGACY: "admin:migration_acknowledgedlegacycase_changelist",
        criteria.CASES_MISMATCHES: "admin:migration_reconciliationmismatch_changelist",
        criteria.CASES_RUNS: "admin:migration_reconciliationrun_changelist",
        criteria.CASES_MILESTONES: "admin:flags_milestone_changelist",
    }
    return reverse(changelists[cases])


def _referer(request: HttpRequest) -> str:
    referer = request.META.get("HTTP_REFERER", "")
    host = f"//{request.get_host()}"
    return referer.split(host, 1)[1] if host in referer else ""


def when(moment: datetime | None) -> str:
    """A time as every page shows it (the one format, with its zone: wallet_site/formats);
    "" for none."""
    if moment is None:
        return ""
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")
