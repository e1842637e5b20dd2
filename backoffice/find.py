"""Support's one search box over both stores."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from backoffice.links import transaction_url, void_url, wallet_url
from backoffice.selectors import find
from migration.runtime import process_runtime


def find_view(request: HttpRequest) -> HttpResponse:
    """One search box: wallets by client id or TigerBeetle account id, transactions by
    transaction id or TigerBeetle transfer id, in both stores, in any phase. A single hit
    opens it directly."""
    user = request.user
    if not (
        user.has_perm("registry.view_walletaccount")
        or user.has_perm("registry.view_wallettransfer")
    ):
        raise PermissionDenied
    query = request.GET.get("q", "").strip()
    found = find(query, process_runtime().mongo)
    wallets: list[dict[str, Any]] = [
        {"hit": hit, "url": wallet_url(hit.key)} for hit in found.wallets
    ]
    can_void = user.has_perm("registry.void_wallettransfer")
    transactions: list[dict[str, Any]] = [
        {
            "hit": hit,
            "url": transaction_url(hit.transaction_id, hit.registry_pk),
            "void_url": void_url(hit.transaction_id, request)
            if can_void and hit.state == "posted"
            else "",
        }
        for hit in found.transactions
    ]
    if len(wallets) + len(transactions) == 1 and not found.notes:
        return HttpResponseRedirect((wallets or transactions)[0]["url"])
    return render(
        request,
        "admin/find.html",
        {
            **admin.site.each_context(request),
            "title": f"Find {query!r}" if query else "Find",
            "find_query": query,
            "found": found,
            "wallets": wallets,
            "transactions": transactions,
        },
    )
