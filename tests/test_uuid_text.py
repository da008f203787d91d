import uuid

import pytest

from fhir_bridge.uuid_text import uuid5_text

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir-bridge.example.org")


@pytest.mark.parametrize("name", ["", "QuestionnaireResponse|A1|RV3", "Patient|Zoë Ødegård|", "nhs|9434765919",
                                  "x" * 1000, "\u0000|\ud7ff|\U0001f600"])
def test_the_same_text_as_the_standard_library(name):
    assert uuid5_text(NAMESPACE, name) == str(uuid.uuid5(NAMESPACE, name))
    assert uuid5_text(uuid.NAMESPACE_DNS, name) == str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
