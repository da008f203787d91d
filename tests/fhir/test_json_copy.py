"""json_copy: the deep copy of resources the care plan merge and JSON Patch work on."""
from __future__ import annotations

from decimal import Decimal

from fhir_bridge.fhir.codec import json_copy


def test_a_copy_shares_no_dict_or_list_with_the_original_and_keeps_every_leaf():
    original = {"resourceType": "CarePlan", "activity": [{"detail": {"description": "Swim", "scheduledString": None}}],
                "extension": [{"url": "x", "valueDecimal": Decimal("4.50")}], "count": 3, "done": False}
    copied = json_copy(original)
    assert copied == original and copied["extension"][0]["valueDecimal"] == Decimal("4.50")
    copied["activity"][0]["detail"]["description"] = "Walk"
    copied["activity"].append({})
    copied["extension"][0]["url"] = "y"
    assert original["activity"] == [{"detail": {"description": "Swim", "scheduledString": None}}]
    assert original["extension"][0]["url"] == "x"
