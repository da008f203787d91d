"""Reading $dialog-plus-session Parameters: every problem is a 422 issue naming its element, all
reported at once."""
from __future__ import annotations

import pytest

from fhir_bridge.careplan.session import parse_session
from fhir_bridge.errors import InputError, Unprocessable
from tests.careplan.sessions import action, agreement, domain, key_worker, review, session, team_member

DOMAINS = {"mental-health": "Mental health", "accommodation": "Accommodation", "job-situation": "Job situation",
           "leisure-activities": "Leisure activities", "friendships": "Friendships"}
ME = {"reference": "Patient/p1"}
SAM = {"reference": "Practitioner/sam", "display": "Sam Adeyemi"}
NOW = "2024-02-20T11:00:00Z"


def parse(parameters: dict, max_domains: int = 3):
    return parse_session(parameters, patient_id="p1", domains=DOMAINS, max_domains=max_domains, now=NOW)


def problems(parameters: dict, max_domains: int = 3) -> list[tuple[str, str]]:
    with pytest.raises(Unprocessable) as caught:
        parse(parameters, max_domains)
    assert caught.value.http_status == 422
    return [(i["code"], i["expression"][0]) for i in caught.value.outcome["issue"]]


def test_a_full_session_is_read():
    read = parse(session(
        domain("accommodation", action("Phone the landlord", ME, due="2024-03-01"),
               understanding="Damp", best_case="A dry flat", smallest_step="Bedroom fixed", options="Complain"),
        review("action-1", "dropped", "Not needed"), agreement("person", "professional", family=True),
        key_worker(SAM, "2024-02-01"), team_member({"reference": "RelatedPerson/sis", "display": "Maya"}, "carer"),
        date="2024-02-20T10:00:00Z"))
    assert read.date == "2024-02-20T10:00:00Z" and read.day == "2024-02-20"
    [discussion] = read.discussions
    assert (discussion.domain, discussion.best_case, discussion.smallest_step) == ("accommodation", "A dry flat",
                                                                                    "Bedroom fixed")
    assert read.actions[0].owners == (ME,) and read.actions[0].due == "2024-03-01"
    assert read.reviews[0].outcome == "dropped" and read.reviews[0].note == "Not needed"
    assert read.agreement.agreed_by == ("person", "professional") and read.agreement.when == read.date
    assert read.agreement.family_care_plan is True
    assert read.key_worker.start == "2024-02-01" and read.members[0].role == "carer"


def test_the_session_date_defaults_to_the_ratings_then_now():
    assert parse(session()).date == NOW
    assert parse(session(response={"resourceType": "QuestionnaireResponse",
                                   "authored": "2024-01-05T09:00:00+00:00"})).date == "2024-01-05T09:00:00+00:00"


def test_a_coding_names_a_domain_too():
    parameters = session(domain("accommodation"))
    parameters["parameter"][0]["part"][0] = {"name": "code", "valueCoding": {
        "system": "https://fhir-bridge.example.org/CodeSystem/dialog-domain", "code": "friendships"}}
    assert parse(parameters).discussions[0].domain == "friendships"


def test_an_unknown_domain_names_its_code():
    assert problems(session(domain("housing"))) == [
        ("code-invalid", "Parameters.parameter[0].part[0].value.ofType(code)")]


def test_more_domains_than_the_setting_allows_names_the_first_one_too_many():
    four = session(*(domain(code) for code in ("mental-health", "accommodation", "job-situation", "friendships")))
    assert problems(four) == [("business-rule", "Parameters.parameter[3]")]
    assert len(parse(four, max_domains=4).discussions) == 4


def test_a_domain_twice_is_refused():
    assert problems(session(domain("accommodation"), domain("accommodation"))) == [
        ("business-rule", "Parameters.parameter[1]")]


def test_an_action_with_no_owner_names_the_missing_part():
    assert problems(session(domain("accommodation", action("Phone the landlord")))) == [
        ("required", "Parameters.parameter[0].part[1].part.where(name = 'owner')")]


def test_an_action_owned_by_another_kind_of_thing_or_person_is_refused():
    device = session(domain("accommodation", action("Take pills", {"reference": "Device/d1"})))
    assert problems(device) == [("invalid", "Parameters.parameter[0].part[1].part[1].value.ofType(Reference)")]
    someone_else = session(domain("accommodation", action("Take pills", {"reference": "Patient/p2"})))
    assert problems(someone_else) == [("invalid", "Parameters.parameter[0].part[1].part[1].value.ofType(Reference)")]


def test_a_key_worker_who_is_not_a_practitioner_is_refused():
    team = session(key_worker({"reference": "Organization/cmht", "display": "North CMHT"}))
    assert problems(team) == [("invalid", "Parameters.parameter[0].part[0].value.ofType(Reference)")]


def test_a_carer_must_be_a_related_person():
    assert problems(session(team_member(SAM, "carer"))) == [
        ("invalid", "Parameters.parameter[0].part[0].value.ofType(Reference)")]


def test_dates_in_the_wrong_order_are_refused():
    due_before = session(domain("accommodation", action("Phone", ME, due="2024-02-01")), date="2024-02-20T10:00:00Z")
    assert problems(due_before) == [("business-rule", "Parameters.parameter[1].part[1].part[2].value.ofType(date)")]
    agreed_before = session(agreement("person", date="2024-02-19T10:00:00Z"), date="2024-02-20T10:00:00Z")
    assert problems(agreed_before) == [("business-rule", "Parameters.parameter[1].part[1].value.ofType(dateTime)")]


def test_a_session_dated_tomorrow_is_taken_the_day_after_is_not():
    """A day's grace for clocks and time zones (NOW is 2024-02-20): later is a session in the future."""
    assert parse(session(date="2024-02-21T23:00:00Z")).date.startswith("2024-02-21")
    assert problems(session(date="2024-02-22T00:30:00Z")) == [("business-rule", "Parameters.parameter[0].value.ofType(dateTime)")]


def test_malformed_values_are_named():
    parameters = session(domain("accommodation", action("Phone", ME, due="next week")), review("x y", "finished"),
                         agreement("neighbour"))
    assert problems(parameters) == [
        ("value", "Parameters.parameter[0].part[1].part[2].value.ofType(date)"),
        ("value", "Parameters.parameter[1].part[0].value.ofType(id)"),
        ("code-invalid", "Parameters.parameter[1].part[1].value.ofType(code)"),
        ("code-invalid", "Parameters.parameter[2].part[0].value.ofType(code)")]


def test_unknown_names_are_refused_rather_than_lost():
    parameters = session(domain("accommodation"), {"name": "bestcase", "valueString": "typo"})
    parameters["parameter"][0]["part"].append({"name": "bestcase", "valueString": "typo"})
    assert problems(parameters) == [("not-supported", "Parameters.parameter[1]"),
                                    ("not-supported", "Parameters.parameter[0].part[1]")]


def test_text_a_narrative_could_not_carry_is_refused():
    assert problems(session(domain("accommodation", understanding="bad \x00 byte"))) == [
        ("value", "Parameters.parameter[0].part[1].value.ofType(string)")]


def test_every_problem_comes_back_at_once():
    parameters = session(domain("housing"), domain("accommodation", action("Phone")), review("a1", "finished"))
    assert len(problems(parameters)) == 3


def test_a_body_that_is_not_parameters_is_a_400():
    with pytest.raises(InputError):
        parse({"resourceType": "CarePlan"})
