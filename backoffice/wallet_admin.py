"""Support staff's admin: find a client's wallets, see both stores side by side, void."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.options import Options
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from backoffice.admin_base import (
    CachedValuesFilter,
    ReadOnlyAdmin,
    cached_filter_choices,
    row_count,
)
from backoffice.blockers import recheck_wallet
from backoffice.history_chart import wallet_history_chart
from backoffice.hold_admin import holds_context
from backoffice.links import back_url, key_params, transaction_url, void_url, wallet_url
from backoffice.selectors import (
    VOID_EFFECT,
    WalletHit,
    WalletOverview,
    find,
    wallet_overview,
)
from backoffice.statement_admin import VIEW_STATEMENT, statement_url, statement_view
from domain import errors
from domain.history import HOLD_EVENTS
from domain.ids import WalletKey
from flags.phases import current_state
from migration.models import ReconciliationMismatch
from migration.runtime import process_runtime
from registry import accounts as account_registry
from registry.models import WalletAccount

# The wallets MongoDB holds that the registry does not: the first read, the first shown.
UNREGISTERED_SCAN_WALLETS = 200
UNREGISTERED_SHOWN = 50


def _int_param(request: HttpRequest, name: str, default: int) -> int:
    try:
        return max(0, int(request.GET.get(name, default)))
    except ValueError:
        return default


def _with_params(request: HttpRequest, **changes: int) -> str:
    params = request.GET.copy()
    for name, value in changes.items():
        if value:
            params[name] = str(value)
        else:
            params.pop(name, None)
    return f"{request.path}?{params.urlencode()}" if params else request.path


def _transactions_url(key: WalletKey) -> str:
    """The transactions list of this wallet ("" for a wallet TigerBeetle does not know: the
    transactions list is TigerBeetle's registry)."""
    registered = account_registry.find_account(key)
    if registered is None:
        return ""
    changelist = reverse("admin:registry_wallettransfer_changelist")
    return f"{changelist}?wallet__id__exact={registered.registry_pk}"


def _mismatches_url(key: WalletKey) -> str:
    changelist = reverse("admin:migration_reconciliationmismatch_changelist")
    params = {
        "client_id": key.client_id,
        "country": key.country,
        "currency": key.currency,
        "status": "all",
    }
    return f"{changelist}?{urlencode(params)}"


def _line_links(request: HttpRequest, overview: WalletOverview) -> dict[str, list[Any]]:
    """Each line of both stores with its transaction page and, when voidable by this
    person, its Void link: in the authoritative store's table only, one per transaction."""
    can_void = request.user.has_perm("registry.void_wallettransfer")
    first = overview.roles.order[0] if overview.roles else "mongo"

    def void_link(transaction_id: str, voidable: bool, store: str) -> str:
        if not (can_void and voidable and store == first):
            return ""
        return void_url(transaction_id, request)

    return {
        "log_lines": [
            {
                "line": line,
                # A hold event's line names its hold, which has no transaction page.
                "url": "" if line.kind in HOLD_EVENTS else transaction_url(line.transaction_id),
                "void_url": void_link(line.transaction_id, line.voidable, "mongo"),
            }
            for line in overview.log_lines
        ],
        "ledger_lines": [
            {
                "line": line,
                "url": transaction_url(line.transaction_id, line.registry_pk)
                if line.registry_pk
                else "",
                "void_url": void_link(line.transaction_id, line.voidable, "tigerbeetle"),
            }
            for line in overview.ledger_lines
        ],
    }


def _pager_links(request: HttpRequest, overview: WalletOverview) -> dict[str, str]:
    """Newer/older pages of the MongoDB log (page numbers) and of TigerBeetle's transfers
    (timestamp cursor); "" where there is none."""
    return {
        "log_newer": _with_params(request, log_page=overview.log_page - 1)
        if overview.log_page > 1
        else "",
        "log_older": _with_params(request, log_page=overview.log_page + 1)
        if overview.log_has_more
        else "",
        "tb_newest": _with_params(request, tb_before=0) if overview.tb_before else "",
        "tb_older": _with_params(request, tb_before=overview.tb_next_before)
        if overview.tb_next_before
        else "",
    }


def _has_open_balance_mismatch(key: WalletKey) -> bool:
    return ReconciliationMismatch.objects.filter(
        **key.as_columns(),
        kind__in=ReconciliationMismatch.BALANCE_KINDS,
        resolved_at__isnull=True,
    ).exists()


def _unregistered_mongo_wallets() -> tuple[list[WalletHit], int | None]:
    """The first of MongoDB's wallets that TigerBeetle's registry does not list (all of them
    in phase 0, legacy wallets before the backfill) and how many wallets MongoDB holds; none
    read when the registry lists as many wallets as MongoDB holds (both counts from metadata
    on large tables, as the list's own: a COUNT(*) of the registry on every load would read
    every row)."""
    legacy = process_runtime().legacy
    try:
        total = legacy.wallet_count()
        if total <= row_count(WalletAccount.objects.all()):
            return [], total
        batch = next(legacy.wallet_batches(UNREGISTERED_SCAN_WALLETS), [])
    except errors.StoreUnavailable:
        return [], None
    keys = [snapshot.balance.key for snapshot in batch]
    registered = {
        row.key for row in WalletAccount.objects.filter(client_id__in={k.client_id for k in keys})
    }
    hits = [
        WalletHit(snapshot.balance.key, None, True, snapshot.balance)
        for snapshot in batch
        if snapshot.balance.key not in registered
    ]
    return sorted(hits, key=lambda hit: hit.key.sort_key())[:UNREGISTERED_SHOWN], total


class IssuerFilter(admin.SimpleListFilter):
    title = "issuer"
    parameter_name = "issuer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        issuers = cached_filter_choices(
            "registry.walletaccount.issuer",
            lambda: list(
                WalletAccount.objects.values_list("issuer", flat=True).distinct().order_by("issuer")
            ),
        )
        return [("-", "(none)")] + [(i, i) for i in issuers if i]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(issuer="" if value == "-" else value)


