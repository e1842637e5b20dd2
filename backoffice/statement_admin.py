"""A wallet's statement in the admin: support opens it from the wallet page, reads the opening
and closing balances and every transaction and hold event between them, and downloads the
same statement as CSV (the API's, `ledger.statements`).

The statement comes from the wallet service (`WalletService.get_statement`), routed by the
phase as every balance read is, so support sees what a client's statement says. It needs
`registry.view_statement` (the Support group holds it); the period is the API's rule, and a
refused period is shown on the page with its reason, not raised.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from backoffice.links import key_params, wallet_url
from domain import errors
from domain.ids import WalletKey
from domain.statements import STATEMENT_SPAN_MAX_DAYS, Statement
from ledger.statements import statement_csv, statement_filename
from migration.runtime import process_runtime

VIEW_STATEMENT = "registry.view_statement"
DEFAULT_PERIOD_DAYS = 30


def statement_url(key: WalletKey, **period: str) -> str:
    """The statement page of a wallet (the default period unless `from`/`to` are given)."""
    query = {**key_params(key), **period}
    return f"{reverse('admin:registry_walletaccount_statement')}?{urlencode(query)}"


def _default_period(now: datetime) -> tuple[str, str]:
    """The last DEFAULT_PERIOD_DAYS whole days and today, in UTC."""
    tomorrow = (now.astimezone(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    start = tomorrow - timedelta(days=DEFAULT_PERIOD_DAYS + 1)
    return _iso(start), _iso(tomorrow)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def statement_view(request: HttpRequest, admin_context: dict[str, Any]) -> HttpResponse:
    """The statement page (`?format=csv`: the CSV download) of the wallet the query names."""
    if not request.user.has_perm(VIEW_STATEMENT):
        raise PermissionDenied
    try:
        key = WalletKey.from_mapping(request.GET)
    except KeyError as exc:
        raise Http404("A wallet is named by client_id, country and currency.") from exc
    default_from, default_to = _default_period(datetime.now(UTC))
    from_text = request.GET.get("from") or default_from
    to_text = request.GET.get("to") or default_to
    statement: Statement | None = None
    refusal = ""
    try:
        statement = (
            process_runtime()
            .wallet_service()
            .get_statement(
                client_id=key.client_id,
                country=key.country,
                currency=key.currency,
                issuer=key.issuer,
                from_time=from_text,
                to_time=to_text,
            )
        )
    except errors.WalletError as exc:  # a refused period, no such wallet, a store down
        refusal = exc.message
    if statement is not None and request.GET.get("format") == "csv":
        response = HttpResponse(statement_csv(statement), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{statement_filename(statement)}"'
        return response
    csv_query = {**key_params(key), "from": from_text, "to": to_text, "format": "csv"}
    return TemplateResponse(
        request,
        "admin/registry/wallet_statement.html",
        {
            **admin_context,
            "title": f"Statement of wallet {key.describe()}",
            "key": key,
            "key_params": key_params(key),
            "statement": statement,
            "refusal": refusal,
            "from_text": from_text,
            "to_text": to_text,
            "span_max_days": STATEMENT_SPAN_MAX_DAYS,
            "wallet_url": wallet_url(key),
            "csv_url": f"{reverse('admin:registry_walletaccount_statement')}?"
            f"{urlencode(csv_query)}",
        },
    )
