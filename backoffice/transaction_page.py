"""A transaction's one page, whichever store holds it: the authoritative store's record (or
MongoDB's, for one only MongoDB holds, such as a legacy wallet's refused debit in phase 4),
and the registry's technical details when TigerBeetle knows it."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import ModelAdmin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from backoffice.links import void_url, wallet_url, when
from backoffice.selectors import store_roles
from backoffice.templatetags.backoffice import tb_time
from domain import errors
from domain.wallets import TransactionRecord
from flags.phases import current_state
from migration.runtime import process_runtime
from registry.models import WalletTransfer
from registry.transfers import transaction_record


def read_record(transaction_id: str, row: WalletTransfer | None) -> tuple[TransactionRecord, str]:
    """The transaction and the store it was read from: the authoritative store (through the
    wallet service), else MongoDB, else the registry's row. TransactionNotFound when none
    holds it."""
    runtime = process_runtime()
    try:
        record = runtime.wallet_service().get_transaction(transaction_id)
        return record, store_roles(current_state(), record.key.client_id).authoritative
    except errors.TransactionNotFound:
        pass
    try:
        return runtime.mongo.get_transaction(transaction_id), "mongo"
    except (errors.TransactionNotFound, errors.StoreUnavailable):
        if row is None:
            raise
    return transaction_record(row), "registry"


def technical_details(row: WalletTransfer) -> list[tuple[str, str]]:
    """The registry's bookkeeping, for engineers, in words."""
    at = tb_time(row.tb_timestamp)
    if row.needs_copy_back:
        copied = (
            "not yet: written while TigerBeetle was the only store (copied back on a step back)"
        )
    elif row.void_needs_copy_back:
        copied = "the transaction yes; its void not yet (copied back on a step back)"
    else:
        copied = "yes"
    details = [
        ("TigerBeetle transfer id", row.tb_transfer_id_hex),
        ("TigerBeetle time", f"{when(at)} (timestamp {row.tb_timestamp})" if at else "—"),
        ("void's TigerBeetle transfer id", row.void_tb_transfer_id_hex or "—"),
        ("voids refused for funds", str(row.void_attempts)),
        ("copied into MongoDB", copied),
    ]
    if row.failure_code:
        details.append(("failure", row.failure_code))
    return details


def transaction_page(
    admin: ModelAdmin, request: HttpRequest, record: TransactionRecord, store: str
) -> HttpResponse:
    row = (
        WalletTransfer.objects.select_related("wallet")
        .filter(transaction_id=record.transaction_id)
        .first()
    )
    can_void = request.user.has_perm("registry.void_wallettransfer")
    context: dict[str, Any] = {
        **admin.admin_site.each_context(request),
        "opts": admin.opts,
        "title": f"Transaction {record.transaction_id}",
        "record": record,
        "store": store,
        "wallet_url": wallet_url(record.key),
        "known_to_registry": row is not None,
        "failure": record.failure_code.replace("_", " "),
        "technical": technical_details(row) if row else [],
        "void_url": void_url(record.transaction_id, request)
        if can_void and record.state == "posted" and store != "registry"
        else "",
    }
    return render(request, "admin/registry/transaction_record.html", context)
