"""The booklet as a picture: geometry of the patient timeline, rendered as inline SVG by a template.

Lanes, left to right in time (two years back, the next months ahead):
injections (each dose against its due window; late doses marked, planned items as dashed windows),
corrected calcium, 25-OH vitamin D and eGFR against their normal ranges, dental events.
Every shape carries a ``title`` (a tooltip and what a screen reader reads); the page also lists the
same facts as tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from django.utils.formats import date_format
from django.utils.translation import gettext as _

from patients.models import DentalEvent, DoseRecord, LabResult
from scheduling.models import PlanItem
from scheduling.rules.calendar import add_months
from web.adherence import DoseWindow

WIDTH = 1000
LEFT = 165
RIGHT = 16
TOP = 28.0
LANE_GAP = 14.0


@dataclass
class Shape:
    kind: str  # rect | line | circle | text | polyline | path
    attrs: dict[str, str | float]
    title: str = ""
    text: str = ""


@dataclass
class Lane:
    label: str
    y: float
    height: float


@dataclass
class Timeline:
    height: float
    shapes: list[Shape] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=list)
    first: date | None = None
    last: date | None = None


@dataclass(frozen=True)
class Range:
    low: float
    high: float


# Normal ranges (CA-02 P12 for calcium; VITD-01 "taux recommandés" 30-70 ng/mL; eGFR ≥ 60).
LAB_LANES: tuple[tuple[str, str, float, float, Range], ...] = (
    ("calcium_total", "mmol/L", 1.8, 3.0, Range(2.20, 2.60)),
    ("25ohd", "ng/mL", 0.0, 100.0, Range(30.0, 70.0)),
    ("egfr", "mL/min/1.73m²", 0.0, 120.0, Range(60.0, 120.0)),
)
DENTAL_LETTERS = {
    "exam": "E",
    "panoramic_xray": "X",
    "extraction": "Ex",
    "clearance": "OK",
    "exposed_bone": "!",
    "onj_treatment_start": "T",
    "exposed_bone_persisting": "!",
}


def _fmt(day: date) -> str:
    return date_format(day, "SHORT_DATE_FORMAT")


class Scale:
    def __init__(self, first: date, last: date) -> None:
        self.first, self.last = first, last
        self.span = max((last - first).days, 1)

    def x(self, day: date) -> float:
        clamped = min(max(day, self.first), self.last)
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (clamped - self.first).days / self.span, 1)


def build(
    *,
    today: date,
    windows: Sequence[DoseWindow],
    doses: Iterable[DoseRecord],
    open_items: Iterable[PlanItem],
    labs: Iterable[LabResult],
    dental: Iterable[DentalEvent],
    calcium_range: Range | None = None,
) -> Timeline:
    first = add_months(today, -24)
    last = add_months(today, 8)
    sc = Scale(first, last)
    t = Timeline(height=0, first=first, last=last)
    y: float = TOP
    window_of = {w.dose.key: w for w in windows}

    # Month ticks along the top, every three months, and the grid lines under them.
    tick = date(first.year, first.month, 1)
    while tick <= last:
        if tick >= first and tick.month % 3 == 1:
            x = sc.x(tick)
            t.shapes.append(Shape("line", {"x1": x, "y1": TOP - 6, "x2": x, "y2": 9999, "class": "tl-grid"}))
            t.shapes.append(
                Shape("text", {"x": x + 3, "y": TOP - 10, "class": "tl-tick"}, text=date_format(tick, "M Y"))
            )
        tick = add_months(tick, 1)

    # Lane: injections against their due windows.
    lane_h = 64.0
    t.lanes.append(Lane(_("Injections"), y, lane_h))
    mid = y + lane_h / 2
    for w in windows:
        x1, x2 = sc.x(w.window_start), sc.x(w.window_end)
        if w.window_end < first:
            continue
        t.shapes.append(
            Shape(
                "rect",
                {"x": x1, "y": y + 8, "width": max(x2 - x1, 2), "height": lane_h - 16, "class": "tl-window"},
                title=_("Due window %(a)s → %(b)s (due %(due)s)")
                % {"a": _fmt(w.window_start), "b": _fmt(w.window_end), "due": _fmt(w.due)},
            )
        )
    for item in open_items:
        if item.kind not in ("injection", "consolidation"):
            continue
        ws, we = item.window_start or item.due, item.window_end or item.due
        x1, x2 = sc.x(ws), sc.x(we)
        late = item.status.startswith("overdue")
        t.shapes.append(
            Shape(
                "rect",
                {
                    "x": x1,
                    "y": y + 8,
                    "width": max(x2 - x1, 2),
                    "height": lane_h - 16,
                    "class": "tl-planned" + (" tl-overdue" if late else ""),
                },
                title=_("Planned: %(what)s due %(due)s, window %(a)s → %(b)s — %(status)s")
                % {
                    "what": item.get_kind_display(),
                    "due": _fmt(item.due),
                    "a": _fmt(ws),
                    "b": _fmt(we),
                    "status": item.get_status_display(),
                },
            )
        )
        xd = sc.x(item.due)
        t.shapes.append(
            Shape(
                "path",
                {
                    "d": f"M{xd} {mid - 7} L{xd + 7} {mid} L{xd} {mid + 7} L{xd - 7} {mid} Z",
                    "class": "tl-due" + (" tl-overdue" if late else ""),
                },
                title=_("Due %(due)s") % {"due": _fmt(item.due)},
            )
        )
    for dose in doses:
        if dose.product not in ("denosumab", "zoledronic_acid") or dose.given_on < first:
            continue
        dw = window_of.get(str(dose.pk))
        x = sc.x(dose.given_on)
        base = _("%(product)s %(dose)s mg on %(day)s, lot %(lot)s") % {
            "product": dose.get_product_display(),
            "dose": f"{dose.dose_value:g}",
            "day": _fmt(dose.given_on),
            "lot": dose.lot_number or "—",
        }
        if dw is None:
            cls, note = "tl-dose", _("first dose of its course")
        elif dw.inside:
            cls, note = "tl-dose tl-ontime", _("inside its window")
        elif dw.late:
            cls, note = (
                "tl-dose tl-late",
                _("late by %(days)s days after the window") % {"days": (dose.given_on - dw.window_end).days},
            )
        else:
            cls, note = (
                "tl-dose tl-early",
                _("early by %(days)s days before the window") % {"days": (dw.window_start - dose.given_on).days},
            )
        t.shapes.append(Shape("circle", {"cx": x, "cy": mid, "r": 7, "class": cls}, title=f"{base} — {note}"))
        if dw is not None and dw.late:
            t.shapes.append(
                Shape("text", {"x": x, "y": y + 10, "class": "tl-late-mark", "text-anchor": "middle"}, text=_("late"))
            )
    y += lane_h + LANE_GAP

    # Lanes: labs against their normal ranges.
    lab_list = [lab for lab in labs if lab.drawn_on >= first]
    for test, unit, lo, hi, normal in LAB_LANES:
        rows = sorted((lab for lab in lab_list if lab.test == test), key=lambda lab: lab.drawn_on)
        if not rows:
            continue
        if test == "calcium_total" and calcium_range is not None:
            normal = calcium_range
        lane_h = 56.0
        label = {"calcium_total": _("Calcium (corrected)"), "25ohd": _("Vitamin D"), "egfr": _("eGFR")}[test]
        t.lanes.append(Lane(label, y, lane_h))

        def vy(v: float, lo: float = lo, hi: float = hi, top: float = y, h: float = lane_h) -> float:
            v = min(max(v, lo), hi)
            return round(top + h - (v - lo) / (hi - lo) * h, 1)

        band_top, band_bottom = vy(normal.high), vy(normal.low)
        t.shapes.append(
            Shape(
                "rect",
                {
                    "x": LEFT,
                    "y": band_top,
                    "width": WIDTH - LEFT - RIGHT,
                    "height": max(band_bottom - band_top, 1),
                    "class": "tl-normal",
                },
                title=_("Normal range %(lo)s to %(hi)s %(unit)s")
                % {"lo": f"{normal.low:g}", "hi": f"{normal.high:g}", "unit": unit},
            )
        )
        points = []
        for lab in rows:
            value = float(
                lab.corrected_calcium_mmol_l
                if test == "calcium_total" and lab.corrected_calcium_mmol_l is not None
                else lab.value
            )
            low = float(lab.reference_low) if lab.reference_low is not None and test != "calcium_total" else normal.low
            high = (
                float(lab.reference_high) if lab.reference_high is not None and test != "calcium_total" else normal.high
            )
            x, py = sc.x(lab.drawn_on), vy(value)
            points.append(f"{x},{py}")
            status = _("low") if value < low else _("high") if value > high else _("normal")
            cls = "tl-lab" + ("" if low <= value <= high else " tl-abnormal")
            t.shapes.append(
                Shape(
                    "circle",
                    {"cx": x, "cy": py, "r": 4.5, "class": cls},
                    title=f"{label} {value:g} {unit} — {_fmt(lab.drawn_on)} — {status}",
                )
            )
        if len(points) > 1:
            t.shapes.insert(
                len(t.shapes) - len(rows), Shape("polyline", {"points": " ".join(points), "class": "tl-lab-line"})
            )
        y += lane_h + LANE_GAP

    # Lane: dental events.
    events = [e for e in dental if e.date >= first]
    if events:
        lane_h = 30.0
        t.lanes.append(Lane(_("Dental"), y, lane_h))
        seen: dict[date, int] = {}
        for e in sorted(events, key=lambda e: (e.date, e.pk or 0)):
            # Events on the same day sit side by side rather than on top of each other.
            x = sc.x(e.date) + 24 * seen.get(e.date, 0)
            seen[e.date] = seen.get(e.date, 0) + 1
            t.shapes.append(
                Shape(
                    "rect",
                    {"x": x - 11, "y": y + 4, "width": 22, "height": lane_h - 8, "rx": 4, "class": "tl-dental"},
                    title=f"{e.get_event_display()} — {_fmt(e.date)} {e.dentist}".strip(),
                )
            )
            t.shapes.append(
                Shape(
                    "text",
                    {"x": x, "y": y + lane_h / 2 + 4, "class": "tl-dental-text", "text-anchor": "middle"},
                    text=DENTAL_LETTERS.get(e.event, "D"),
                )
            )
        y += lane_h + LANE_GAP

    # Today.
    xt = sc.x(today)
    t.shapes.append(
        Shape("line", {"x1": xt, "y1": TOP - 6, "x2": xt, "y2": y - LANE_GAP, "class": "tl-today"}, title=_("Today"))
    )
    t.shapes.append(Shape("text", {"x": xt + 3, "y": y - LANE_GAP + 12, "class": "tl-today-text"}, text=_("today")))
    t.height = y + 6
    for s in t.shapes:
        if s.kind == "line" and s.attrs.get("y2") == 9999:
            s.attrs["y2"] = y - LANE_GAP
    return t
