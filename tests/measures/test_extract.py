import copy
import uuid

import pytest

from fhir_bridge.measures import SCORE_PROFILE, extract_observations, score_dialog
from fhir_bridge.measures.dialog_items import DIALOG_SCORE_SYSTEM

RATINGS = {
    "mental-health": 2, "physical-health": 4, "job-situation": 3, "accommodation": 8,
    "friendships": 6, "medication": 5, "meetings": 7,
}  # 6 rated, accommodation not applicable, four domains unanswered
CONTEXT = {
    "id": "qr-123",
    "subject": {"reference": "Patient/p-1"},
    "authored": "2024-03-05T10:15:00Z",
    "author": {"reference": "Practitioner/nurse-7"},
}


@pytest.fixture()
def qr(respond):
    return respond(RATINGS, more_help={"job-situation": True}, **CONTEXT)


def _by_code(observations):
    return {o["code"]["coding"][0]["code"]: o for o in observations}


def test_one_observation_per_rated_item_plus_the_means(qr, definition):
    observations = extract_observations(qr, definition)
    items = [o for o in observations if "valueInteger" in o]
    assert len(items) == 6
    assert len(observations) == 8
    snomed = {definition.domain(code).snomed: rating for code, rating in RATINGS.items() if rating != 8}
    assert {o["code"]["coding"][0]["code"]: o["valueInteger"] for o in items} == snomed
    assert all(o["code"]["coding"][0]["system"] == "http://snomed.info/sct" for o in items)


def test_means_carry_quantity_rounded_and_the_items_they_rest_on(qr, definition):
    means = _by_code(extract_observations(qr, definition))
    sqol = means["sqol-mean"]
    assert sqol["code"]["coding"][0]["system"] == DIALOG_SCORE_SYSTEM
    assert sqol["valueQuantity"] == {"value": 3.75, "unit": "score", "system": "http://unitsofmeasure.org",
                                     "code": "{score}"}  # (2 + 4 + 3 + 6) / 4
    assert sqol["component"] == [{"code": {"coding": [{"system": DIALOG_SCORE_SYSTEM, "code": "items-answered"}]},
                                  "valueInteger": 4}]
    assert means["treatment-satisfaction-mean"]["valueQuantity"]["value"] == 6.0


def test_a_mean_is_rounded_to_two_decimals(respond, definition):
    qr = respond({"mental-health": 4, "physical-health": 4, "job-situation": 3}, id="qr-thirds")
    assert _by_code(extract_observations(qr, definition))["sqol-mean"]["valueQuantity"]["value"] == 3.67


def test_every_observation_points_back_to_the_response(qr, definition):
    for observation in extract_observations(qr, definition):
        assert observation["resourceType"] == "Observation"
        assert observation["meta"] == {"profile": [SCORE_PROFILE]}
        assert observation["status"] == "final"
        assert observation["category"][0]["coding"][0]["code"] == "survey"
        assert observation["subject"] == {"reference": "Patient/p-1"}
        assert observation["effectiveDateTime"] == "2024-03-05T10:15:00Z"
        assert observation["performer"] == [{"reference": "Practitioner/nurse-7"}]
        assert observation["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr-123"}]


def test_ids_are_stable_across_runs_and_unique(qr, definition):
    first = extract_observations(qr, definition)
    again = extract_observations(copy.deepcopy(qr), definition)
    assert first == again
    ids = [o["id"] for o in first]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 5 for i in ids)


def test_ids_differ_between_responses(qr, definition):
    other = {**qr, "id": "qr-456"}
    assert not {o["id"] for o in extract_observations(qr, definition)} & \
               {o["id"] for o in extract_observations(other, definition)}


def test_a_response_without_id_gets_content_based_ids(qr, definition):
    unstored = {k: v for k, v in qr.items() if k != "id"}
    reordered = dict(reversed(list(unstored.items())))  # same content, keys in another order
    observations = extract_observations(unstored, definition)
    assert [o["id"] for o in observations] == [o["id"] for o in extract_observations(reordered, definition)]
    assert all("derivedFrom" not in o for o in observations)
    changed = {**unstored, "authored": "2024-03-06"}
    assert observations[0]["id"] != extract_observations(changed, definition)[0]["id"]


def test_a_response_without_id_is_referenced_by_its_identifier(qr, definition):
    identifier = {"system": "https://trust.example.nhs.uk/dialog", "value": "D-991"}
    unstored = {**{k: v for k, v in qr.items() if k != "id"}, "identifier": identifier}
    assert extract_observations(unstored, definition)[0]["derivedFrom"] == [{"identifier": identifier}]


def test_a_given_score_is_used_and_a_missing_mean_is_skipped(qr, definition):
    score = score_dialog(qr, definition, min_answered={"sqol": 5})
    codes = _by_code(extract_observations(qr, definition, score))
    assert "sqol-mean" not in codes
    assert "treatment-satisfaction-mean" in codes


def test_nothing_rated_extracts_nothing(respond, definition):
    assert extract_observations(respond({"medication": 8}, id="qr-empty"), definition) == []


def test_observations_share_no_nested_objects(qr, definition):
    first, second = extract_observations(qr, definition)[:2]
    first["subject"]["reference"] = "Patient/other"
    first["category"][0]["coding"][0]["code"] = "changed"
    assert second["subject"] == {"reference": "Patient/p-1"}
    assert second["category"][0]["coding"][0]["code"] == "survey"
    assert qr["subject"] == {"reference": "Patient/p-1"}
