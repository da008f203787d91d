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
