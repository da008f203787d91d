"""The repository against real databases: versions, history, locking, atomicity, index and score rows."""
from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

from fhir_bridge.errors import Conflict, Gone, InputError, NotFound, PreconditionFailed
from fhir_bridge.store import schema
from fhir_bridge.store.database import Database
from fhir_bridge.store.repository import Repository
from fhir_bridge.store.types import instant

DIALOG = "http://example.org/fhir/Questionnaire/dialog"


class FakeIndexer:
    """Just enough of the real indexer: identifier tokens and subject references."""

    def rows(self, resource: dict) -> dict[str, list[dict]]:
        tokens = [{"param": "identifier", "system": i.get("system"), "code": i["value"]}
                  for i in resource.get("identifier", [])]
        subject = resource.get("subject", {}).get("reference")
        references = []
        if subject:
            target_type, _, target_id = subject.partition("/")
            references.append({"param": "subject", "target_type": target_type, "target_id": target_id})
        return {"token": tokens, "reference": references}

    def rows_of(self, resource_type: str, code: str) -> tuple[str, str | None]:
        return code, None


def fake_score_row(resource: dict) -> dict | None:
    if resource.get("questionnaire") != DIALOG:
        return None
    return {"questionnaire": DIALOG, "status": resource["status"], "sqol_answered": 11,
            "treatment_satisfaction_answered": 3, "dissatisfied_count": 0,
            "subject_type": resource["subject"]["reference"].partition("/")[0],
            "subject_id": resource["subject"]["reference"].partition("/")[2]}


