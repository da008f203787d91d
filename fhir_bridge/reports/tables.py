"""The report as tables: one row per figure (CSV) or one JSON document with the period, the rules
applied and the figures. Under disclosure control only publishable values leave: the shown value
(rounded, or None with "*"), never the raw numerators and denominators behind it."""
from __future__ import annotations

import csv
import io

import orjson

from fhir_bridge.reports.disclosure import CAUTION_BELOW, ROUND_TO, SUPPRESS_BELOW
from fhir_bridge.reports.outcomes import Figure, OutcomeReport

__all__ = ["figure_rows", "to_csv", "to_json"]

COLUMNS = ["section", "measure", "item", "dimension", "stratum", "kind", "value", "shown", "suppressed", "caution"]
RAW_COLUMNS = ["numerator", "denominator", "people"]


def _controlled(report: OutcomeReport) -> bool:
    return report.request.disclosure_control and report.request.level != "individual"


def figure_rows(report: OutcomeReport) -> list[dict]:
    raw = not _controlled(report)
    return [_row(f, raw) for f in report.figures]


def _row(f: Figure, raw: bool) -> dict:
    row = {"section": f.section, "measure": f.measure, "item": f.item, "dimension": f.dimension, "stratum": f.stratum,
           "kind": f.kind, "value": f.shown.value, "shown": f.shown.text, "suppressed": f.shown.suppressed,
           "caution": f.shown.caution}
    if raw:
        row.update(numerator=f.numerator, denominator=f.denominator, people=f.people)
    return row


def to_csv(report: OutcomeReport) -> str:
    columns = COLUMNS + ([] if _controlled(report) else RAW_COLUMNS)
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(figure_rows(report))
    return out.getvalue()


def to_json(report: OutcomeReport) -> bytes:
    r = report.request
    document = {
        "level": r.level,
        "period": {"start": r.start.isoformat() if r.start else None, "end": r.end.isoformat() if r.end else None},
        "ages_at": report.as_of.isoformat(),
        "filters": {"organizations": list(r.organizations), "teams": list(r.teams), "patient": r.patient_id},
        "subgroups": list(r.subgroups or ()),
        "exit_as_entry": r.exit_as_entry,
        "disclosure_control": {"applied": _controlled(report), "suppress_below": SUPPRESS_BELOW,
                               "round_counts_to": ROUND_TO, "caution_below_people": CAUTION_BELOW},
        "items": [{"code": code, "display": display, "in_change_measures": change}
                  for code, display, change in report.items],
        "figures": figure_rows(report),
        "trend": [{"month": t["month"], **{k: t[k].value for k in ("dialogs", "people", "sqol_mean")}}
                  for t in report.trend],
    }
    if r.level == "individual":
        document["dialogs"] = report.dialogs
        document["episodes"] = report.episodes
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)
