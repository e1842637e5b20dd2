"""Server-side SVG charts for the migration dashboard (pygal; no JavaScript, no CDN)."""

from __future__ import annotations

import pygal
from pygal.style import CleanStyle

from ledger.migration_figures import daily_shadow_figures


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


def match_rate_chart(days: int = 14) -> str:
    rows = daily_shadow_figures(days)
    chart = pygal.Line(_config(), title="Balance match rate per day (%)", range=(0, 100))
    chart.x_labels = [row["day"].isoformat() for row in rows]  # type: ignore[union-attr]
    rates = []
    for row in rows:
        decided = int(row["matched"]) + int(row["mismatched"])  # type: ignore[call-overload]
        rates.append(round(100 * int(row["matched"]) / decided, 4) if decided else None)  # type: ignore[call-overload]
    chart.add("match rate", rates)
    return chart.render(is_unicode=True)


def latency_chart(days: int = 14) -> str:
    rows = daily_shadow_figures(days)
    chart = pygal.Bar(_config(), title="Average balance read latency per store (µs)")
    chart.x_labels = [row["day"].isoformat() for row in rows]  # type: ignore[union-attr]
    chart.add("MongoDB", [_rounded(row["mongo_latency_us"]) for row in rows])
    chart.add("TigerBeetle", [_rounded(row["tb_latency_us"]) for row in rows])
    return chart.render(is_unicode=True)


def _rounded(value: object) -> float | None:
    return round(float(value), 1) if value is not None else None  # type: ignore[arg-type]
