"""Server-side SVG charts for the migration dashboard (pygal; no JavaScript, no CDN)."""

from __future__ import annotations

import math

import pygal
from pygal.style import CleanStyle

from backoffice.figures import operation_latencies
from migration.criteria import MATCH_RATE_TARGET, daily_shadow_figures

STORE_LABELS = {"mongo": "MongoDB", "tigerbeetle": "TigerBeetle"}
OPERATIONS = ("get_balance", "add_credit", "subtract_credit", "void_transaction")


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


def match_rate_axis(rates: list[float], target_percent: float) -> tuple[float, float]:
    """A y axis zoomed to where the rates and the target are (0-100 % would flatten 99.99
    against 97.5 into one line): from a little below the lowest of them up to 100."""
    lowest = min([*rates, target_percent])
    span = max(100 - lowest, 0.01)
    bottom = max(0.0, lowest - span * 0.5)
    step = 10 ** math.floor(math.log10(span * 1.5))
    return math.floor(bottom / step) * step, 100.0


def match_rate_chart(days: int = 14) -> str:
    rows = daily_shadow_figures(days)
    target = float(MATCH_RATE_TARGET * 100)
    rates: list[float | None] = []
    for row in rows:
        decided = row["matched"] + row["mismatched"]
        rates.append(round(100 * row["matched"] / decided, 4) if decided else None)
    axis = match_rate_axis([rate for rate in rates if rate is not None], target)
    chart = pygal.Line(
        _config(),
        title=f"Balance match rate per day (%), target {target:g} %",
        range=axis,
        max_scale=8,
        value_formatter=lambda value: f"{value:.4f} %",
    )
    chart.x_labels = [row["day"].isoformat() for row in rows]
    chart.add("match rate", rates)
    if rows:
        chart.add(
            f"target {target:g} %",
            [target] * len(rows),
            show_dots=False,
            stroke_style={"width": 2, "dasharray": "6, 4"},
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
    chart.x_labels = operations
    for store, label in STORE_LABELS.items():
        values = [
            round(latencies[(op, store)].mean_ms, 3) if (op, store) in latencies else None
            for op in operations
        ]
        if any(value is not None for value in values):
            chart.add(label, values)
    return chart.render(is_unicode=True)
