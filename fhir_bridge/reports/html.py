"""The outcome report as one self-contained HTML page: key figures first, charts a service manager
takes in at a glance, then the tables with every subgroup. No script and no external asset;
every value from the data is escaped."""
from __future__ import annotations

from html import escape

from fhir_bridge.reports.charts import domain_bars, heat_grid, line_chart
from fhir_bridge.reports.disclosure import CAUTION_BELOW, ROUND_TO, SUPPRESS_BELOW
from fhir_bridge.reports.outcomes import Figure, OutcomeReport

__all__ = ["to_html"]

DIMENSION_TITLES = {"ethnicity": "Ethnic group", "gender": "Gender", "age-band": "Age band",
                    "team": "Team", "organisation": "Recording organisation"}
SUBGROUP_COLUMNS = [("people", None, "People"), ("prom-dialogs", None, "PROM DIALOGs"),
                    ("sqol-mean", None, "Mean SQOL"), ("treatment-satisfaction-mean", None, "Mean treatment satisfaction"),
                    ("people-paired", None, "People with change"), ("sqol-change-mean", None, "Mean SQOL change"),
                    ("sqol-meaningful-improvement", None, "SQOL change > 0.125"),
                    ("t1-completion", None, "T1 done"), ("t2-completion", None, "T2 done"),
                    ("coproduced-care-plan", None, "DIALOG+ care plan")]
ITEM_COLUMNS = [("outcomes", "item-mean", "Mean rating"), ("outcomes", "item-dissatisfied", "Rating 1-3"),
                ("change", "item-change-mean", "Mean change"), ("change", "item-reliable-improvement", "Improved ≥ 1"),
                ("change", "item-reliable-deterioration", "Deteriorated ≥ 1"),
                ("change", "item-change-from-dissatisfied", "Change from 1-3"),
                ("change", "item-change-from-satisfied", "Change from 5-7")]
STYLE = """
body{font-family:Arial,sans-serif;color:#0b0c0c;max-width:1100px;margin:24px auto;padding:0 16px;line-height:1.4}
h1{font-size:28px;margin-bottom:4px}h2{font-size:21px;margin-top:36px;border-bottom:2px solid #1d70b8}
.meta{color:#505a5f}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border-left:6px solid #1d70b8;background:#f3f2f1;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:26px}table{border-collapse:collapse;margin:12px 0;font-size:14px}
th,td{border:1px solid #b1b4b6;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f3f2f1}.caution{background:#fff7bf}.note{font-size:13px;color:#505a5f}
svg{max-width:100%;height:auto;margin:8px 0}
"""


def to_html(report: OutcomeReport, *, title: str = "DIALOG outcomes") -> str:
    r = report.request
    period = f"{r.start or 'the first DIALOG'} to {r.end or report.as_of}"
    scope = {"population": "Population: every partner",
             "service": "Service: " + ", ".join([*map(_org, r.organizations), *r.teams]),
             "individual": f"Individual: Patient/{r.patient_id}"}[r.level]
    parts = [f"<h1>{escape(title)}</h1>",
             f'<p class="meta">{escape(scope)} · {escape(period)} · ages at {report.as_of}</p>',
             _cards(report)]
    if r.level == "individual":
        parts += _individual(report)
    parts += [_domain_chart(report), _trend(report)]
    parts += [_items_table(report), *[_subgroup_table(report, d) for d in report.dimensions if d != "all"],
              _left_out(report), _notes(report)]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def _org(value: str) -> str:
    return value.rpartition("|")[2]


def _text(f: Figure | None) -> str:
    return "" if f is None else f.shown.text


def _cell(f: Figure | None) -> str:
    if f is None:
        return "<td></td>"
    if f.shown.caution:
        return f'<td class="caution">{escape(f.shown.text)} †</td>'
    return f"<td>{escape(f.shown.text)}</td>"


def _cards(report: OutcomeReport) -> str:
    cards = [("people", None, "people"), ("prom-dialogs", None, "PROM DIALOGs"), ("sqol-mean", None, "mean SQOL (1-7)"),
             ("treatment-satisfaction-mean", None, "mean treatment satisfaction"),
             ("sqol-change-mean", None, "mean SQOL change"), ("sqol-meaningful-improvement", None, "improved > 0.125"),
             ("t2-completion", None, "T2 done (of T1)"), ("coproduced-care-plan", None, "with a DIALOG+ care plan")]
    html = []
    for measure, item, label in cards:
        f = report.figure(measure, item)
        if f is not None and f.shown.text:
            html.append(f'<div class="card"><b>{escape(f.shown.text)}{" †" if f.shown.caution else ""}</b>'
                        f"{escape(label)}</div>")
    return f'<div class="cards">{"".join(html)}</div>'


def _domain_chart(report: OutcomeReport) -> str:
    rows = [(display, _value(report.figure("item-entry-mean", code)), _value(report.figure("item-latest-mean", code)))
            for code, display, change in report.items if change]
    if not any(b is not None or a is not None for _, b, a in rows):
        return "<h2>First and latest DIALOG per life domain</h2><p>No person has two PROM DIALOGs in this period.</p>"
    return ("<h2>First and latest DIALOG per life domain</h2>"
            "<p class=\"note\">Mean rating of the people whose episode has an entry and a later PROM DIALOG: "
            "grey the entry, blue the latest. 4 is \"in the middle\".</p>"
            + domain_bars("Mean rating per life domain: entry and latest", rows))


def _value(f: Figure | None) -> float | None:
    return None if f is None or f.shown.value is None else float(f.shown.value)


