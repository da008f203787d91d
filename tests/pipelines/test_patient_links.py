"""repointed: the one rewrite of a person's references (a merge, an import's linking, a session for
a person merged away)."""
from __future__ import annotations

from fhir_bridge.pipelines.patient_links import repointed

BASE = "https://bridge.example.org/fhir"


def test_every_reference_to_the_old_record_on_this_server_moves_and_no_other():
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "owner", "valueReference": {"reference": "Patient/old", "display": "Rosa"}},
        {"name": "response", "resource": {"subject": {"reference": "Patient/old/_history/3"},
                                          "source": {"reference": f"{BASE}/Patient/old"}}},
        {"name": "other", "part": [{"name": "a", "valueReference": {"reference": "https://elsewhere.nhs.uk/Patient/old"}},
                                   {"name": "b", "valueReference": {"reference": "Patient/older"}},
                                   {"name": "c", "valueString": "Patient/old"}]}]}
    moved = repointed(body, "old", "new", BASE)
    assert moved["parameter"][0]["valueReference"] == {"reference": "Patient/new", "display": "Rosa"}
    assert moved["parameter"][1]["resource"] == {"subject": {"reference": "Patient/new"},
                                                 "source": {"reference": f"{BASE}/Patient/new"}}
    assert moved["parameter"][2] == body["parameter"][2]  # another server's, another person, not a reference
    assert body["parameter"][0]["valueReference"]["reference"] == "Patient/old"  # a copy: the body is untouched
    assert repointed(body, "old", "new")["parameter"][1]["resource"]["source"] == {"reference": f"{BASE}/Patient/old"}
