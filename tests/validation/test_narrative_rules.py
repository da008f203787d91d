"""The FHIR narrative rules (txt-1, txt-2, well-formed XHTML in its namespace), checked on every
xhtml value the validator meets."""
from __future__ import annotations

import pytest

from fhir_bridge.validation.narrative import narrative_problem

DIV = '<div xmlns="http://www.w3.org/1999/xhtml">{}</div>'


@pytest.mark.parametrize("content", [
    "<p>Plan for <b>Rosa</b> &amp; family</p>",
    '<table border="1"><tr><td colspan="2">x</td></tr></table><ul><li>walk</li></ul><br/>',
    '<a href="https://example.org/leaflet">leaflet</a> <span style="color: red" class="c" lang="en">!</span>',
    '<img src="#photo" alt="me"/>',
])
def test_basic_html_is_allowed(content):
    assert narrative_problem(DIV.format(content)) is None


@pytest.mark.parametrize("text, found", [
    (DIV.format("<script>alert(1)</script>"), "<script>"),
    (DIV.format('<p onclick="steal()">hi</p>'), "'onclick'"),
    (DIV.format('<a href="javascript:steal()">hi</a>'), "may not run script"),
    (DIV.format("<form><p>x</p></form>"), "<form>"),
    (DIV.format("<iframe>x</iframe>"), "<iframe>"),
    (DIV.format("<p>x</p><object>y</object>"), "<object>"),
    (DIV.format("<p>&nbsp;</p>"), "not well-formed"),         # HTML entities: narrative.html asks for Unicode
    (DIV.format("<p>unclosed</div>"), "not well-formed"),
    ("<div><p>no namespace</p></div>", "XHTML namespace"),
    (DIV.format("   "), "txt-2"),
    (DIV.format('<svg xmlns="http://www.w3.org/2000/svg"/>'), "not an XHTML element"),
])
def test_what_breaks_the_rules_is_named(text, found):
    assert found in narrative_problem(text)


def test_the_validator_reports_a_bad_narrative_on_the_div(validator):
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": DIV.format("<script>x</script>")}}
    result = validator.validate(patient)
    assert ("error", "value", "Patient.text.div") in {(i.severity, i.code, i.expression) for i in result.issues}
