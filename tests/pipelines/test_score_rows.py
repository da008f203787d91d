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


RATING_SYSTEM = "https://fhir-bridge.example.org/CodeSystem/dialog-rating"
YES_NO = "http://terminology.hl7.org/CodeSystem/v2-0136"


def _general(score_rows: ScoreRows, response: dict, monkeypatch) -> dict | None:
    """The scores as score_dialog makes them (the one-pass scorer stood aside)."""
    with monkeypatch.context() as patched:
        patched.setattr(score_rows, "_plain", lambda items: None)
        return score_rows.scores(response)


def _variant(response: dict, rng) -> dict:
    """The response with its ratings and help answers drawn at random: 8 (not applicable), a
    rating or a help answer left out, whole items left out."""
    items = []
    for item in response["item"]:
        if rng.random() < 0.08:
            continue
        coding = item["answer"][0]["valueCoding"]
        if coding["system"] == RATING_SYSTEM:
            coding = {**coding, "code": str(rng.choice([1, 2, 3, 4, 5, 6, 7, 7, 8]))}
        else:
            coding = {**coding, "code": rng.choice("YN")}
        items.append({**item, "answer": [{"valueCoding": coding}]} if rng.random() > 0.05 else
                     {k: v for k, v in item.items() if k != "answer"})
    return {**response, "item": items}


def test_the_one_pass_scorer_agrees_with_score_dialog(score_rows, response, monkeypatch):
    import random

    rng = random.Random(7)
    answered = 0
    for _ in range(600):
        variant = _variant(response, rng)
        fast = score_rows._plain(variant["item"])
        if fast is not None:
            answered += 1
            assert fast == _general(score_rows, variant, monkeypatch), variant["item"]
        assert score_rows.scores(variant) == _general(score_rows, variant, monkeypatch)
    assert answered == 600  # every usual response is scored in one pass


def _edited(response: dict, index: int, **changes) -> dict:
    items = [dict(item) for item in response["item"]]
    items[index] = {k: v for k, v in {**items[index], **changes}.items() if v is not None}
    return {**response, "item": items}


@pytest.mark.parametrize("odd", [
    lambda r: {**r, "item": r["item"] + [r["item"][0]]},                                  # a linkId twice
    lambda r: _edited(r, 0, linkId="not-dialog"),
    lambda r: _edited(r, 0, answer=[{"valueCoding": {"system": "https://other.example.org", "code": "3"}}]),
    lambda r: _edited(r, 0, answer=[{"valueCoding": {"code": "3"}}]),                     # no system
    lambda r: _edited(r, 0, answer=[{"valueInteger": 3}]),
    lambda r: _edited(r, 0, answer=[]),
    lambda r: {**r, "item": [{**r["item"][0], "answer": None}] + r["item"][1:]},        # null
    lambda r: _edited(r, 0, answer=["3"]),                                                # not an object
    lambda r: _edited(r, 0, answer=r["item"][0]["answer"] * 2),                            # two answers
    lambda r: _edited(r, 1, answer=[{"valueCoding": {"system": YES_NO, "code": "maybe"}}]),
    lambda r: _edited(r, 1, answer=[{"valueBoolean": True}]),
    lambda r: {**r, "item": [{"linkId": "group", "item": r["item"]}]},                   # wrapped in a group
    lambda r: _edited(r, 0, answer=[{"valueCoding": {"system": RATING_SYSTEM, "code": 3}}]),  # a number for a code
])
def test_a_response_with_something_to_report_is_left_to_score_dialog(score_rows, response, odd, monkeypatch):
    variant = odd(response)
    assert score_rows._plain(variant["item"]) is None
    assert score_rows.scores(variant) == _general(score_rows, variant, monkeypatch)
