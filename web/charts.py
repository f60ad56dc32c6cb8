"""Geometry of the dashboard's adherence chart (grouped bars by month and protocol), rendered as SVG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils.formats import date_format

from web.adherence import COUNTED_PROTOCOLS
from web.selectors import MonthCell

WIDTH = 1000
HEIGHT = 300
LEFT = 48
RIGHT = 12
TOP = 16
BOTTOM = 40
# One colour per protocol, told apart without colour too (the legend and each bar's title name it).
PROTOCOL_CLASS = {p: f"bar-{k}" for k, p in enumerate(COUNTED_PROTOCOLS)}


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    months: list[tuple[float, str]] = field(default_factory=list)
    grid: list[tuple[float, str]] = field(default_factory=list)
    baseline: float = HEIGHT - BOTTOM


def adherence_chart(cells: Sequence[MonthCell], protocol_labels: dict[str, str]) -> Chart:
    chart = Chart()
    months = sorted({c.month for c in cells})
    if not months:
        return chart
    plot_h = HEIGHT - TOP - BOTTOM
    group_w = (WIDTH - LEFT - RIGHT) / len(months)
    bar_w = (group_w - 10) / len(COUNTED_PROTOCOLS)
    for pct in (0, 25, 50, 75, 100):
        chart.grid.append((round(TOP + plot_h * (1 - pct / 100), 1), f"{pct} %"))
    for k, month in enumerate(months):
        x0 = LEFT + k * group_w + 5
        chart.months.append((round(x0 + (group_w - 10) / 2, 1), date_format(month, "M y")))
        for j, protocol in enumerate(COUNTED_PROTOCOLS):
            cell = next((c for c in cells if c.month == month and c.protocol == protocol), None)
            if cell is None or not cell.counted or cell.percent is None:
                continue
            h = max(plot_h * cell.percent / 100, 3)  # a 0 % month stays visible
            chart.bars.append(
                Bar(
                    x=round(x0 + j * bar_w, 1),
                    y=round(TOP + plot_h - h, 1),
                    width=round(max(bar_w - 2, 1), 1),
                    height=round(h, 1),
                    css=PROTOCOL_CLASS[protocol] + (" bar-zero" if cell.percent == 0 else ""),
                    title=f"{date_format(month, 'F Y')} — {protocol_labels.get(protocol, protocol)}: "
                    f"{cell.percent} % ({cell.inside}/{cell.counted})",
                )
            )
    return chart
