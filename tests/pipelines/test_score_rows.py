"""The dialog_scores row of a DIALOG response (pipelines/score_rows.py): the scores an import's
worker made for the response as mapped are reused only while the answers are the same."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_bridge.config import Settings
from fhir_bridge.measures import load_dialog_definition
from fhir_bridge.pipelines.score_rows import ScoreRows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "dialog-questionnaire-response"


@pytest.fixture(scope="module")
def score_rows() -> ScoreRows:
    settings = Settings()
    return ScoreRows(load_dialog_definition(settings.profiles_dir, settings.terminology_dir), {"sqol": 6, "treatment": 2})


@pytest.fixture
def response() -> dict:
    return orjson.loads((EXAMPLES / "valid-prom-assessment-complete.json").read_bytes())


def _answers_changed(response: dict) -> dict:
    """The response with its first rating answered otherwise (a new list: linking never does this)."""
    items = [dict(item) for item in response["item"]]
    first = next(i for i, item in enumerate(items) if (item.get("answer") or [{}])[0].get("valueCoding"))
    coding = items[first]["answer"][0]["valueCoding"]
    items[first] = {**items[first], "answer": [{"valueCoding": {**coding, "code": "1" if coding["code"] != "1" else "7"}}]}
    return {**response, "item": items}


def test_scores_made_for_the_response_as_mapped_are_reused_when_only_the_subject_moved(score_rows, response):
    scores = score_rows.scores(response)
    moved = {**response, "subject": {"reference": "Patient/another"}}  # what linking does: the items stay
    assert score_rows(moved, response, scores) == score_rows(moved)
    assert score_rows(moved, response, scores)["subject_id"] == "another"
    assert score_rows(moved, response, {**scores, "sqol_mean": -1.0})["sqol_mean"] == -1.0  # reused, not made again


def test_changed_answers_or_questionnaire_are_scored_again(score_rows, response):
    scores = score_rows.scores(response)
    changed = _answers_changed(response)
    assert score_rows(changed, response, scores) == score_rows(changed) != score_rows(response)
    versioned = {**response, "questionnaire": response["questionnaire"].split("|")[0] + "|0.9"}
    assert score_rows(versioned, response, {**scores, "sqol_mean": -1.0})["sqol_mean"] != -1.0


def test_only_dialog_responses_have_scores_and_rows(score_rows, response):
    other = {**response, "questionnaire": "https://example.org/Questionnaire/phq9"}
    assert score_rows.scores(other) is None and score_rows(other) is None
    assert score_rows.scores({"resourceType": "Patient", "id": "p"}) is None
