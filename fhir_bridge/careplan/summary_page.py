"""`$dialog-summary` as a page a worker reads before starting another DIALOG (`_format=html`):
built from the operation's Parameters as an element tree, like the plan's page (all text escaped)."""
from __future__ import annotations

from lxml import etree

from fhir_bridge.careplan.narrative import add
from fhir_bridge.careplan.page import STYLE
from fhir_bridge.careplan.view import plain_date, reference_name

__all__ = ["summary_page"]


def summary_page(summary: dict) -> str:
    params = summary.get("parameter", [])
    person = reference_name(_value(params, "patient"), person="the person")
    html = etree.Element("html", lang="en")
    head = add(html, "head", ns=None)
    add(head, "meta", ns=None, charset="utf-8")
    add(head, "title", f"DIALOG summary: {person}", ns=None)
    add(head, "style", STYLE, ns=None)
    body = add(add(html, "body", ns=None), "main", ns=None)
    add(body, "h1", f"DIALOG summary for {person}", ns=None)
    add(body, "p", f"{_value(params, 'dialogCount') or 0} DIALOGs recorded.", ns=None, class_="lead")
    for name, heading in (("lastDialog", "Last DIALOG"), ("lastProm", "Last DIALOG as an outcome measure (PROM)")):
        part = next((p for p in params if p["name"] == name), None)
        if part is None:
            continue
        parts = part["part"]
        purpose = (_value(parts, "purpose") or {}).get("display", "")
        who = ", ".join(reference_name(_value(parts, k)) for k in ("author", "organization") if _value(parts, k))
        add(body, "h2", heading, ns=None)
        add(body, "p", f"{plain_date(_value(parts, 'authored'))}: {purpose}" + (f", by {who}" if who else "") + ".",
            ns=None)
        if _value(parts, "nextPromFrom"):
            add(body, "p", f"Another PROM before {plain_date(_value(parts, 'nextPromFrom'))} would be a possible "
                           "duplicate.", ns=None, class_="status")
    trajectories = [p["part"] for p in params if p["name"] == "trajectory"]
    if trajectories:
        add(body, "h2", "Ratings over time (1 totally dissatisfied ... 7 totally satisfied)", ns=None)
        table = add(body, "table", ns=None)
        for parts in trajectories:
            row = add(table, "tr", ns=None)
            add(row, "th", _value(parts, "domain").get("display", ""), ns=None, scope="row")
            add(row, "td", ", ".join(f"{_value(p['part'], 'rating')} ({plain_date(_value(p['part'], 'date'))})"
                                     for p in parts if p["name"] == "point"), ns=None)
    actions = [p["part"] for p in params if p["name"] == "openAction"]
    plan = _value(params, "carePlan")
    add(body, "h2", "Actions still open", ns=None)
    if plan is None:
        add(body, "p", "There is no DIALOG+ care plan yet.", ns=None)
    items = add(body, "ul", ns=None)
    for parts in actions:
        owners = " and ".join(reference_name(p["valueReference"]) for p in parts if p["name"] == "owner")
        due = f" by {plain_date(_value(parts, 'due'))}" if _value(parts, "due") else ""
        add(items, "li", f"{owners or 'someone'}: {_value(parts, 'description')}{due}", ns=None)
    return "<!DOCTYPE html>\n" + etree.tostring(html, encoding="unicode", method="html")


def _value(params: list[dict], name: str):
    for p in params:
        if p["name"] == name:
            return next((v for k, v in p.items() if k.startswith("value")), None)
    return None
