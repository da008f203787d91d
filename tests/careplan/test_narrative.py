"""The plan in plain English: narrative and page render one view, meet the narrative rules, and
partner text is always text (never markup)."""
from __future__ import annotations

from lxml import etree

from fhir_bridge.careplan import plan_div, plan_page, plan_view, team_div
from fhir_bridge.careplan.narrative import goal_div
from fhir_bridge.validation.narrative import narrative_problem
from tests.careplan.sessions import action, agreement, domain, key_worker, review, session
from tests.careplan.test_merge import FIRST, ME, SAM, merge, then

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & </div><div>'


def hostile_plan():
    first = merge(session(domain("accommodation", action(HOSTILE, ME, due="2024-03-01"), best_case=HOSTILE,
                                 understanding=HOSTILE), key_worker({**SAM, "display": HOSTILE}),
                          agreement("person", family=True), date="2024-02-20T10:00:00Z"))
    return first


def test_the_narrative_is_plain_english():
    merged = merge(FIRST)
    div = plan_div(plan_view(merged.plan, merged.team, merged.goals))
    assert narrative_problem(div) is None
    text = "".join(etree.fromstring(div).itertext())
    assert "Key worker: Sam Adeyemi (since 20 February 2024)." in text
    assert "Agreed by Rosa Pemberton and a professional on 20 February 2024." in text
    assert "Accommodation" in text and "Best case: A dry flat" in text
    assert "Rosa Pemberton: Phone the landlord by 1 March 2024 (not started yet)" in text


def test_reviewed_actions_say_how_they_went():
    first = merge(FIRST)
    done = merge(session(review(first.plan["activity"][0]["id"], "dropped", "Moved out"), date="2024-04-01T09:00:00Z"),
                 then(first))
    div = plan_div(plan_view(done.plan, done.team, done.goals))
    assert "(dropped)" in div


def test_an_unagreed_plan_says_so():
    merged = merge(session(domain("accommodation"), key_worker(SAM)))
    assert "This plan has not been agreed yet." in plan_div(plan_view(merged.plan, merged.team, merged.goals))


def test_partner_text_cannot_inject_markup_into_the_narrative():
    merged = hostile_plan()
    for div in (plan_div(plan_view(merged.plan, merged.team, merged.goals)), team_div(merged.team),
                goal_div(merged.goals[0], "Accommodation")):
        assert narrative_problem(div) is None, div
        root = etree.fromstring(div)
        assert not root.xpath("//*[local-name() = 'script' or local-name() = 'img']")
        assert HOSTILE in "".join(root.itertext()) or HOSTILE.strip() in "".join(root.itertext())


def test_partner_text_cannot_inject_markup_into_the_page():
    merged = hostile_plan()
    page = plan_page(plan_view(merged.plan, merged.team, merged.goals))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)&gt;" in page
    tree = etree.fromstring(page.split("\n", 1)[1], etree.HTMLParser())
    assert not tree.xpath("//script | //img | //*[@onerror]")
    assert HOSTILE in "".join(tree.itertext())
    assert "This is a family care plan." in page
