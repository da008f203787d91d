"""The plan in plain English as FHIR narrative (text.div), regenerated from the structured data on
every change. Built as an element tree, never by pasting strings: partner text is always text,
so it cannot inject markup, and the result is well-formed XHTML that meets the narrative rules
(fhir_bridge.validation.narrative)."""
from __future__ import annotations

import re

from lxml import etree

from fhir_bridge.careplan.view import ActionView, PlanView, plain_date, plan_view

__all__ = ["XHTML", "narrative", "with_text", "plan_div", "team_div", "goal_div", "xml_safe"]

XHTML = "http://www.w3.org/1999/xhtml"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_safe(text: object) -> str:
    """Text as XML can carry it (the session parser refuses control characters; this is the backstop)."""
    return _NOT_XML.sub("", str(text))


def narrative(div: str) -> dict:
    return {"status": "generated", "div": div}


def with_text(resource: dict, div: str) -> dict:
    """The resource with generated narrative, placed where FHIR puts it (after meta) for readers."""
    head = {k: resource[k] for k in ("resourceType", "id", "meta") if k in resource}
    return {**head, "text": narrative(div), **{k: v for k, v in resource.items() if k not in head and k != "text"}}


def add(parent, tag: str, text: object = None, tail: object = None, ns: str | None = XHTML, **attributes):
    element = etree.SubElement(parent, f"{{{ns}}}{tag}" if ns else tag,
                               {k.rstrip("_"): xml_safe(v) for k, v in attributes.items()})
    if text is not None:
        element.text = xml_safe(text)
    if tail is not None:
        element.tail = xml_safe(tail)
    return element


def _div() -> etree._Element:
    return etree.Element(f"{{{XHTML}}}div", nsmap={None: XHTML})


def _text(div) -> str:
    return etree.tostring(div, encoding="unicode")


def action_sentence(action: ActionView) -> str:
    who = " and ".join(action.owners) or "someone"
    parts = [f"{who}: {action.description}"]
    if action.due:
        parts.append(f"by {action.due}")
    parts.append(f"({action.status})")
    return " ".join(parts)


def plan_div(view: PlanView) -> str:
    div = _div()
    add(div, "h2", view.title)
    add(div, "p", f"For {view.person}." if not view.is_crisis_plan else
        f"{view.person}'s crisis plan, part of their DIALOG+ care plan.")
    add(div, "p", f"Key worker: {view.key_worker}." if view.key_worker else "No key worker is named yet.")
    add(div, "p", view.agreement)
    if not view.sections:
        add(div, "p", "No actions have been agreed yet.")
    for section in view.sections:
        add(div, "h3", section.heading)
        if section.best_case:
            add(div, "p", f"Best case: {section.best_case}")
        if section.smallest_step:
            add(div, "p", f"Smallest noticeable step: {section.smallest_step}")
        if section.actions:
            items = add(div, "ul")
            for action in section.actions:
                add(items, "li", action_sentence(action))
    return _text(div)


def team_div(team: dict) -> str:
    view = plan_view({"subject": team.get("subject")}, team, ())
    div = _div()
    add(div, "p", f"{view.person}'s care team. Key worker: {view.key_worker or 'not named yet'}.")
    if view.former_key_workers:
        add(div, "p", "Before: " + "; ".join(view.former_key_workers) + ".")
    if view.team:
        items = add(div, "ul")
        for name, role in view.team:
            add(items, "li", f"{name}, {role.lower()}")
    return _text(div)


def goal_div(goal: dict, heading: str) -> str:
    div = _div()
    paragraph = add(div, "p")
    add(paragraph, "b", f"{heading}.", tail=f" Best case: {(goal.get('description') or {}).get('text', '')}")
    for target in goal.get("target", ()):
        if target.get("detailString"):
            add(div, "p", f"Smallest noticeable step: {target['detailString']}")
    if goal.get("startDate"):
        add(div, "p", f"First discussed on {plain_date(goal['startDate'])}.")
    return _text(div)