@admin.register(WalletAccount)
class WalletAccountAdmin(ReadOnlyAdmin):
    list_display = (*WalletKey.FIELDS, "created_at")
    list_filter = (("currency", CachedValuesFilter), ("country", CachedValuesFilter), IssuerFilter)
    # Exact, through the wallet-key index ("=client_id" is iexact: UPPER() on every row).
    search_fields = ("client_id__exact",)
    search_help_text = "Exact client id (case-sensitive). MongoDB-only wallets are listed too."
    ordering = ("client_id", "currency", "country")
    list_per_page = 50
    # ModelAdmin's own "no such object" redirect: private, so django-stubs leave it out; its
    # type, declared here, lets change_view call it as Django's change_view does.
    _get_obj_does_not_exist_redirect: Callable[[HttpRequest, Options[Any], str], HttpResponse]

    def get_urls(self) -> list[URLPattern]:
        by_key = path(
            "key/",
            self.admin_site.admin_view(self.key_view),
            name="registry_walletaccount_by_key",
        )
        recheck = path(
            "recheck/",
            self.admin_site.admin_view(self.recheck_view),
            name="registry_walletaccount_recheck",
        )
        statement = path(
            "statement/",
            self.admin_site.admin_view(self.statement_view),
            name="registry_walletaccount_statement",
        )
        return [by_key, recheck, statement, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The registry's wallets, and for a search, the wallets only MongoDB holds (legacy
        wallets before the backfill)."""
        query = request.GET.get("q", "").strip()
        if query:
            hits = find(query, process_runtime().mongo).wallets
            mongo_only, mongo_total = [hit for hit in hits if hit.registry_pk is None], None
        else:
            mongo_only, mongo_total = _unregistered_mongo_wallets()
            for field in ("currency", "country"):  # the list's own filters apply to them too
                wanted = request.GET.get(f"{field}__exact")
                mongo_only = [
                    hit for hit in mongo_only if not wanted or getattr(hit.key, field) == wanted
                ]
        return super().changelist_view(
            request,
            {
                **(extra_context or {}),
                "mongo_only_wallets": [
                    {"hit": hit, "url": wallet_url(hit.key)} for hit in mongo_only
                ],
                "mongo_total": mongo_total,
                "query": query,
            },
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """A wallet's page: both stores' balances, TigerBeetle's transfers and history, the
        MongoDB transaction log."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        wallet = self.get_object(request, object_id)
        if wallet is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return self._wallet_page(request, wallet.key)

    def key_view(self, request: HttpRequest) -> HttpResponse:
        """The same page for a wallet by its key (one only MongoDB holds has no registry row)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            key = WalletKey.from_mapping(request.GET)
        except KeyError as exc:
            raise Http404("A wallet is named by client_id, country and currency.") from exc
        return self._wallet_page(request, key)

    def _wallet_page(self, request: HttpRequest, key: WalletKey) -> HttpResponse:
        state = current_state()
        runtime = process_runtime()
        overview = wallet_overview(
            key,
            runtime.mongo,
            runtime.tigerbeetle,
            state=state,
            log_page=_int_param(request, "log_page", 1),
            tb_before=_int_param(request, "tb_before", 0),
        )
        return TemplateResponse(
            request,
            "admin/registry/wallet_overview.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Wallet {key.describe()}",
                "key": key,
                "overview": overview,
                "void_effect": VOID_EFFECT,
                "history_chart": wallet_history_chart(runtime.wallet_service(), key),
                **_line_links(request, overview),
                **_pager_links(request, overview),
                "transactions_url": _transactions_url(key),
                "mismatches_url": _mismatches_url(key),
                # In every phase where both stores hold the wallet (or a case says they differ).
                "can_recheck": request.user.has_perm("migration.recheck_wallet")
                and (overview.both_stores_hold_it or _has_open_balance_mismatch(key)),
                "recheck_params": key_params(key),
                "can_requeue": request.user.has_perm("migration.requeue_parked_entries")
                and overview.waiting is not None
                and overview.waiting.parked > 0,
                "find_query": key.client_id,
                "statement_url": statement_url(key)
                if request.user.has_perm(VIEW_STATEMENT)
                else "",
                **holds_context(request, key, phase=state.phase),
            },
        )

    def statement_view(self, request: HttpRequest) -> HttpResponse:
        """A wallet's statement for a period, as a page or a CSV download."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        return statement_view(request, context)

    def recheck_view(self, request: HttpRequest) -> HttpResponse:
        """Re-check one wallet in both stores now, from its page; back to the page."""
        if request.method != "POST" or not request.user.has_perm("migration.recheck_wallet"):
            raise PermissionDenied
        try:
            key = WalletKey.from_mapping(request.POST)
        except KeyError as exc:
            raise Http404("A wallet is named by client_id, country and currency.") from exc
        agree, message = recheck_wallet(key, request.user.get_username())
        self.message_user(request, message, messages.SUCCESS if agree else messages.WARNING)
        return HttpResponseRedirect(back_url(request, wallet_url(key)))
