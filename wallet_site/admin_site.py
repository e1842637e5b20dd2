"""The admin site: Django's, plus the migration's phase page and dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, path


class WalletAdminSite(admin.AdminSite):
    site_header = "Wallet ledger back-office"
    site_title = "Wallet back-office"
    index_title = "Wallets, transactions and the migration"
    index_template = "admin/wallet_index.html"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from ledger import migration_admin

        custom = [
            path(
                "migration/phase/",
                self.admin_view(migration_admin.PhaseView.as_view(site=self)),
                name="migration-phase",
            ),
            path(
                "migration/dashboard/",
                self.admin_view(migration_admin.DashboardView.as_view(site=self)),
                name="migration-dashboard",
            ),
        ]
        return custom + super().get_urls()