class StepClock:
    """Microseconds that move on by one second per write."""

    def __init__(self, start: int = 1_700_000_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


def patient(pid: str = "p1", family: str = "Ngata", nhs: str = "9434765919", **extra) -> dict:
    return {"resourceType": "Patient", "id": pid,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
            "name": [{"family": family}], **extra}


def response(rid: str = "r1", subject: str = "Patient/p1", status: str = "completed") -> dict:
    return {"resourceType": "QuestionnaireResponse", "id": rid, "questionnaire": DIALOG, "status": status,
            "subject": {"reference": subject}, "identifier": [{"value": rid}]}


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def repo(database: Database, clock: StepClock) -> Repository:
    return Repository(database, FakeIndexer(), clock=clock, score_rows=fake_score_row)


def rows(database: Database, table, **where) -> list[tuple]:
    query = select(table).where(*[table.c[name] == value for name, value in where.items()])
    with database.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def row_counts(database: Database) -> dict[str, int]:
    tables = [schema.resources, schema.history, *schema.INDEX_TABLES.values(), schema.dialog_scores]
    with database.connect() as connection:
        return {t.name: connection.scalar(select(func.count()).select_from(t)) for t in tables}


def repo_create(repo: Repository, resource: dict):
    with repo.unit_of_work() as uow:
        return uow.create(resource)


def repo_update(repo: Repository, resource: dict, **options):
    with repo.unit_of_work() as uow:
        return uow.update(resource, **options)


def repo_delete(repo: Repository, resource_type: str, resource_id: str, **options):
    with repo.unit_of_work() as uow:
        return uow.delete(resource_type, resource_id, **options)


# -- create, read, vread --------------------------------------------------------------------------------
def test_create_stores_version_1_with_server_meta_and_keeps_other_meta(repo: Repository, clock: StepClock):
    given = patient(meta={"profile": ["http://example.org/bridge-patient"], "versionId": "99"})
    result = repo_create(repo, given)
    assert result.created and not result.unchanged
    assert result.stored.version_id == 1 and result.stored.method == "POST"
    assert result.stored.last_updated == clock.now
    assert result.stored.resource["meta"] == {"versionId": "1", "lastUpdated": instant(clock.now),
                                              "profile": ["http://example.org/bridge-patient"]}
    assert given["meta"]["versionId"] == "99"  # the caller's dict is not touched
    read = repo.read("Patient", "p1")
    assert read.resource == result.stored.resource
    assert (read.version_id, read.last_updated, read.deleted) == (1, clock.now, False)


def test_creating_a_live_id_again_is_a_conflict(repo: Repository):
    repo_create(repo, patient())
    with pytest.raises(Conflict, match="Patient/p1 already exists"):
        repo_create(repo, patient(family="Other"))
    assert repo.read("Patient", "p1").resource["name"] == [{"family": "Ngata"}]


@pytest.mark.parametrize("resource", [{"id": "x"}, {"resourceType": "Patient"},
                                      {"resourceType": "Patient", "id": "not/valid"},
                                      {"resourceType": "Patient", "id": "x" * 65}])
def test_a_resource_without_type_or_with_a_bad_id_is_refused(repo: Repository, resource: dict):
    with pytest.raises(InputError):
        repo_create(repo, resource)


def test_unknown_resources_and_versions_are_not_found(repo: Repository):
    with pytest.raises(NotFound):
        repo.read("Patient", "nobody")
    repo_create(repo, patient())
    with pytest.raises(NotFound, match="no version 2"):
        repo.vread("Patient", "p1", 2)
    with pytest.raises(NotFound):
        repo.read("Observation", "p1")


def test_decimals_keep_their_written_precision(repo: Repository):
    observation = {"resourceType": "Observation", "id": "o1", "status": "final",
                   "valueQuantity": {"value": Decimal("4.50")}}
    repo_create(repo, observation)
    assert repo.read("Observation", "o1").resource["valueQuantity"]["value"] == Decimal("4.50")
    assert str(repo.read("Observation", "o1").resource["valueQuantity"]["value"]) == "4.50"
    assert repo_update(repo, observation).unchanged


# -- update ------------------------------------------------------------------------------------------
def test_update_writes_the_next_version_and_keeps_the_old_one(repo: Repository):
    repo_create(repo, patient())
    result = repo_update(repo, patient(family="Ngata-Smith"))
    assert not result.created and result.stored.version_id == 2 and result.stored.method == "PUT"
    assert repo.read("Patient", "p1").resource["name"] == [{"family": "Ngata-Smith"}]
    assert repo.vread("Patient", "p1", 1).resource["name"] == [{"family": "Ngata"}]
    assert repo.vread("Patient", "p1", 2).resource["meta"]["versionId"] == "2"
    assert repo_update(repo, patient(family="Ngata"), method="PATCH").stored.method == "PATCH"
    assert [s.method for s in repo.history("Patient", "p1")[1]] == ["PATCH", "PUT", "POST"]


def test_an_update_with_the_same_content_makes_no_version(repo: Repository):
    first = repo_create(repo, patient()).stored
    same_but_reordered = {"name": [{"family": "Ngata"}], "resourceType": "Patient", "id": "p1",
                          "meta": {"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z"},
                          "identifier": patient()["identifier"]}
    result = repo_update(repo, same_but_reordered)
    assert result.unchanged and not result.created
    assert (result.stored.version_id, result.stored.resource) == (1, first.resource)
    assert repo.history("Patient", "p1")[0] == 1
    assert repo_update(repo, patient(meta={"tag": [{"code": "x"}]})).stored.version_id == 2  # meta is content


def test_if_match_on_a_stale_version_is_refused_naming_both_versions(repo: Repository):
    repo_create(repo, patient())
    repo_update(repo, patient(family="B"), if_match=1)
    with pytest.raises(PreconditionFailed, match=r"If-Match version 1 .* version 2"):
        repo_update(repo, patient(family="C"), if_match=1)
    with pytest.raises(PreconditionFailed):
        repo_update(repo, patient(family="B"), if_match=1)  # stale even when unchanged
    assert repo_update(repo, patient(family="C"), if_match=2).stored.version_id == 3
    with pytest.raises(PreconditionFailed, match="does not exist"):
        repo_update(repo, patient("p2"), if_match=1)


def test_update_as_create_and_update_that_may_not_create(repo: Repository):
    with pytest.raises(NotFound, match="Patient/p9 does not exist"):
        repo_update(repo, patient("p9"), allow_create=False)
    created = repo_update(repo, patient("p9"))
    assert created.created and created.stored.version_id == 1 and created.stored.method == "PUT"


def test_last_updated_never_goes_back_within_a_resource(database: Database):
    times = iter([5_000_000, 3_000_000, 1_000_000])   # another process's clock running behind
    repo = Repository(database, FakeIndexer(), clock=lambda: next(times))
    stamps = [repo_create(repo, patient()).stored.last_updated,
              repo_update(repo, patient(family="B")).stored.last_updated,
              repo_delete(repo, "Patient", "p1").last_updated]
    assert stamps == [5_000_000, 5_000_001, 5_000_002]


def test_the_default_clock_gives_every_write_its_own_instant(database: Database):
    repo = Repository(database, FakeIndexer())
    with repo.unit_of_work() as uow:
        stamps = [uow.create(patient(f"p{n}")).stored.last_updated for n in range(50)]
    assert stamps == sorted(set(stamps))


# -- delete ------------------------------------------------------------------------------------------
def test_delete_records_a_version_then_reads_are_gone_and_history_stays(repo: Repository):
    repo_create(repo, patient())
    deleted = repo_delete(repo, "Patient", "p1")
    assert (deleted.version_id, deleted.deleted, deleted.resource, deleted.method) == (2, True, None, "DELETE")
    with pytest.raises(Gone):
        repo.read("Patient", "p1")
    with pytest.raises(Gone):
        repo.vread("Patient", "p1", 2)
    assert repo.vread("Patient", "p1", 1).resource["name"] == [{"family": "Ngata"}]
    assert repo_delete(repo, "Patient", "p1") == deleted       # deleting again changes nothing
    assert repo_delete(repo, "Patient", "nobody") is None
    assert repo.count("Patient") == 0


def test_a_deleted_id_comes_back_as_its_next_version(repo: Repository):
    repo_create(repo, patient())
    repo_delete(repo, "Patient", "p1")
    again = repo_create(repo, patient(family="Back"))
    assert again.created and again.stored.version_id == 3
    assert repo_delete(repo, "Patient", "p1").version_id == 4
    revived = repo_update(repo, patient(family="Back"))
    assert revived.created and revived.stored.version_id == 5 and not revived.unchanged
    assert [s.method for s in repo.history("Patient", "p1")[1]] == ["PUT", "DELETE", "POST", "DELETE", "POST"]


def test_delete_honours_if_match(repo: Repository):
    repo_create(repo, patient())
    with pytest.raises(PreconditionFailed):
        repo_delete(repo, "Patient", "p1", if_match=3)
    assert repo_delete(repo, "Patient", "p1", if_match=1).version_id == 2


# -- history -----------------------------------------------------------------------------------------
def test_history_at_instance_type_and_system_level_newest_first(repo: Repository, clock: StepClock):
    repo_create(repo, patient("a"))
    after_first = clock.now + 1
    repo_create(repo, response("r1", "Patient/a"))
    repo_update(repo, patient("a", family="B"))
    repo_delete(repo, "QuestionnaireResponse", "r1")

    total, page = repo.history("Patient", "a")
    assert total == 2 and [(s.version_id, s.method) for s in page] == [(2, "PUT"), (1, "POST")]
    total, page = repo.history("QuestionnaireResponse")
    assert total == 2 and [(s.deleted, s.resource is None) for s in page] == [(True, True), (False, False)]
    total, page = repo.history()
    assert total == 4
    assert [(s.resource_type, s.version_id) for s in page] == [
        ("QuestionnaireResponse", 2), ("Patient", 2), ("QuestionnaireResponse", 1), ("Patient", 1)]
    assert [s.last_updated for s in page] == sorted((s.last_updated for s in page), reverse=True)
    assert repo.history(since=after_first)[0] == 3
    assert repo.history(since=page[0].last_updated)[0] == 1   # _since includes the instant itself
    assert repo.history("Patient", since=after_first)[0] == 1


def test_history_pages(repo: Repository):
    with repo.unit_of_work() as uow:
        for n in range(7):
            uow.create(patient(f"p{n}"))
    total, first = repo.history("Patient", count=3)
    _, second = repo.history("Patient", count=3, offset=3)
    _, last = repo.history("Patient", count=3, offset=6)
    assert total == 7 and [len(first), len(second), len(last)] == [3, 3, 1]
    assert [s.resource_id for s in first + second + last] == [f"p{n}" for n in reversed(range(7))]
    assert repo.history("Patient", count=0) == (7, [])


# -- index and score rows ----------------------------------------------------------------------------
def test_index_rows_are_written_replaced_and_removed(repo: Repository, database: Database):
    repo_create(repo, patient(nhs="111"))
    token = schema.token_index
    assert rows(database, token) == [("Patient", "p1", "identifier", "https://fhir.nhs.uk/Id/nhs-number", "111")]
    repo_update(repo, patient(nhs="222"))
    assert [r[-1] for r in rows(database, token)] == ["222"]
    repo_delete(repo, "Patient", "p1")
    assert rows(database, token) == []


def test_a_dialog_response_keeps_one_score_row_in_step_with_it(repo: Repository, database: Database):
    repo_create(repo, response("r1"))
    repo_create(repo, {**response("r2"), "questionnaire": "http://example.org/other"})
    scores = schema.dialog_scores
    assert [(r.response_id, r.status, r.not_applicable) for r in _score_rows(database)] == [("r1", "completed", "")]
    repo_update(repo, response("r1", status="amended"))
    assert [r.status for r in _score_rows(database)] == ["amended"]
    assert rows(database, schema.reference_index, resource_id="r1") == [
        ("QuestionnaireResponse", "r1", "subject", "Patient", "p1", None)]
    repo_update(repo, {**response("r1"), "questionnaire": "http://example.org/other"})
    assert _score_rows(database) == []
    repo_update(repo, response("r1"))
    repo_delete(repo, "QuestionnaireResponse", "r1")
    assert rows(database, scores) == []
    assert rows(database, schema.reference_index, resource_id="r1") == []


def _score_rows(database: Database) -> list:
    with database.connect() as connection:
        return connection.execute(select(schema.dialog_scores)).all()


def test_score_rows_of_people_are_read_whole_or_as_the_fields_asked(repo: Repository):
    repo_create(repo, response("r1"))
    repo_create(repo, response("r2", subject="Patient/p2"))
    with repo.unit_of_work() as uow:
        whole = uow.dialogs_of_people(["p1", "p2", "nobody"])
        some = uow.dialogs_of_people(["p1", "p2", "nobody"], fields=("response_id", "status"))
    assert sorted(whole) == sorted(some) == ["p1", "p2"]
    assert whole["p1"][0]["sqol_answered"] == 11 and whole["p1"][0]["questionnaire"] == DIALOG
    assert some == {"p1": [{"subject_id": "p1", "response_id": "r1", "status": "completed"}],
                    "p2": [{"subject_id": "p2", "response_id": "r2", "status": "completed"}]}


def test_a_patient_sharing_an_id_with_a_response_leaves_its_score_row_alone(repo: Repository, database: Database):
    repo_create(repo, response("same"))
    repo_create(repo, patient("same"))
    repo_delete(repo, "Patient", "same")
    assert len(_score_rows(database)) == 1


# -- units of work -----------------------------------------------------------------------------------
def test_an_exception_in_a_unit_of_work_leaves_no_trace(repo: Repository, database: Database):
    before = row_counts(database)
    with pytest.raises(RuntimeError, match="boom"):
        with repo.unit_of_work() as uow:
            uow.create(patient())
            uow.create(response("r1"))
            uow.create_many([response("r2"), response("r3")])
            assert uow.read("QuestionnaireResponse", "r1").version_id == 1  # sees its own writes
            raise RuntimeError("boom")
    assert row_counts(database) == before == {name: 0 for name in before}


def test_a_failing_write_undoes_the_earlier_writes_of_its_unit(repo: Repository, database: Database):
    repo_create(repo, patient("taken"))
    before = row_counts(database)
    with pytest.raises(Conflict):
        with repo.unit_of_work() as uow:
            uow.create(response("r1"))
            uow.update(patient("taken", family="Changed"))
            uow.create(patient("taken"))
    assert row_counts(database) == before
    assert repo.read("Patient", "taken").version_id == 1


def test_an_indexer_failure_mid_write_stores_nothing(database: Database):
    class BrokenIndexer(FakeIndexer):
        def rows(self, resource: dict) -> dict[str, list[dict]]:
            if resource["id"] == "r2":
                raise ValueError("cannot index")
            return super().rows(resource)

    repo = Repository(database, BrokenIndexer(), score_rows=fake_score_row)
    with pytest.raises(ValueError):
        with repo.unit_of_work() as uow:
            uow.create_many([response("r1"), response("r2")])
    assert set(row_counts(database).values()) == {0}


def test_read_inside_a_unit_of_work(repo: Repository):
    with repo.unit_of_work() as uow:
        with pytest.raises(NotFound):
            uow.read("Patient", "p1")
        uow.create(patient())
        uow.delete("Patient", "p1")
        with pytest.raises(Gone):
            uow.read("Patient", "p1")


# -- bulk --------------------------------------------------------------------------------------------
def test_create_many_stores_everything_a_create_would(repo: Repository, database: Database):
    repo_create(repo, patient("gone"))
    repo_delete(repo, "Patient", "gone")
    with repo.unit_of_work() as uow:
        results = uow.create_many([response("r1"), patient("gone"), patient("p2"), response("r2")])
    assert [(r.stored.resource_id, r.stored.version_id, r.created) for r in results] == [
        ("r1", 1, True), ("gone", 3, True), ("p2", 1, True), ("r2", 1, True)]
    assert repo.read("QuestionnaireResponse", "r2").resource == results[3].stored.resource
    assert repo.count() == 4 and repo.count("QuestionnaireResponse") == 2
    assert len(_score_rows(database)) == 2
    assert len(rows(database, schema.token_index)) == 4
    assert repo.history()[0] == 6


def test_create_many_refuses_live_and_repeated_ids(repo: Repository):
    repo_create(repo, patient("p1"))
    with pytest.raises(Conflict, match="Patient/p1 already exists"):
        with repo.unit_of_work() as uow:
            uow.create_many([patient("p0"), patient("p1")])
    with pytest.raises(Conflict, match="more than once"):
        with repo.unit_of_work() as uow:
            uow.create_many([patient("p5"), patient("p5")])
    assert repo.count() == 1


def test_create_many_writes_10000_resources_in_a_few_statements(repo: Repository, database: Database):
    statements: list[bool] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(executemany)

    resources = [response(f"r{n}", subject=f"Patient/p{n % 100}") for n in range(10_000)]
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        with repo.unit_of_work() as uow:
            uow.create_many(resources)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    assert repo.count("QuestionnaireResponse") == 10_000
    # 20 existence checks of 500 ids, then one executemany per table written: resources, history,
    # token, reference, dialog_scores, resource_people (not 10,000 statements per table).
    assert sum(statements) == 6
    assert len(statements) <= 30
    assert len(rows(database, schema.reference_index)) == 10_000


def test_put_many_is_update_after_update(repo: Repository, database: Database):
    repo_create(repo, patient("known"))
    repo_create(repo, patient("same"))
    repo_create(repo, patient("gone"))
    repo_delete(repo, "Patient", "gone")
    with repo.unit_of_work() as uow:
        results = uow.put_many([
            patient("new"), patient("known", family="Changed"), patient("same"), patient("gone"),
            response("r1", subject="Patient/new"),
            patient("new", family="Second"),    # the same id again: compared with the first
            patient("new", family="Second"),    # ... and unchanged against the second
        ])
    outcome = [(r.stored.resource_id, r.stored.version_id, r.created, r.unchanged) for r in results]
    assert outcome == [("new", 1, True, False), ("known", 2, False, False), ("same", 1, False, True),
                       ("gone", 3, True, False), ("r1", 1, True, False), ("new", 2, False, False),
                       ("new", 2, False, True)]
    assert repo.read("Patient", "new").resource["name"] == [{"family": "Second"}]
    assert [s.version_id for s in repo.history("Patient", "new")[1]] == [2, 1]
    assert repo.read("Patient", "known").resource["name"] == [{"family": "Changed"}]
    # index rows follow the current version only, once per resource
    assert len(rows(database, schema.token_index, resource_id="new")) == 1
    assert len(rows(database, schema.reference_index, resource_id="r1")) == 1
    assert len(_score_rows(database)) == 1
    assert not repo.read("Patient", "gone").deleted


def test_put_many_costs_the_same_statements_for_10_or_1000_resources(repo: Repository, database: Database):
    """Per table one statement for all rows, however many: the count must not grow with the batch."""
    def statements_for(n: int, tag: str) -> int:
        for k in range(n):  # half of them exist already, so both the insert and the update paths run
            if k % 2:
                repo_create(repo, patient(f"{tag}{k}", nhs=f"{k}"))
        seen: list[bool] = []

        def count(conn, cursor, statement, parameters, context, executemany) -> None:
            seen.append(executemany)

        event.listen(database.engine, "before_cursor_execute", count)
        try:
            with repo.unit_of_work() as uow:
                uow.put_many([patient(f"{tag}{k}", family="Batch", nhs=f"{k}") for k in range(n)]
                             + [response(f"{tag}r{k}", subject=f"Patient/{tag}{k}") for k in range(n)])
        finally:
            event.remove(database.engine, "before_cursor_execute", count)
        return len(seen)

    # (both sizes read their two types' current rows in two statements: over 500 ids in all)
    assert statements_for(260, "a") == statements_for(400, "b")
    assert repo.count("QuestionnaireResponse") == 660


def test_put_many_rolls_back_whole(repo: Repository):
    repo_create(repo, patient("p1"))
    with pytest.raises(InputError):
        with repo.unit_of_work() as uow:
            uow.put_many([patient("p1", family="Changed"), patient("p2"), {"resourceType": "Patient", "id": "bad id"}])
    assert repo.read("Patient", "p1").version_id == 1 and repo.count() == 1


def _statements(database: Database):
    """A context collecting the SQL each statement run meanwhile starts with."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(" ".join(statement.split()[:3]))

    class Watch:
        def __enter__(self):
            event.listen(database.engine, "before_cursor_execute", note)
            return seen

        def __exit__(self, *exc):
            event.remove(database.engine, "before_cursor_execute", note)

    return Watch()


@pytest.mark.parametrize("bulk", [False, True], ids=["update", "put_many"])
def test_an_update_rewrites_only_the_index_tables_whose_rows_changed(repo: Repository, database: Database, bulk: bool):
    repo_create(repo, response("r1", subject="Patient/p1"))
    tokens_before = rows(database, schema.token_index, resource_id="r1")

    def update(resource: dict) -> None:
        with repo.unit_of_work() as uow:
            uow.put_many([resource]) if bulk else uow.update(resource)

    with _statements(database) as seen:  # a new subject: the reference rows change, the tokens do not
        update(response("r1", subject="Patient/p2"))
    assert "DELETE FROM search_reference" in seen and "INSERT INTO search_reference" in seen
    assert "DELETE FROM search_token" not in seen and "INSERT INTO search_token" not in seen
    assert rows(database, schema.token_index, resource_id="r1") == tokens_before
    assert [(r[3], r[4]) for r in rows(database, schema.reference_index, resource_id="r1")] == [("Patient", "p2")]
    assert [r[-1] for r in rows(database, schema.resource_people, resource_id="r1")] == ["p2"]  # about p2 now

    changed = {**response("r1", subject="Patient/p2"), "identifier": [{"value": "other"}]}
    with _statements(database) as seen:  # now only the tokens change: still about p2
        update(changed)
    assert "DELETE FROM search_token" in seen and "DELETE FROM search_reference" not in seen
    assert "DELETE FROM resource_people" not in seen and "INSERT INTO resource_people" not in seen
    assert [r[-1] for r in rows(database, schema.resource_people, resource_id="r1")] == ["p2"]
    assert [r[-1] for r in rows(database, schema.token_index, resource_id="r1")] == ["other"]
    assert [(r[3], r[4]) for r in rows(database, schema.reference_index, resource_id="r1")] == [("Patient", "p2")]

    repo_delete(repo, "QuestionnaireResponse", "r1")   # a deletion drops every row; coming back writes them all
    update(changed)
    assert [r[-1] for r in rows(database, schema.token_index, resource_id="r1")] == ["other"]
    assert len(rows(database, schema.reference_index, resource_id="r1")) == 1


def test_put_many_checks_each_if_match_before_writing_anything(repo: Repository):
    repo_create(repo, patient("p1"))
    repo_update(repo, patient("p1", family="Second"))
    with pytest.raises(PreconditionFailed, match="p1 is at version 2"):
        with repo.unit_of_work() as uow:
            uow.put_many([patient("p2"), patient("p1", family="Third")], if_match=[None, 1])
    assert repo.count() == 1 and repo.read("Patient", "p1").version_id == 2
    with pytest.raises(PreconditionFailed, match="p3 does not exist"):
        with repo.unit_of_work() as uow:
            uow.put_many([patient("p3")], if_match=[1])
    with repo.unit_of_work() as uow:
        results = uow.put_many([patient("p2"), patient("p1", family="Third")], if_match=[None, 2])
    assert [(r.stored.resource_id, r.stored.version_id) for r in results] == [("p2", 1), ("p1", 3)]


def test_a_provenance_is_about_the_people_of_targets_written_in_its_transaction_without_reading_them_back(
        repo: Repository, database: Database):
    provenance = {"resourceType": "Provenance", "id": "prov1", "recorded": "2025-01-01T00:00:00Z",
                  "target": [{"reference": "QuestionnaireResponse/r1"}, {"reference": "QuestionnaireResponse/r2"}],
                  "agent": [{"who": {"display": "x"}}]}
    with _statements(database) as seen:
        with repo.unit_of_work() as uow:
            uow.put_many([patient("p1"), patient("p2", nhs="9434765870"), response("r1", subject="Patient/p1"),
                          response("r2", subject="Patient/p2")])
            uow.create_many([provenance])
    assert not [s for s in seen if s.startswith("SELECT") and "resource_people" in s]
    people = rows(database, schema.resource_people, resource_type="Provenance")
    assert sorted(row[-1] for row in people) == ["p1", "p2"]
    repo_create(repo, {**provenance, "id": "prov2"})   # in a later transaction: read from the store
    assert sorted(r[-1] for r in rows(database, schema.resource_people, resource_id="prov2")) == ["p1", "p2"]


def test_referring_finds_live_resources_of_a_type_by_one_reference_parameter(repo: Repository):
    with repo.unit_of_work() as uow:
        uow.create_many([response("r2", subject="Patient/p1"), response("r1", subject="Patient/p1"),
                         response("r3", subject="Patient/p2"), response("gone", subject="Patient/p1")])
        uow.delete("QuestionnaireResponse", "gone")
        assert [s.resource_id for s in uow.referring("QuestionnaireResponse", "subject", "Patient", "p1")] == ["r1", "r2"]
        assert uow.referring("QuestionnaireResponse", "patient", "Patient", "p1") == []
        assert uow.referring("Observation", "subject", "Patient", "p1") == []


def test_referring_by_a_parameter_read_from_another_ones_rows(database: Database, clock: StepClock):
    """With the real indexer, `patient` (no rows of its own: subject's to a Patient) finds what
    `subject` finds, and nothing when asked for another target type."""
    from pathlib import Path

    from fhir_bridge.fhir.package import load_package
    from fhir_bridge.store.indexer import Indexer
    from fhir_bridge.store.search_parameters import SearchParameterRegistry

    registry = SearchParameterRegistry.load(load_package(Path(__file__).resolve().parents[2] / "profiles"))
    repo = Repository(database, Indexer(registry), clock=clock, score_rows=fake_score_row)
    with repo.unit_of_work() as uow:
        uow.create_many([response("r1", subject="Patient/p1"), response("g1", subject="Group/p1")])
        assert [s.resource_id for s in uow.referring("QuestionnaireResponse", "patient", "Patient", "p1")] == ["r1"]
        assert [s.resource_id for s in uow.referring("QuestionnaireResponse", "subject", "Group", "p1")] == ["g1"]
        assert uow.referring("QuestionnaireResponse", "patient", "Group", "p1") == []


# -- lookups for search ------------------------------------------------------------------------------
def test_fetch_stored_keeps_the_order_asked_and_skips_deleted_and_unknown(repo: Repository):
    with repo.unit_of_work() as uow:
        uow.create_many([patient("a"), patient("b"), patient("c"), response("r1")])
        uow.delete("Patient", "b")
    keys = [("QuestionnaireResponse", "r1"), ("Patient", "c"), ("Patient", "b"), ("Patient", "zz"), ("Patient", "a")]
    assert [(s.resource_type, s.resource_id) for s in repo._fetch_stored(keys)] == [
        ("QuestionnaireResponse", "r1"), ("Patient", "c"), ("Patient", "a")]
    many = [("Patient", f"x{n}") for n in range(1_200)] + [("Patient", "a")]
    assert [s.resource_id for s in repo._fetch_stored(many)] == ["a"]


# -- concurrency -------------------------------------------------------------------------------------
def run_together(workers: list) -> list[BaseException]:
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(work) -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:  # reported by the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def assert_consistent_history(repo: Repository, resource_type: str, resource_id: str) -> int:
    current = repo.read(resource_type, resource_id).version_id
    total, versions = repo.history(resource_type, resource_id, count=1_000)
    assert total == current
    assert sorted(s.version_id for s in versions) == list(range(1, current + 1))
    by_version = sorted(versions, key=lambda s: s.version_id)
    assert all(a.last_updated < b.last_updated for a, b in zip(by_version, by_version[1:]))
    return current


def test_two_writers_updating_one_resource_lose_no_version(database: Database):
    repo = Repository(database, FakeIndexer())
    repo_create(repo, patient())
    rounds = 15

    def writer(name: str):
        return lambda: [repo_update(repo, patient(family=f"{name}{n}")) for n in range(rounds)]

    assert run_together([writer("a"), writer("b")]) == []
    assert assert_consistent_history(repo, "Patient", "p1") == 1 + 2 * rounds


def test_two_writers_with_if_match_never_both_win_from_one_version(database: Database):
    repo = Repository(database, FakeIndexer())
    repo_create(repo, patient())
    wins: list[int] = []
    refused: list[int] = []

    def writer(name: str):
        def work() -> None:
            for n in range(15):
                seen = repo.read("Patient", "p1").version_id
                try:
                    wins.append(repo_update(repo, patient(family=f"{name}{n}"), if_match=seen).stored.version_id)
                except PreconditionFailed:
                    refused.append(seen)
        return work

    assert run_together([writer("a"), writer("b")]) == []
    assert sorted(wins) == list(range(2, 2 + len(wins)))   # every winner got its own next version
    assert len(wins) + len(refused) == 30
    assert assert_consistent_history(repo, "Patient", "p1") == 1 + len(wins)


def test_two_writers_creating_one_new_id_by_update_make_versions_1_and_2(database: Database):
    repo = Repository(database, FakeIndexer())
    results = []
    workers = [lambda name=name: results.append(repo_update(repo, patient("new", family=name))) for name in "ab"]
    assert run_together(workers) == []
    assert sorted((r.stored.version_id, r.created) for r in results) == [(1, True), (2, False)]
    assert assert_consistent_history(repo, "Patient", "new") == 2


def test_a_snapshot_reads_one_state_and_refuses_writes(repo: Repository):
    repo_create(repo, patient("p1"))
    with repo.snapshot() as view:
        assert view.read("Patient", "p1").version_id == 1
        with pytest.raises(RuntimeError, match="snapshot"):
            view.create(patient("p2"))
        with pytest.raises(RuntimeError, match="snapshot"):
            view.put_many([patient("p1", family="Changed")])
    assert repo.count() == 1 and repo.read("Patient", "p1").version_id == 1


def test_put_many_creates_what_then_returns_in_the_same_statements(repo: Repository, database: Database):
    repo_create(repo, patient("p1"))

    def provenance(results):
        targets = [{"reference": f"{r.stored.resource_type}/{r.stored.resource_id}"} for r in results if not r.unchanged]
        return [{"resourceType": "Provenance", "id": "prov1", "target": targets, "recorded": "2025-01-01T00:00:00Z",
                 "agent": [{"who": {"display": "x"}}]}]

    with _statements(database) as seen:
        with repo.unit_of_work() as uow:
            results = uow.put_many([patient("p1", family="Changed"), response("r1")], then=provenance)
    assert [(r.stored.resource_type, r.stored.resource_id) for r in results] == [("Patient", "p1"),
                                                                                ("QuestionnaireResponse", "r1")]
    assert seen.count("INSERT INTO resources") == 1 and seen.count("INSERT INTO resource_history") == 1
    assert [t["reference"] for t in repo.read("Provenance", "prov1").resource["target"]] == [
        "Patient/p1", "QuestionnaireResponse/r1"]
    assert sorted(r[-1] for r in rows(database, schema.resource_people, resource_id="prov1")) == ["p1"]
    with pytest.raises(Conflict):  # an id already stored: refused, nothing written
        with repo.unit_of_work() as uow:
            uow.put_many([patient("p1", family="Again")], then=provenance)
    assert repo.read("Patient", "p1").resource["name"] == [{"family": "Changed"}]


def test_put_many_reads_the_current_rows_of_a_few_types_in_one_statement(repo: Repository, database: Database):
    repo_create(repo, patient("p1"))
    practitioner = {"resourceType": "Practitioner", "id": "sam", "name": [{"family": "Adeyemi"}]}
    with _statements(database) as seen:
        with repo.unit_of_work() as uow:
            results = uow.put_many([patient("p1", family="Changed"), response("r1"), practitioner])
    assert [s for s in seen if s.startswith("SELECT")] == ["SELECT resources.resource_type, resources.resource_id,"]
    assert [(r.created, r.stored.version_id) for r in results] == [(False, 2), (True, 1), (True, 1)]


def test_read_live_reads_a_few_types_in_one_statement_and_leaves_out_deleted(repo: Repository, database: Database):
    with repo.unit_of_work() as uow:
        uow.create_many([patient("p1"), response("r1"), response("gone")])
        uow.delete("QuestionnaireResponse", "gone")
    keys = [("Patient", "p1"), ("QuestionnaireResponse", "r1"), ("QuestionnaireResponse", "gone"), ("Goal", "none")]
    with _statements(database) as seen:
        with repo.snapshot() as view:
            found = view.read_live(keys)
    assert sorted(found) == [("Patient", "p1"), ("QuestionnaireResponse", "r1")]
    assert found[("Patient", "p1")].version_id == 1
    assert len([s for s in seen if s.startswith("SELECT")]) == 1


# -- instants ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("microseconds", [
    0, 999, 1_000, 999_999, 1_000_000, -1, -1_000_001, 1_700_000_000_123_456, 1_700_000_000_999_999,
    1_700_000_001_000_000, 4_102_444_799_999_000, *random.Random(7).sample(range(-10**15, 10**17), 200)])
def test_instant_is_the_utc_millisecond_of_any_moment(microseconds: int):
    exact = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=microseconds)
    assert instant(microseconds) == exact.strftime("%Y-%m-%dT%H:%M:%S.") + f"{exact.microsecond // 1000:03d}Z"


def test_instants_within_a_second_and_across_seconds_in_any_order():
    moments = [1_700_000_000_000_000 + step * 137_000 for step in range(30)]
    expected = [instant(m) for m in moments]
    assert [instant(m) for m in reversed(moments)] == list(reversed(expected))
    assert expected[0] == "2023-11-14T22:13:20.000Z" and expected[8] == "2023-11-14T22:13:21.096Z"
