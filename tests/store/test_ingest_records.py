"""Import runs, quarantine and identity reviews in the store: nothing lost, nothing doubled."""
from __future__ import annotations

from fhir_bridge.store.ingest_records import QuarantineEntry, Review
from fhir_bridge.store.repository import Repository


class NoIndex:
    def rows(self, resource: dict) -> dict[str, list[dict]]:
        return {}


def entry(run: str, reason: str = "mapping") -> QuarantineEntry:
    return QuarantineEntry("q-1", run, "rio", "assessments.csv:17", reason, b"raw,row,\xa3", b'{"resourceType":"OperationOutcome"}', 5)


def test_quarantining_the_same_record_twice_keeps_one_entry(database):
    repo = Repository(database, NoIndex())
    repo.quarantine_record(entry("run-1"))
    repo.quarantine_record(entry("run-2", "validation"))
    [held] = repo.quarantined()
    assert (held.run_id, held.reason, held.raw) == ("run-2", "validation", b"raw,row,\xa3")
    repo.resolve_quarantined("q-1", "run-3")
    assert repo.quarantined() == [] and repo.quarantined(state="resolved")[0].entry_id == "q-1"
    resolved = repo.quarantine_entry("q-1")
    assert (resolved.state, resolved.resolved_run) == ("resolved", "run-3") and repo.quarantine_entry("nope") is None
    repo.quarantine_record(entry("run-4"))  # the same record failing again reopens its entry
    assert (repo.quarantine_entry("q-1").state, repo.quarantine_entry("q-1").resolved_run) == ("open", None)


def test_review_waits_until_resolved(database):
    repo = Repository(database, NoIndex())
    review = Review("r-1", "vcse", "C-17", "similar Patients found", ("a", "b"), b"[]", 7)
    repo.add_review(review)
    repo.add_review(review)
    assert repo.reviews() == [review]
    repo.resolve_review("r-1", "linked", "a")
    assert repo.reviews() == [] and repo.review("r-1").patient_id == "a"
    repo.add_review(review)  # the same records held again: a person's decision stands
    assert repo.reviews() == [] and repo.review("r-1").state == "linked"


def test_runs_are_recorded_with_their_report(database):
    repo = Repository(database, NoIndex())
    repo.start_run("run-1", "rio", 10)
    repo.start_run("run-2", "hl7", 20)
    repo.finish_run("run-1", 15, b'{"in": 3}')
    runs = repo.runs()
    assert [r["run_id"] for r in runs] == ["run-2", "run-1"]
    assert runs[0]["finished"] is None and runs[1]["report"] == b'{"in": 3}'


class IdentifierIndex:
    """Index rows of Patient identifiers only: what identity lookups read."""

    def rows(self, resource: dict) -> dict[str, list[dict]]:
        return {"token": [{"param": "identifier", "system": i["system"], "code": i["value"]}
                          for i in resource.get("identifier", ())]}


def test_identifiers_are_looked_up_many_at_once(database, monkeypatch):
    """What an import reads ahead (Ingest._identities_read_ahead): per identifier, the live
    Patients holding it, as patients_with_identifier says one by one; empty for none; the same
    when the values of a system take several statements."""
    repo = Repository(database, IdentifierIndex())
    patient = lambda pid, *ids: {"resourceType": "Patient", "id": pid,  # noqa: E731
                                 "identifier": [{"system": s, "value": v} for s, v in ids]}
    with repo.unit_of_work() as uow:
        uow.create_many([patient("a", ("nhs", "1"), ("rio", "C1")), patient("b", ("nhs", "2"), ("rio", "C1")),
                         patient("c", ("nhs", "4")), patient("gone", ("nhs", "3"))])
        uow.delete("Patient", "gone")
    wanted = [("nhs", "1"), ("nhs", "2"), ("nhs", "4"), ("nhs", "3"), ("rio", "C1"), ("rio", "1"), ("vcse", "C1")]
    found = repo.patients_with_identifiers(wanted)
    assert found == {("nhs", "1"): {"a"}, ("nhs", "2"): {"b"}, ("nhs", "4"): {"c"}, ("nhs", "3"): set(),
                     ("rio", "C1"): {"a", "b"}, ("rio", "1"): set(), ("vcse", "C1"): set()}
    assert all(sorted(found[key]) == repo.patients_with_identifier(*key) for key in wanted)
    from fhir_bridge.store import ingest_records
    monkeypatch.setattr(ingest_records, "IN_CHUNK", 2)  # two statements for the nhs values
    assert repo.patients_with_identifiers(wanted) == found


def test_identity_lookups_use_the_indexes_that_keep_them_small(tmp_path):
    """Identity linking runs these for every person an import meets: each must go by an index to
    the few rows it needs, never through every Patient's rows (SQLite without statistics chose
    the string lookup index for `param IN (...)` beside several ids: 110 ms a lookup at 37,000
    Patients, so a 280,000-client import crawled)."""
    from fhir_bridge.store import ingest_records
    from fhir_bridge.store.database import open_database
    from fhir_bridge.store.migrations import migrate

    database = open_database(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    migrate(database)
    try:
        # SQLite estimates a table's size from its B-tree when it has no statistics: the plans
        # differ between an empty store and a large one, so the tables get 40,000 Patients' rows.
        patients = [f"{n:08d}-5e4f-5c30-9aa6-fa7032ae1234" for n in range(40_000)]  # uuid-long, as stored
        with database.connect(write=True) as connection, connection.begin():
            connection.exec_driver_sql(
                "INSERT INTO search_string (resource_type, resource_id, param, normalized, exact) VALUES (?, ?, ?, ?, ?)",
                [("Patient", p, param, f"{param}{n % 997}", "Okafor") for n, p in enumerate(patients)
                 for param in ("family", "given", "address-postalcode", "name", "phonetic", "address")])
            connection.exec_driver_sql(
                "INSERT INTO search_date (resource_type, resource_id, param, low, high) VALUES (?, ?, ?, ?, ?)",
                [("Patient", p, "birthdate", n % 20_000, n % 20_000 + 1) for n, p in enumerate(patients)])
            connection.exec_driver_sql(
                "INSERT INTO search_token (resource_type, resource_id, param, system, code) VALUES (?, ?, ?, ?, ?)",
                [("Patient", p, "identifier", "s", p) for p in patients])
        with database.connect() as connection:
            for statement, parameters, index in (
                    (ingest_records._BORN_ON, {"low": 1, "high": 2}, "ix_date_lookup"),
                    (ingest_records._MATCHING_STRINGS, {"ids": ["a", "b", "c"]}, "ix_string_owner"),
                    (ingest_records._WITH_IDENTIFIER, {"system": "s", "code": "c"}, "ix_token_lookup"),
                    (ingest_records._WITH_IDENTIFIERS, {"system": "s", "codes": ["c", "d"]}, "ix_token_lookup")):
                state = statement.statement.compile(dialect=connection.dialect).construct_expanded_state(parameters)
                values = tuple(state.parameters[name] for name in state.positiontup)
                plan = " | ".join(row[-1] for row in connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {state.statement}", values))
                assert index in plan and "SCAN" not in plan, plan
    finally:
        database.dispose()
