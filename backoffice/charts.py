"""Server-side SVG charts for the migration dashboard (pygal; no JavaScript, no CDN)."""

from __future__ import annotations

import pygal
from pygal.style import CleanStyle

from backoffice.figures import operation_latencies
from migration.criteria import MATCH_RATE_TARGET, daily_shadow_figures

STORE_LABELS = {"mongo": "MongoDB", "tigerbeetle": "TigerBeetle"}
OPERATIONS = ("get_balance", "add_credit", "subtract_credit", "void_transaction")
# The wallet service's operations as the dashboard names them.
OPERATION_WORDS = {
    "get_balance": "balance read",
    "add_credit": "credit",
    "subtract_credit": "debit",
    "void_transaction": "void",
}


def _config() -> pygal.Config:
    config = pygal.Config()
    config.js = []  # pygal's default loads its tooltip script from a CDN
    config.disable_xml_declaration = True
    config.style = CleanStyle(no_data_font_size=18)
    config.width, config.height = 720, 300
    config.show_legend = True
    config.legend_at_bottom = True
    config.x_label_rotation = 30
    config.no_data_text = "No shadow comparisons yet"
    return config


# How far below 100 % the match-rate axis reaches, in multiples of the target's distance
# from 100 %: the target line sits a tenth of the way down, well apart from 100 %.
AXIS_DEPTH_OF_TARGET_GAP = 10
MATCHED, MISSED, TARGET = "#417690", "#ba2121", "#e08e0b"


def match_rate_axis(target_percent: float) -> tuple[float, float]:
    """A y axis that tells the target from 100 % (zoomed to the day's values, 99.99 sat on
    the 100 % gridline and a 99.875 % day looked like 100): from 100 % down ten times the
    target's gap; a day below the bottom is drawn on it, marked missed."""
    gap = max(100 - target_percent, 0.001)
    return round(100 - AXIS_DEPTH_OF_TARGET_GAP * gap, 6), 100.0


def daily_match_rates(days: int = 14) -> list[tuple[str, float | None]]:
    """(day, match rate in % or None for a day without comparisons), oldest first."""
    rates = []
    for row in daily_shadow_figures(days):
        decided = row["matched"] + row["mismatched"]
        rate = round(100 * row["matched"] / decided, 4) if decided else None
        rates.append((row["day"].isoformat(), rate))
    return rates


def missed_days(rates: list[tuple[str, float | None]]) -> list[str]:
    """The days below the target, in words, for the line under the chart."""
    target = float(MATCH_RATE_TARGET * 100)
    return [f"{day}: {rate:.4f} %" for day, rate in rates if rate is not None and rate < target]


def match_rate_chart(rates: list[tuple[str, float | None]]) -> str:
    target = float(MATCH_RATE_TARGET * 100)
    bottom, top = match_rate_axis(target)
    config = _config()
    config.style = CleanStyle(no_data_font_size=18, colors=(MATCHED, MISSED, TARGET))
    chart = pygal.Line(
        config,
        title=f"Balance match rate per day (%), target {target:g} %",
        range=(bottom, top),
        y_labels=[bottom, target, top],
        show_y_guides=False,  # the target is the one line across
        value_formatter=lambda value: f"{value:.4f} %",
    )
    chart.x_labels = [day for day, _ in rates]
    shown = [None if rate is None else max(rate, bottom) for _, rate in rates]
    chart.add("match rate", shown)
    chart.add(
        "missed the target",
        [
            value if rate is not None and rate < target else None
            for value, (_, rate) in zip(shown, rates, strict=True)
        ],
        stroke=False,
        dots_size=7,
    )
    if rates:
        chart.add(
            f"target {target:g} %",
            [target] * len(rates),
            show_dots=False,
            stroke_style={"width": 3},
        )
    return chart.render(is_unicode=True)


def latency_chart() -> str:
    """Mean latency of each wallet operation per store, from the metrics every operation
    records (`wallet_operation_seconds`), so every phase has figures, not only shadow reads."""
    latencies = {(item.operation, item.store): item for item in operation_latencies()}
    config = _config()
    config.no_data_text = "No operation recorded yet"
    config.max_scale = 6  # a few readable y labels
    chart = pygal.Bar(
        config,
        title="Mean latency per operation and store (ms), since the processes started",
        value_formatter=lambda value: f"{value:.2f} ms",
    )
    operations = [op for op in OPERATIONS if any((op, s) in latencies for s in STORE_LABELS)]
    chart.x_labels = [OPERATION_WORDS[op] for op in operations]
    for store, label in STORE_LABELS.items():
        values = [
            round(latencies[(op, store)].mean_ms, 3) if (op, store) in latencies else None
            for op in operations
        ]
        if any(value is not None for value in values):
            chart.add(label, values)
    return chart.render(is_unicode=True)
