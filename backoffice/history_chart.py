"""The wallet page's balance chart: the available balance after each of the wallet's latest
transactions and hold events, and (when any hold reserved money) the held amount as a second,
dashed line, as a small inline SVG drawn on the server (no JavaScript, no library).

The points are the API's (`WalletService.get_history`): routed by the phase, so the page
draws what a client reads, from whichever store is authoritative for the wallet.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from backoffice.admin_base import format_money
from backoffice.links import when
from domain import errors
from domain.history import HistoryPoint
from domain.ids import WalletKey
from ledger.service import WalletService

CHART_POINTS = 50  # the latest transactions drawn
WIDTH, HEIGHT, MARGIN_LEFT, MARGIN = 640, 180, 90, 20


@dataclass(frozen=True)
class HistoryChart:
    svg: SafeString  # empty when there is nothing to draw
    points: int
    note: str = ""


def wallet_history_chart(service: WalletService, key: WalletKey) -> HistoryChart:
    """The chart of the wallet's latest CHART_POINTS transactions (a note instead when the
    store does not answer or holds no history)."""
    try:
        page = service.get_history(
            client_id=key.client_id,
            country=key.country,
            currency=key.currency,
            issuer=key.issuer,
            limit=CHART_POINTS,
        )
    except errors.WalletNotFound:
        return HistoryChart(svg=mark_safe(""), points=0, note="No history.")
    except errors.StoreUnavailable as exc:
        return HistoryChart(svg=mark_safe(""), points=0, note=f"History unavailable: {exc.message}")
    oldest_first = list(reversed(page.points))
    return HistoryChart(
        svg=available_balance_svg(oldest_first, key.currency), points=len(page.points)
    )


def available_balance_svg(points: list[HistoryPoint], currency: str) -> SafeString:
    """A line of the available balance after each point (oldest left), a dot per point with
    its transaction or hold event in a tooltip, a dashed line of the held amount when any
    point holds some, the highest and lowest balance on the left axis."""
    if not points:
        return mark_safe("")
    values = [point.balance.credit_minor for point in points]
    held = [point.balance.held_minor for point in points]
    low, high = min(0, *values), max(*values, *held)
    span = (high - low) or 1
    plot_width, plot_height = WIDTH - MARGIN_LEFT - MARGIN, HEIGHT - 2 * MARGIN
    step = plot_width / (len(points) - 1) if len(points) > 1 else 0

    def x(index: int) -> float:
        return MARGIN_LEFT + (index * step if len(points) > 1 else plot_width / 2)

    def y(value: int) -> float:
        return MARGIN + plot_height * (high - value) / span

    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    held_line = (
        '<polyline fill="none" stroke="#ba2121" stroke-width="1.5" stroke-dasharray="4 3" '
        'id="history-chart-held" points="'
        + " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(held))
        + '"><title>held</title></polyline>'
        if any(held)
        else ""
    )
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3"><title>{escape(_tooltip(p, currency))}'
        "</title></circle>"
        for i, (p, v) in enumerate(zip(points, values, strict=True))
    )
    first, last = points[0].created_at, points[-1].created_at
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" id="history-chart-svg" '
        f'aria-label="Available balance after each of the last {len(points)} transactions">'
        f'<line x1="{MARGIN_LEFT}" y1="{y(0):.1f}" x2="{WIDTH - MARGIN}" y2="{y(0):.1f}" '
        'stroke="#ccc"/>'
        f'<text x="4" y="{y(high) + 4:.1f}" font-size="11">{escape(format_money(high, currency))}'
        "</text>"
        f'<text x="4" y="{y(low) + 4:.1f}" font-size="11">{escape(format_money(low, currency))}'
        "</text>"
        f'<text x="{MARGIN_LEFT}" y="{HEIGHT - 4}" font-size="11">{when(first)}</text>'
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 4}" font-size="11" text-anchor="end">'
        f"{when(last)}</text>"
        f'<polyline fill="none" stroke="#417690" stroke-width="2" points="{line}"/>'
        f"{held_line}"
        f'<g fill="#417690">{dots}</g></svg>'
    )


def _tooltip(point: HistoryPoint, currency: str) -> str:
    what = point.kind.value.replace("_", " ")
    if point.amount_minor is not None:
        what += f" {format_money(point.amount_minor, currency)}"
    if point.transaction_id or point.hold_id:
        what += f" ({point.transaction_id or point.hold_id})"
    available = format_money(point.balance.credit_minor, currency)
    held = format_money(point.balance.held_minor, currency)
    return f"{when(point.created_at)} {what}: available {available}, held {held}"
