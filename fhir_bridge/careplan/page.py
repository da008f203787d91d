"""The plan as a readable HTML page a person could be handed (or print): `GET CarePlan/[id]` with
`_format=html`, and `CarePlan/[id]/$render`. Built as an element tree like the narrative, so every
piece of partner text is escaped; the page has no script and asks the browser to run none (the API
sends a Content-Security-Policy with it)."""
from __future__ import annotations

from lxml import etree

from fhir_bridge.careplan.narrative import add, xml_safe
from fhir_bridge.careplan.view import PlanView

__all__ = ["plan_page", "PAGE_HEADERS"]

# No script, no external anything: only the page's own inline style.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # a person's care plan: never kept by shared caches
}
STYLE = """
body { font-family: Arial, Helvetica, sans-serif; font-size: 1.15rem; line-height: 1.5; color: #212b32;
       max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 2rem; margin-bottom: 0.25rem; } h2 { border-top: 2px solid #d8dde0; padding-top: 1rem; }
.lead { font-size: 1.3rem; } .status { font-weight: bold; } .notes { color: #4c6272; font-size: 1rem; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; vertical-align: top;
       padding: 0.4rem; border-bottom: 1px solid #d8dde0; }
footer { margin-top: 2rem; color: #4c6272; font-size: 0.95rem; }
@media print { body { margin: 0; font-size: 11pt; } }
"""


def plan_page(view: PlanView, *, crisis: tuple[PlanView, ...] = ()) -> str:
    html = etree.Element("html", lang="en")
    head = add(html, "head", ns=None)
    add(head, "meta", ns=None, charset="utf-8")
    add(head, "meta", ns=None, name="viewport", content="width=device-width, initial-scale=1")
    add(head, "title", f"{view.title}: {view.person}", ns=None)
    add(head, "style", STYLE, ns=None)
    body = add(add(html, "body", ns=None), "main", ns=None)
    add(body, "h1", view.title, ns=None)
    add(body, "p", f"For {view.person}", ns=None, class_="lead")
    _summary(body, view)
    for section in view.sections:
        add(body, "h2", section.heading, ns=None)
        for label, text in (("What is going on", section.understanding), ("Best case", section.best_case),
                            ("Smallest step that would make a difference", section.smallest_step),
                            ("What could help", section.options)):
            if text:
                paragraph = add(body, "p", ns=None)
                add(paragraph, "strong", f"{label}: ", tail=text, ns=None)
        _actions(body, section.actions)
    for plan in crisis:
        add(body, "h2", plan.title, ns=None)
        for section in plan.sections:
            add(body, "h3", section.heading, ns=None)
            _actions(body, section.actions)
    footer = add(body, "footer", ns=None)
    add(footer, "p", "This plan was made together with you. If something is wrong or has changed, tell your key "
                     "worker: it can be changed at any time.", ns=None)
    if view.updated:
        add(footer, "p", f"Last changed on {view.updated}.", ns=None)
    return "<!DOCTYPE html>\n" + etree.tostring(html, encoding="unicode", method="html")


def _summary(body, view: PlanView) -> None:
    add(body, "p", f"Key worker: {view.key_worker}" if view.key_worker else "No key worker is named yet.", ns=None)
    if view.former_key_workers:
        add(body, "p", "Key workers before: " + "; ".join(view.former_key_workers), ns=None, class_="notes")
    if view.team:
        add(body, "p", "Also in your care team:", ns=None)
        items = add(body, "ul", ns=None)
        for name, role in view.team:
            add(items, "li", f"{name} ({role.lower()})", ns=None)
    add(body, "p", view.agreement, ns=None)
    if view.status not in ("active", ""):
        add(body, "p", f"This plan is {xml_safe(view.status).replace('-', ' ')}.", ns=None, class_="status")


def _actions(body, actions) -> None:
    if not actions:
        return
    table = add(body, "table", ns=None)
    header = add(add(table, "thead", ns=None), "tr", ns=None)
    for label in ("What", "Who", "By when", "How it is going"):
        add(header, "th", label, ns=None, scope="col")
    rows = add(table, "tbody", ns=None)
    for action in actions:
        row = add(rows, "tr", ns=None)
        what = add(row, "td", action.description, ns=None)
        for note in action.notes:
            add(what, "div", note, ns=None, class_="notes")
        add(row, "td", " and ".join(action.owners) or "-", ns=None)
        add(row, "td", action.due or "-", ns=None)
        add(row, "td", action.status, ns=None, class_="status")
