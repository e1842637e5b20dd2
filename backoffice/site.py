"""The admin site: Django's, plus the migration's phase page and dashboard, one search box for
support, the index grouped by who uses it, and a 403 page inside the admin frame."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, path
from django.views import defaults

from backoffice import blocker_views, pages
from backoffice.find import find_view
from backoffice.links import back_url

# The index's groups, named for the people who use them: (group, models as app_label.Model).
GROUPS = [
    ("Alerts: money may be wrong", ["migration.Alert"]),
    (
        "Support: wallets and transactions",
        ["registry.WalletAccount", "registry.WalletTransfer", "registry.WalletHold"],
    ),
    (
        "Support: reconciliation",
        [
            "migration.ReconciliationMismatch",
            "migration.ReconciliationRun",
            "migration.AcknowledgedLegacyCase",
            "migration.BlockerAction",
        ],
    ),
    (
        "Product: migration records",
        [
            "migration.ShadowComparison",
            "migration.GuardCheck",
            "flags.FlagChange",
            "flags.Milestone",
        ],
    ),
    ("Product: feature flags", ["waffle.Switch", "waffle.Sample", "waffle.Flag"]),
]
OTHERS = "Administration"


class WalletAdminSite(admin.AdminSite):
    site_header = "Wallet ledger back-office"
    site_title = "Wallet back-office"
    index_title = "Wallets, transactions and the migration"
    index_template = "admin/wallet_index.html"
    site_url = None  # there is no public site: no "View site" link to a 404
    enable_nav_sidebar = False  # the lists need the 1280 px

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        """The index groups models by the people who use them, not by Django app."""
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps
        models = {
            f"{app['app_label']}.{model['object_name']}": (app, model)
            for app in apps
            for model in app["models"]
        }
        grouped = []
        for name, wanted in GROUPS:
            found = [models.pop(model)[1] for model in wanted if model in models]
            if found:
                grouped.append(_group(name, found))
        if models:
            grouped.append(_group(OTHERS, [model for _, model in models.values()]))
        return grouped

    def get_urls(self) -> list[URLResolver | URLPattern]:
        custom = [
            path(
                "migration/phase/",
                self.admin_view(pages.PhaseView.as_view(site=self)),
                name="migration-phase",
            ),
            path(
                "migration/dashboard/",
                self.admin_view(pages.DashboardView.as_view(site=self)),
                name="migration-dashboard",
            ),
            path("find/", self.admin_view(find_view), name="find"),
            path(
                "migration/blockers/requeue-parked/",
                self.admin_view(blocker_views.requeue_parked_view),
                name="migration-requeue-parked",
            ),
            path(
                "migration/blockers/reconcile/",
                self.admin_view(blocker_views.reconcile_view),
                name="migration-reconcile-now",
            ),
            path(
                "migration/blockers/recheck-mismatched/",
                self.admin_view(blocker_views.recheck_mismatched_view),
                name="migration-recheck-mismatched",
            ),
        ]
        return custom + super().get_urls()


def _group(name: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "app_label": name.split(":")[0].lower(),
        "app_url": "",
        "has_module_perms": True,
        "models": models,
    }


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """403 inside the admin frame for staff, with the way back; Django's plain one elsewhere.
    Django calls its handler403 with the exception that refused the request, always."""
    user = getattr(request, "user", None)
    if not (request.path.startswith("/admin/") and user is not None and user.is_staff):
        return defaults.permission_denied(request, exception)
    context = {
        **admin.site.each_context(request),
        "title": "Not allowed",
        "back": back_url(request),
        "reason": str(exception) if exception and str(exception) else "",
    }
    return render(request, "admin/403.html", context, status=403)


# The back-office's icon: a wallet in the admin's blue, served as /favicon.ico (browsers ask
# for it on every page; Chromium takes an SVG there).
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect x="1" y="3" width="14" height="11" rx="2" fill="#417690"/>'
    '<rect x="9" y="7" width="6" height="3" rx="1" fill="#f5dd5d"/></svg>'
)
FAVICON_MAX_AGE_S = 86_400


def favicon(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(FAVICON_SVG, content_type="image/svg+xml")
    response["Cache-Control"] = f"public, max-age={FAVICON_MAX_AGE_S}"
    return response
