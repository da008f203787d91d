"""DIALOG fixtures: the definition loaded from the repository's profiles/ and terminology/, and a
builder of QuestionnaireResponses keyed by domain code."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from fhir_bridge.measures import DialogDefinition, load_dialog_definition
from fhir_bridge.measures.dialog_items import (
    DIALOG_QUESTIONNAIRE_URL,
    DIALOG_RATING_SYSTEM,
    YES_NO_SYSTEM,
)

REPO = Path(__file__).resolve().parents[2]

Respond = Callable[..., dict]


@pytest.fixture(scope="session")
def conformance() -> tuple[Path, Path]:
    """(profiles dir, terminology dir) holding the DIALOG Questionnaire and dialog-domain CodeSystem."""
    return REPO / "profiles", REPO / "terminology"


@pytest.fixture(scope="session")
def definition(conformance: tuple[Path, Path]) -> DialogDefinition:
    return load_dialog_definition(*conformance)


@pytest.fixture()
def sources(conformance: tuple[Path, Path]) -> tuple[dict, dict]:
    """Fresh copies of the Questionnaire and CodeSystem JSON, for tests that break them."""
    profiles, terminology = conformance
    return (orjson.loads((profiles / "Questionnaire-dialog.json").read_bytes()),
            orjson.loads((terminology / "CodeSystem-dialog-domain.json").read_bytes()))


def rating_answer(value: Any) -> dict:
    """An int or digit string becomes a dialog-rating Coding; a dict is taken as the answer itself."""
    if isinstance(value, dict):
        return value
    return {"valueCoding": {"system": DIALOG_RATING_SYSTEM, "code": str(value)}}


@pytest.fixture(scope="session")
def respond(definition: DialogDefinition) -> Respond:
    """respond({"mental-health": 5, ...}, more_help={"mental-health": True}, order=[...]) -> QR dict.

    Items are listed in `order` (domain codes, default MHSDS order); None ratings are left out.
    """
    def build(ratings: dict[str, Any], *, more_help: dict[str, bool] | None = None,
              order: list[str] | None = None, **resource: Any) -> dict:
        items = []
        for code in order or [d.code for d in definition.domains]:
            domain = definition.domain(code)
            if ratings.get(code) is not None:
                link = definition.rating_item_for(domain).link_id
                items.append({"linkId": link, "answer": [rating_answer(ratings[code])]})
            if more_help and code in more_help:
                items.append({"linkId": definition.help_link_for(domain), "answer": [
                    {"valueCoding": {"system": YES_NO_SYSTEM, "code": "Y" if more_help[code] else "N"}}]})
        return {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": f"{DIALOG_QUESTIONNAIRE_URL}|{definition.version}",
            "status": "completed",
            **resource,
            "item": items,
        }
    return build

