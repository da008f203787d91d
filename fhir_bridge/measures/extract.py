"""Observations from a DIALOG QuestionnaireResponse, in the manner of SDC $extract.

One Observation per rated item (SNOMED item concept, valueInteger) and one per available mean
(dialog-score code, valueQuantity, with the number of items it rests on). Ids are uuid5 of the
response and the code, so extracting the same response again yields the same resources.
"""
from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from fhir_bridge.measures.dialog import DialogScore, score_dialog
from fhir_bridge.measures.dialog_items import CANONICAL_BASE, DIALOG_SCORE_SYSTEM, DialogDefinition
from fhir_bridge.uuid_text import uuid5_text

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, CANONICAL_BASE)
SCORE_PROFILE = f"{CANONICAL_BASE}/StructureDefinition/dialog-score-observation"
SURVEY_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                               "code": "survey", "display": "Survey"}]}
MEAN_CODES = (("sqol-mean", "sqol_mean", "sqol_answered"),
              ("treatment-satisfaction-mean", "treatment_satisfaction_mean", "treatment_satisfaction_answered"))
ITEMS_ANSWERED_CODE = "items-answered"


def extract_observations(qr: Mapping[str, Any], definition: DialogDefinition,
                         score: DialogScore | None = None) -> list[dict]:
    """The score Observations for one response; `score` saves re-scoring when the caller has it."""
    score = score if score is not None else score_dialog(qr, definition)
    key = qr.get("id") or _content_hash(qr)
    base = _common(qr)
    observations = [
        _observation(key, base, definition.rating_item_for(item.domain).snomed_coding, {"valueInteger": item.rating})
        for item in score.items if item.rating is not None
    ]
    for code, mean_field, count_field in MEAN_CODES:
        mean = getattr(score, mean_field)
        if mean is not None:
            observations.append(_observation(key, base, {"system": DIALOG_SCORE_SYSTEM, "code": code}, {
                "valueQuantity": {"value": round(mean, 2), "unit": "score",
                                  "system": "http://unitsofmeasure.org", "code": "{score}"},
                "component": [{"code": {"coding": [{"system": DIALOG_SCORE_SYSTEM, "code": ITEMS_ANSWERED_CODE}]},
                               "valueInteger": getattr(score, count_field)}],
            }))
    return observations


def _content_hash(qr: Mapping[str, Any]) -> str:
    # A response not yet stored has no id: its canonical JSON identifies it just as well.
    return hashlib.sha256(orjson.dumps(qr, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _common(qr: Mapping[str, Any]) -> dict[str, Any]:
    """The elements every extracted Observation copies from the response."""
    common: dict[str, Any] = {}
    if "subject" in qr:
        common["subject"] = qr["subject"]
    if "authored" in qr:
        common["effectiveDateTime"] = qr["authored"]
    if "author" in qr:
        common["performer"] = [qr["author"]]
    if "id" in qr:
        common["derivedFrom"] = [{"reference": f"QuestionnaireResponse/{qr['id']}"}]
    elif qr.get("identifier"):
        common["derivedFrom"] = [{"identifier": qr["identifier"]}]
    return common


def _observation(key: str, common: dict[str, Any], coding: Mapping[str, str], value: dict[str, Any]) -> dict:
    return {
        "resourceType": "Observation",
        "id": uuid5_text(NAMESPACE, f"Observation|{key}|{coding['code']}"),
        "meta": {"profile": [SCORE_PROFILE]},
        "status": "final",
        "category": [copy.deepcopy(SURVEY_CATEGORY)],
        "code": {"coding": [dict(coding)]},
        **copy.deepcopy(common),  # no resource may share a nested dict with another or with the response
        **value,
    }
