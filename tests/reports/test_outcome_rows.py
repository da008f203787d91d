"""What the store derives for reports on write (person attributes, a DIALOG's referral and
duplicate flag), and what migration 5 fills in for data stored before it."""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, text

from fhir_bridge.store import outcome_fields, schema
from fhir_bridge.store.migrations import MIGRATIONS
from tests.reports import dataset

TERMINOLOGY = Path(__file__).resolve().parents[2] / "terminology"


def _people(bridge) -> dict:
    with bridge.database.connect() as connection:
        return {r.patient_id: (r.gender, r.ethnic_category, r.birth_date)
                for r in connection.execute(select(schema.person_attributes))}


def _flags(bridge) -> dict:
    s = schema.dialog_scores
    with bridge.database.connect() as connection:
        return {r.response_id: (r.referral_id, bool(r.possible_duplicate))
                for r in connection.execute(select(s.c.response_id, s.c.referral_id, s.c.possible_duplicate))}


def test_person_attributes_follow_every_version_of_a_patient(bridge) -> None:
    repo = bridge.repository
    with repo.unit_of_work() as uow:
        uow.create(dataset.patient("p1", "female", "1990-06", "H"))
    assert _people(bridge) == {"p1": ("female", "H", 19900615)}   # a month only: its 15th
    with repo.unit_of_work() as uow:
        uow.update(dataset.patient("p1", "other", "1990", None))
    assert _people(bridge) == {"p1": ("other", None, 19900701)}   # a year only: 1 July
    with repo.unit_of_work() as uow:
        uow.delete("Patient", "p1")
    assert _people(bridge) == {}


def test_a_dialog_row_knows_its_referral_and_duplicate_tag(bridge) -> None:
    with bridge.repository.unit_of_work() as uow:
        uow.create_many([dataset.dialog("q1", "p1", "2024-01-01T00:00:00Z", timepoint="assessment", life=4,
                                        referral_id="r1"),
                         dataset.dialog("q2", "p1", "2024-01-05T00:00:00Z", timepoint="review", life=4, duplicate=True)])
    assert _flags(bridge) == {"q1": ("r1", False), "q2": (None, True)}


def test_the_duplicate_tag_is_the_one_terminology_defines() -> None:
    code_system = json.loads((TERMINOLOGY / "CodeSystem-dialog-entry-flag.json").read_text())
    assert code_system["url"] == outcome_fields.ENTRY_FLAG_SYSTEM
    assert outcome_fields.POSSIBLE_DUPLICATE in [c["code"] for c in code_system["concept"]]


def test_migration_5_fills_the_rows_for_data_stored_before_it(bridge) -> None:
    dataset.load(bridge.repository)
    expected_people, expected_flags = _people(bridge), _flags(bridge)
    step = next(m for m in MIGRATIONS if m.version == 5)
    with bridge.database.connect(write=True) as connection, connection.begin():
        # the shape a version-4 database had, holding the same resources; then the step alone
        # (later migrations, by others, are not this test's business)
        connection.execute(text("DROP TABLE person_attributes"))
        connection.execute(text("ALTER TABLE dialog_scores DROP COLUMN referral_id"))
        connection.execute(text("ALTER TABLE dialog_scores DROP COLUMN possible_duplicate"))
    with bridge.database.connect(write=True) as connection, connection.begin():
        step.apply(connection)
    assert _people(bridge) == expected_people and len(expected_people) == 24
    assert _flags(bridge) == expected_flags
    assert sum(duplicate for _, duplicate in expected_flags.values()) == 2
