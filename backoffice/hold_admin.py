"""Support's admin of holds: the list of holds (TigerBeetle's registry), a wallet's open holds
on its page (from the store that serves holds in the current phase), and releasing one after a
confirmation, through the wallet service (so the release goes where the phase says, and the
hold records who released it), audited in the admin's history too."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse

from backoffice.admin_base import ReadOnlyAdmin, format_money
from backoffice.links import back_url, wallet_url
from domain import errors
from domain.holds import Hold
from domain.ids import WalletKey
from flags.phases import Phase
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from migration.runtime import process_runtime
from registry.models import WalletHold

RELEASE_PERMISSION = "registry.release_wallethold"


def wallet_open_holds(
    key: WalletKey,
    mongo: MongoWalletStore,
    tigerbeetle: TigerBeetleWalletStore,
    *,
    phase: Phase,
) -> list[Hold]:
    """Selector: the wallet's open holds where they are served: TigerBeetle in phase 4,
    MongoDB before (authoritative in phases 1-3, the mirror carrying each hold's operations)."""
    if phase == Phase.TIGERBEETLE_ONLY:
        return tigerbeetle.open_holds(key)
    return mongo.open_holds(key)


def release_url(hold_id: str, request: HttpRequest) -> str:
    """The release page, which returns to the page the agent is on."""
    base = reverse("admin:registry_wallethold_release", args=[hold_id])
    return f"{base}?{urlencode({'next': request.get_full_path()})}"


def holds_context(request: HttpRequest, key: WalletKey, *, phase: Phase) -> dict[str, Any]:
    """The wallet page's holds section: each open hold with its release link, for those who
    may release; the store's error instead when it does not answer."""
    runtime = process_runtime()
    try:
        holds = wallet_open_holds(key, runtime.mongo, runtime.tigerbeetle, phase=phase)
    except errors.WalletError as exc:
        return {"open_holds": [], "holds_error": exc.message}
    can_release = request.user.has_perm(RELEASE_PERMISSION)  # in every phase (docs/holds.md)
    return {
        "open_holds": [
            {"hold": hold, "release_url": release_url(hold.hold_id, request) if can_release else ""}
            for hold in holds
        ],
        "held_minor": sum(hold.amount_minor for hold in holds),
        "holds_error": "",
    }


@admin.register(WalletHold)
class WalletHoldAdmin(ReadOnlyAdmin):
    list_display = ("hold_id", "wallet", "amount_minor", "state", "expires_at", "made_by")
    list_filter = ("state",)
    search_fields = ("hold_id__exact",)
    search_help_text = (
        "Exact hold id (case-sensitive). Holds placed on MongoDB are on wallets' pages."
    )
    ordering = ("-created_at",)
    list_select_related = ("wallet",)
    actions = ["release_selected"]

    def get_urls(self) -> list[URLPattern]:
        release = path(
            "release/<path:hold_id>/",
            self.admin_site.admin_view(self.release_view),
            name="registry_wallethold_release",
        )
        return [release, *super().get_urls()]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm(RELEASE_PERMISSION):
            actions.pop("release_selected", None)
        return actions

    @admin.action(description="Release the selected hold…")
    def release_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one hold to release.", messages.ERROR)
            return None
        return HttpResponseRedirect(
            reverse("admin:registry_wallethold_release", args=[queryset.get().hold_id])
        )

    def release_view(self, request: HttpRequest, hold_id: str) -> HttpResponse:
        """Confirmation, then the release through the wallet service (the phase's store)."""
        if not request.user.has_perm(RELEASE_PERMISSION):
            raise PermissionDenied
        service = process_runtime().wallet_service()
        try:
            hold = service.get_hold(hold_id)
        except errors.WalletError as exc:
            self.message_user(request, f"Cannot release {hold_id!r}: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(back_url(request))
        back = back_url(request, wallet_url(hold.key))
        if request.method == "POST":
            try:
                result = service.release_hold(hold_id, made_by=request.user.get_username())
            except errors.WalletError as exc:
                self.message_user(request, f"Not released: {exc.message}", messages.ERROR)
            else:
                self._log_release(request, hold_id)
                after = result.balance
                self.message_user(
                    request,
                    f"Released hold {hold_id}. Wallet {after.key.describe()} now has "
                    f"{format_money(after.credit_minor, after.key.currency)} available.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(back)
        return render(
            request,
            "admin/registry/hold_release_confirm.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Release hold {hold_id}",
                "hold": hold,
                "back": back,
                "wallet_url": wallet_url(hold.key),
            },
        )

    def _log_release(self, request: HttpRequest, hold_id: str) -> None:
        """Django's admin history gets the release too, beside the hold's own record of it
        (resolved_by, resolved_at)."""
        row = WalletHold.objects.filter(hold_id=hold_id).first()
        assert request.user.pk is not None  # a staff view: the user is signed in
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(WalletHold),
            object_id=str(row.pk) if row else hold_id,
            object_repr=f"hold {hold_id}"[:200],
            action_flag=CHANGE,
            change_message="Released",
        )
