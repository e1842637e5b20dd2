"""Support staff's admin of transactions: the list, a transaction's page, voiding with a reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from backoffice.admin_base import (
    CsvExportMixin,
    ReadOnlyAdmin,
    format_money,
    wallet_key_csv_columns,
)
from backoffice.links import back_url, void_url, wallet_url, when
from backoffice.selectors import (
    BALANCE_WORDS,
    VOID_EFFECT,
    tigerbeetle_id_hex,
)
from backoffice.transaction_page import read_record, transaction_page
from domain import errors
from domain.money import from_minor_units
from domain.wallets import TransactionRecord, WalletBalance
from migration.runtime import process_runtime
from registry.models import WalletAccount, WalletTransfer
from staff.four_eyes import ApprovalRefused, needs_second_person, request_void


class VoidForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=1000,
        help_text="Mandatory: why this transaction is voided (kept with the void).",
        # The field strips whitespace first, so a blank reason is a missing one.
        error_messages={"required": "A void needs a reason."},
    )
    next = forms.CharField(widget=forms.HiddenInput, required=False)


def void_effects(record: TransactionRecord, balance: WalletBalance | None) -> list[str]:
    """What voiding `record` does to the wallet, in the words and the money support uses."""
    currency = record.key.currency
    amount = format_money(record.amount_minor, currency)
    available, spent, received = (BALANCE_WORDS[name][0] for name in BALANCE_WORDS)
    if balance is None:
        return [VOID_EFFECT]
    money = {
        "credit": balance.credit_minor,
        "debit": balance.debit_minor,
        "historical_credit": balance.historical_credit_minor,
    }

    def change(name: str, delta: int) -> str:
        before, after = money[name], money[name] + delta
        return (
            f"{BALANCE_WORDS[name][0]} goes from {format_money(before, currency)} "
            f"to {format_money(after, currency)}"
        )

    if record.kind == "debit":
        return [
            f"The {amount} debit is given back as a new credit: "
            f"{change('credit', record.amount_minor)}; "
            f"{change('historical_credit', record.amount_minor)}; "
            f"{spent} stays {format_money(money['debit'], currency)} "
            "(it keeps every debit ever taken)."
        ]
    effects = [
        f"The {amount} credit is taken back as a new debit: "
        f"{change('credit', -record.amount_minor)}; {change('debit', record.amount_minor)}; "
        f"{received} stays {format_money(money['historical_credit'], currency)}."
    ]
    if money["credit"] < record.amount_minor:
        effects.append(
            f"This void will be refused: only {format_money(money['credit'], currency)} is "
            f"{available}, less than the {amount} to take back."
        )
    return effects


class TransferCsv(CsvExportMixin):
    csv_columns = (
        ("transaction_id", lambda row: row.transaction_id),
        *wallet_key_csv_columns("wallet."),
        ("kind", lambda row: row.kind),
        ("amount", lambda row: _decimal(row.amount_minor, row.wallet.currency)),
        ("state", lambda row: row.state),
        ("created_at", lambda row: row.created_at.isoformat()),
        ("made_by", lambda row: row.made_by),
        ("voided_by", lambda row: row.voided_by),
        ("voided_at", lambda row: row.voided_at.isoformat() if row.voided_at else ""),
        ("void_reason", lambda row: row.void_reason),
        ("tigerbeetle_transfer_id", lambda row: row.tb_transfer_id_hex),
    )


def _decimal(amount_minor: int | None, currency: str) -> str:
    return "" if amount_minor is None else str(from_minor_units(amount_minor, currency))


@admin.register(WalletTransfer)
class WalletTransferAdmin(TransferCsv, ReadOnlyAdmin):
    list_display = (
        "transaction",
        "wallet_link",
        "kind",
        "amount",
        "made_by",
        "created",
        "status",
    )
    # By date through the "created" filter (a WHERE on created_at): a date hierarchy would
    # read every transaction's date on each load (0.5 s for 2,000,000 on PostgreSQL).
    list_filter = ("state", "kind", "created_at")
    search_fields = ("transaction_id__exact",)  # the search box; get_search_results answers
    search_help_text = (
        "Exact transaction id, client id, or TigerBeetle transfer id of the transaction or its "
        "void (hex or decimal); case-sensitive."
    )
    list_select_related = ("wallet",)
    actions = ["void_selected"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """The transactions the term names exactly, each kind of id through its own index.
        Django's search would OR the fields across the join with the wallets, which
        PostgreSQL answers only by reading every transaction."""
        term = search_term.strip()
        if not term:
            return queryset, False
        wallet_ids = list(WalletAccount.objects.filter(client_id=term).values_list("pk", flat=True))
        matches = Q(transaction_id=term) | Q(wallet_id__in=wallet_ids)
        hex_id = tigerbeetle_id_hex(term)
        if hex_id:
            matches |= Q(tb_transfer_id_hex=hex_id) | Q(void_tb_transfer_id_hex=hex_id)
        return queryset.filter(matches), False

    @admin.display(description="transaction", ordering="transaction_id")
    def transaction(self, row: WalletTransfer) -> str:
        return format_html(
            '<span class="id ellipsis" title="{}">{}</span>', row.transaction_id, row.transaction_id
        )

    @admin.display(description="wallet", ordering="wallet__client_id")
    def wallet_link(self, row: WalletTransfer) -> str:
        return format_html(
            '<a class="wallet-link id" href="{}">{}</a>',
            reverse("admin:registry_walletaccount_change", args=[row.wallet_id]),
            row.wallet.key.describe(),
        )

    @admin.display(description="amount", ordering="amount_minor")
    def amount(self, row: WalletTransfer) -> str:
        return format_money(row.amount_minor, row.wallet.currency)

    @admin.display(description="created", ordering="created_at")
    def created(self, row: WalletTransfer) -> str:
        return when(row.created_at)

    @admin.display(description="state (voided by, when)", ordering="state")
    def status(self, row: WalletTransfer) -> str:
        """The state, and for a void who and when: the point of the column (one column so
        the list fits 1280 px)."""
        if row.voided_at:
            return f"voided by {row.voided_by}, {when(row.voided_at)}"
        return row.state

    def get_list_display(self, request: HttpRequest) -> Any:
        """A Void link beside the state of every voidable row, for those who may void."""
        if not request.user.has_perm("registry.void_wallettransfer"):
            return self.list_display

        @admin.display(description="state (voided by, when)", ordering="state")
        def status(row: WalletTransfer) -> str:
            if row.state != WalletTransfer.State.POSTED:
                return self.status(row)
            return format_html(
                '{} <a class="void-link" href="{}">Void…</a>',
                row.state,
                void_url(row.transaction_id, request),
            )

        return (*self.list_display[:-1], status)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The transaction's one page (`transaction_page`), as for one only MongoDB holds."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        row = self.get_object(request, object_id)
        if row is None:
            return super().change_view(request, object_id, form_url, extra_context)
        return self.record_view(request, row.transaction_id)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("registry.void_wallettransfer"):
            actions.pop("void_selected", None)
        return actions

    @admin.action(description="Void the selected transaction")
    def void_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(
                request,
                "Select exactly one transaction to void; each needs its own reason.",
                messages.ERROR,
            )
            return None
        return HttpResponseRedirect(
            reverse("admin:registry_wallettransfer_void", args=[queryset.get().transaction_id])
        )

    def get_urls(self) -> list[URLPattern]:
        void = path(
            "void/<path:transaction_id>/",
            self.admin_site.admin_view(self.void_view),
            name="registry_wallettransfer_void",
        )
        record = path(
            "record/<path:transaction_id>/",
            self.admin_site.admin_view(self.record_view),
            name="registry_wallettransfer_record",
        )
        return [void, record, *self.csv_urls(), *super().get_urls()]

    def record_view(self, request: HttpRequest, transaction_id: str) -> HttpResponse:
        """A transaction by its id, whichever store holds it (also one only MongoDB holds,
        such as a refused debit of a legacy wallet, in every phase)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        row = WalletTransfer.objects.select_related("wallet").filter(transaction_id=transaction_id)
        try:
            record, store = read_record(transaction_id, row.first())
        except errors.WalletError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            changelist = reverse("admin:registry_wallettransfer_changelist")
            return HttpResponseRedirect(f"{changelist}?{urlencode({'q': transaction_id})}")
        return transaction_page(self, request, record, store)

    def void_view(self, request: HttpRequest, transaction_id: str) -> HttpResponse:
        """Confirmation with a mandatory reason, then the void through the wallet service
        (so it goes to whichever store the migration phase makes primary)."""
        if not request.user.has_perm("registry.void_wallettransfer"):
            raise PermissionDenied
        service = process_runtime().wallet_service()
        try:
            record = service.get_transaction(transaction_id)
        except errors.WalletError as exc:
            self.message_user(
                request, f"Cannot void {transaction_id!r}: {exc.message}", messages.ERROR
            )
            return HttpResponseRedirect(reverse("admin:registry_wallettransfer_changelist"))
        back = back_url(request, wallet_url(record.key))
        form = VoidForm(request.POST or None, initial={"next": back})
        if request.method == "POST" and form.is_valid() and needs_second_person(record):
            return self._request_approval(
                request, record, reason=form.cleaned_data["reason"], back=back
            )
        if request.method == "POST" and form.is_valid():
            try:
                result = service.void_transaction(
                    transaction_id,
                    voided_by=request.user.get_username(),
                    reason=form.cleaned_data["reason"],
                )
            except errors.WalletError as exc:
                self.message_user(request, f"Not voided: {exc.message}", messages.ERROR)
            else:
                self._log_void(request, transaction_id, reason=form.cleaned_data["reason"])
                after = result.balance
                self.message_user(
                    request,
                    f"Voided {transaction_id}. Wallet {after.key.describe()} now has "
                    f"{format_money(after.credit_minor, after.key.currency)} available.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(back)
        balance: WalletBalance | None
        try:
            balance = service.get_balance(
                client_id=record.key.client_id,
                country=record.key.country,
                currency=record.key.currency,
                issuer=record.key.issuer,
            )
        except errors.WalletError:
            balance = None
        return render(
            request,
            "admin/registry/void_confirm.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Void transaction {transaction_id}",
                "record": record,
                "form": form,
                "effects": void_effects(record, balance),
                "back": back,
                "wallet_url": wallet_url(record.key),
            },
        )

    def _request_approval(
        self, request: HttpRequest, record: TransactionRecord, *, reason: str, back: str
    ) -> HttpResponse:
        """Four eyes: a void above FOUR_EYES_VOID_ABOVE waits for another person."""
        try:
            request_void(record, requested_by=request.user.get_username(), reason=reason)
        except ApprovalRefused as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            self.message_user(
                request,
                f"Not voided yet: a void of "
                f"{format_money(record.amount_minor, record.key.currency)} waits for another "
                "staff member's approval (Void approvals).",
                messages.WARNING,
            )
        return HttpResponseRedirect(back)

    def _log_void(self, request: HttpRequest, transaction_id: str, *, reason: str) -> None:
        """Django's admin history gets the void too (who, when, why), beside the stores'
        own record of it (voided_by, void_reason, voided_at)."""
        row = WalletTransfer.objects.filter(transaction_id=transaction_id).first()
        assert request.user.pk is not None  # a staff view: the user is signed in
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(WalletTransfer),
            object_id=str(row.pk) if row else transaction_id,
            object_repr=f"transaction {transaction_id}"[:200],
            action_flag=CHANGE,
            change_message=f"Voided: {reason}",
        )