def _trend(report: OutcomeReport) -> str:
    if not report.trend:
        return ""
    points = [(t["month"], t["sqol_mean"].value) for t in report.trend]
    counts = ", ".join(f"{t['month']}: {t['dialogs'].text or 0}" for t in report.trend)
    return ("<h2>Mean SQOL over time</h2>"
            + line_chart("Mean SQOL of PROM DIALOGs per month", points,
                         caption="* suppressed (fewer than 5 people)")
            + f'<p class="note">PROM DIALOGs per month: {escape(counts)}</p>')


def _items_table(report: OutcomeReport) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for _, _, label in ITEM_COLUMNS)
    rows = []
    for code, display, _ in report.items:
        cells = "".join(_cell(report.figure(measure, code)) for _, measure, _ in ITEM_COLUMNS)
        rows.append(f"<tr><td>{escape(display)}</td>{cells}</tr>")
    return ("<h2>Per item</h2><p class=\"note\">Items 1-8 are the life domains (SQOL, PROM); 9-11 treatment "
            "satisfaction (PREM), left out of change measures.</p>"
            f"<table><tr><th>Item</th>{head}</tr>{''.join(rows)}</table>")


def _subgroup_table(report: OutcomeReport, dimension: str) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for _, _, label in SUBGROUP_COLUMNS)
    rows = []
    for stratum in report.strata(dimension):
        cells = "".join(_cell(report.figure(m, i, dimension, stratum)) for m, i, _ in SUBGROUP_COLUMNS)
        rows.append(f"<tr><td>{escape(stratum)}</td>{cells}</tr>")
    title = DIMENSION_TITLES.get(dimension, dimension)
    return (f"<h2>By {escape(title.lower())}</h2>"
            f"<table><tr><th>{escape(title)}</th>{head}</tr>{''.join(rows)}</table>")


def _left_out(report: OutcomeReport) -> str:
    care, duplicates = report.figure("care-planning-dialogs"), report.figure("possible-duplicate-dialogs")
    return ("<h2>Entries left out of outcome figures</h2>"
            f"<p>DIALOG+ care-planning entries: <b>{escape(_text(care))}</b>. "
            f"Possible duplicates (a PROM recorded soon after another): <b>{escape(_text(duplicates))}</b>. "
            "They are counted here and nowhere else: ratings taken while planning care, or twice, are not "
            "outcome measurements.</p>")


def _notes(report: OutcomeReport) -> str:
    control = report.request.disclosure_control and report.request.level != "individual"
    rules = (f"Disclosure control: counts below {SUPPRESS_BELOW} are shown as *, other counts are rounded to the "
             f"nearest {ROUND_TO}; a share is suppressed when its numerator or denominator is below {SUPPRESS_BELOW}, "
             f"a mean when fewer than {SUPPRESS_BELOW} people stand behind it. Shares and means are computed from "
             "unrounded counts." if control else "Disclosure control is off: counts are exact.")
    entry = ("the exit DIALOG of one service serves as the entry DIALOG of the next service of the same provider"
             if report.request.exit_as_entry else "each service's episode needs its own entry DIALOG")
    return ("<h2>How to read this</h2><ul class=\"note\">"
            f"<li>{escape(rules)}</li>"
            f"<li>† caution: the figure rests on fewer than {CAUTION_BELOW} people; one person more or less moves it "
            "visibly.</li>"
            "<li>Means and shares rating 1-3 use PROM-purpose DIALOGs only. SQOL is the mean of items 1-8, "
            "treatment satisfaction of items 9-11.</li>"
            "<li>Change is the latest minus the entry PROM DIALOG of an episode (per person and provider; a referral, "
            f"or assessment to discharge); {escape(entry)}. A change of 1 point on an item is reliable; a mean SQOL "
            "change above 0.125 is one point on one of the eight life domains.</li>"
            "<li>T1: the person's episode has an entry DIALOG; T2: and a later PROM DIALOG (share of T1).</li>"
            "</ul>")


def _individual(report: OutcomeReport) -> list[str]:
    dialogs = report.dialogs
    if not dialogs:
        return ["<h2>DIALOGs</h2><p>No DIALOG of this person in the period.</p>"]
    columns = [f"{(d['authored_text'] or '')[:10]}{' (CP)' if d['purpose'] == 'care-planning' else ''}" for d in dialogs]
    rows = [(display, [d[f"rating_{code.replace('-', '_')}"] for d in dialogs]) for code, display, _ in report.items]
    proms = [d for d in dialogs if d["outcome"]]
    parts = ["<h2>Ratings over time</h2><p class=\"note\">Each column one DIALOG; (CP) a DIALOG+ care-planning "
             "entry. Red dissatisfied, yellow in the middle, green satisfied.</p>",
             heat_grid("Ratings per domain and DIALOG", columns, rows)]
    if proms:
        parts.append(line_chart("Mean SQOL of the PROM DIALOGs", [((d["authored_text"] or "")[:10], d["sqol_mean"])
                                                                   for d in proms]))
    for e in report.episodes:
        if not e["paired"]:
            continue
        moved = [(display, e.get("change_" + code.replace("-", "_"))) for code, display, change in report.items if change]
        changes = ", ".join(f"{display} {value:+d}" for display, value in moved if value)
        sqol = e["sqol_change"]
        parts.append(f"<p>Episode at {escape(_org(e['recording_organization'] or ''))}: entry "
                     f"{escape(str(e['entry_authored'])[:10])} ({escape(str(e['entry_timepoint']))}), latest "
                     f"{escape(str(e['latest_authored_text'])[:10])}: SQOL change "
                     f"{'' if sqol is None else f'{sqol:+.2f}'}; items changed: {escape(changes or 'none')}.</p>")
    return parts
