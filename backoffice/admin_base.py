"""What the back-office's model admins share."""

from __future__ import annotations

import csv
import itertools
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone, translation
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from domain.ids import WalletKey
from domain.money import format_money_in

if TYPE_CHECKING:  # a stub-only alias: ModelAdmin's own type for its templates
    from django.template.response import _TemplateForResponseT

CSV_CHUNK_ROWS = 2000
# Below this many rows (PostgreSQL's estimate) an unfiltered list is counted exactly.
ESTIMATED_COUNT_ROWS_MIN = 100_000
# How long a list filter's choices (the values a column holds) are kept before read again.
FILTER_CHOICES_CACHE_S = 300


def format_money(amount_minor: int, currency: str, locale: str | None = None) -> str:
    """An amount as people read it, for the active locale (`domain.money.format_money_in`):
    11990 USD -> "$119.90" in en-us."""
    locale = locale or translation.to_locale(translation.get_language() or "en-us")
    return format_money_in(amount_minor, currency, locale=locale)


class EstimatedCountPaginator(Paginator):
    """Pages of an admin list. The whole of a large table is counted from PostgreSQL's
    statistics (`pg_class.reltuples`, kept by autovacuum's ANALYZE): an exact COUNT(*)
    reads every row, 0.14 s for 2,000,000 transactions on every load of the list. A
    filtered or searched list, a small table and other databases are counted exactly."""

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if isinstance(rows, QuerySet):
            return row_count(rows)
        return int(super().count)


def row_count(rows: QuerySet[Any]) -> int:
    """How many rows: the whole of a large table from PostgreSQL's statistics, else exactly
    (EstimatedCountPaginator says why)."""
    if not rows.query.where:
        estimate = _estimated_rows(database=rows.db, table=rows.model._meta.db_table)
        if estimate >= ESTIMATED_COUNT_ROWS_MIN:
            return estimate
    return rows.count()


def _estimated_rows(*, database: str, table: str) -> int:
    """PostgreSQL's estimate of the rows in `table` (-1 before its first ANALYZE); -1 on
    other databases."""
    connection = connections[database]
    if connection.vendor != "postgresql":
        return -1
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row else -1


def cached_filter_choices(name: str, read: Callable[[], list[Any]]) -> list[Any]:
    """A list filter's choices, read at most every FILTER_CHOICES_CACHE_S: reading the
    values a column holds is a DISTINCT over the whole table on every load of the list
    (0.04 s a filter for 200,000 wallets on PostgreSQL). A value new to the table shows in
    the filter within that time."""
    choices = cache.get_or_set(f"admin-filter-choices:{name}", read, FILTER_CHOICES_CACHE_S)
    return list(choices or [])


class CachedValuesFilter(admin.AllValuesFieldListFilter):
    """Django's filter by the values a column holds, its choices cached
    (`cached_filter_choices`)."""

    def __init__(
        self,
        field: Any,
        request: HttpRequest,
        params: Any,
        model: Any,
        model_admin: Any,
        field_path: str,
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        distinct = self.lookup_choices
        choices = cached_filter_choices(
            f"{model._meta.label_lower}.{field_path}", lambda: list(distinct)
        )
        self.lookup_choices = choices  # type: ignore[assignment]  # iterated, as the queryset is


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the system (registries, audits, runs): viewed in the admin, never
    added, edited or deleted by hand; changes go through the wallet service."""

    # A filtered or searched list says "N results" without "(M total)": counting the total
    # reads the whole table (millions of transactions) on every search.
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        """A list titled by what it lists ("Wallets"), not Django's "Select wallet to view"."""
        title = str(self.model._meta.verbose_name_plural).capitalize()
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CsvExportMixin(admin.ModelAdmin):
    """An "Export CSV" of what the list shows now (its filters, search and order), streamed
    row by row. `csv_columns`: (header, value of a row) pairs; money as plain decimals beside
    a currency column, so a spreadsheet can add them up. A ModelAdmin itself, so its calls on
    the admin it is mixed into are typed."""

    csv_columns: tuple[tuple[str, Callable[[Any], object]], ...] = ()
    change_list_template: ClassVar[_TemplateForResponseT | None] = "admin/csv_change_list.html"

    def csv_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_csv_view),
                name=f"{opts.app_label}_{opts.model_name}_csv",
            )
        ]

    def export_csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.queryset.iterator(chunk_size=CSV_CHUNK_ROWS)
        writer = csv.writer(_Echo())
        lines = itertools.chain(
            [writer.writerow([header for header, _ in self.csv_columns])],
            (writer.writerow([value(row) for _, value in self.csv_columns]) for row in rows),
        )
        opts = self.model._meta
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = (
            f'attachment; filename="{opts.verbose_name_plural.replace(" ", "-")}-{stamp}.csv"'
        )
        return response


def wallet_key_csv_columns(path: str = "") -> tuple[tuple[str, Callable[[Any], object]], ...]:
    """The wallet key's four CSV columns (`csv_columns` pairs), each read from the row's field
    of that name, behind `path` ("wallet." through a relation): issuer "" for none."""
    return tuple((name, operator.attrgetter(path + name)) for name in WalletKey.FIELDS)


class _Echo:
    """csv.writer's file: hands each line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


class OpenByDefaultFilter(admin.SimpleListFilter):
    """A status filter whose default is "open" (the cases to act on), shown as selected when
    the list is first opened; its other values are listed in `lookups` like any filter's."""

    DEFAULT = "open"

    def selected(self) -> str:
        return str(self.value() or self.DEFAULT)

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.selected() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


def figures_table(figures: dict[str, Any]) -> str:
    """A record's figures (stored as JSON) as a small table in words: names without
    underscores, amounts in minor units (names ending "_minor") as money of the figures'
    currency, lists joined."""
    currency = str(figures.get("currency") or "")
    rows = []
    for name in sorted(figures):
        value = figures[name]
        label = name.removesuffix("_minor").replace("_", " ")
        rows.append((label, _figure(value, currency if name.endswith("_minor") else "")))
    if not rows:
        return "—"
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="figures">{}</table>', body)


def _figure(value: Any, currency: str) -> str:
    if isinstance(value, list):
        return "; ".join(_figure(item, currency) for item in value) or "—"
    if isinstance(value, dict):
        return ", ".join(
            f"{key.replace('_', ' ')} {_figure(item, currency)}" for key, item in value.items()
        )
    if currency and isinstance(value, int) and not isinstance(value, bool):
        return format_money(value, currency)
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "—" if value in (None, "") else str(value)
