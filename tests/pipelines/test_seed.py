"""Seeding the examples: only into an empty store, valid examples only, every example accounted for."""
from __future__ import annotations

from fhir_bridge.api.app import RESOURCE_TYPES
from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.pipelines.seed import seed_examples
from tests.conftest import EXAMPLES


def test_seeds_valid_examples_once_and_accounts_for_the_rest(tmp_path, validator):
    bridge = Bridge(Settings(data_dir=tmp_path), validator=validator)
    try:
        first = seed_examples(bridge, EXAMPLES, RESOURCE_TYPES)
        assert first.held == 0 and first.stored
        assert not any(name.split("/")[-1].startswith("invalid") for name in first.stored)
        assert all(reason for _, reason in first.skipped)
        assert "bridge-patient/valid-patient-nhs-number-verified.json" in first.stored
        assert bridge.repository.read("Patient", "example-patient-01").version_id == 1  # under its own id
        stored_count = bridge.repository.count()
        assert stored_count >= len(first.stored)  # plus a Provenance per write
        again = seed_examples(bridge, EXAMPLES, RESOURCE_TYPES)
        assert again.held == stored_count and not again.stored
        assert bridge.repository.count() == stored_count
    finally:
        bridge.close()
