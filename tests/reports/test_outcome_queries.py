"""How the store computes the figures (fhir_bridge/store/outcome_queries.py), beyond the hand-worked
data set: episodes whose DIALOGs interleave, means summed exactly, the families read together, and
the scratch table the episodes use. On SQLite and PostgreSQL alike."""
from __future__ import annotations

from datetime import date

from sqlalchemy import text

from fhir_bridge.reports import ReportRequest, build_outcome_report
from fhir_bridge.store.outcome_queries import OutcomeQuery
from tests.reports import dataset


def _query(bridge, **fields) -> OutcomeQuery:
    items = [d.code.replace("-", "_") for d in bridge.dialog.domains]
    return OutcomeQuery(items=items, change_items=items[:8], as_of=20250101, **fields)


def test_episodes_whose_dialogs_interleave(bridge) -> None:
    """One provider, in time order: a1 (referral r1, assessment), n1 (no referral, review), a2 (r1,
    review), n2 (review), n3 (discharge), n4 (review). r1 is {a1, a2}; the DIALOGs without a
    referral start no episode until the discharge, so {n1, n2, n3} is episode #1 although a2 lies
    between; n4 follows a discharge: episode #2, with n3 (the exit) as its entry."""
    d = dataset.dialog
    with bridge.repository.unit_of_work() as uow:
        uow.create_many([
            dataset.patient("p-mix", "female", "1980-01-01", "A"),
            d("a1", "p-mix", "2024-01-10T10:00:00Z", timepoint="assessment", life=2, treatment=4, referral_id="r1"),
            d("n1", "p-mix", "2024-02-10T10:00:00Z", timepoint="review", life=3, treatment=4),
            d("a2", "p-mix", "2024-03-10T10:00:00Z", timepoint="review", life=5, treatment=4, referral_id="r1"),
            d("n2", "p-mix", "2024-04-10T10:00:00Z", timepoint="review", life=4, treatment=4),
            d("n3", "p-mix", "2024-05-10T10:00:00Z", timepoint="discharge", life=6, treatment=4),
            d("n4", "p-mix", "2024-06-10T10:00:00Z", timepoint="review", life=7, treatment=4),
        ])
    pairs = bridge.repository.outcome_pairs(_query(bridge, patient_id="p-mix"))
    assert sorted((p["episode"], p["entry_id"], p["latest_id"], p["has_entry"], p["sqol_change"]) for p in pairs) == [
        ("#1", "n1", "n3", 0, 3.0), ("#2", "n3", "n4", 1, 1.0), ("r1", "a1", "a2", 1, 3.0)]
    without_exit = bridge.repository.outcome_pairs(_query(bridge, patient_id="p-mix", exit_as_entry=False))
    assert sorted((p["episode"], p["entry_id"], p["latest_id"]) for p in without_exit) == [
        ("#1", "n1", "n3"), ("#2", "n4", "n4"), ("r1", "a1", "a2")]


def test_a_mean_on_a_rounding_edge_is_exact(bridge) -> None:
    """Treatment satisfaction of eight people: (20 + 8 + 18 + 20 + 12 + 8 + 18 + 13) / 3 / 8 = 39 / 8
    = 4.875 exactly, shown 4.88. Added up as doubles the thirds come to 38.99999999999999 or
    39.00000000000001 depending on their order, and the mean to either side of 4.875."""
    triples = {20: (7, 7, 6), 8: (3, 3, 2), 18: (6, 6, 6), 12: (4, 4, 4), 13: (5, 4, 4)}
    resources = []
    for n, total in enumerate((20, 8, 18, 20, 12, 8, 18, 13)):
        ratings = dict(zip(("medication", "practical-help", "meetings"), triples[total]))
        resources += [dataset.patient(f"p{n}", "female", "1980-01-01", "A"),
                      dataset.dialog(f"q{n}", f"p{n}", "2024-03-01T10:00:00Z", timepoint="assessment", life=4,
                                     ratings=ratings)]
    with bridge.repository.unit_of_work() as uow:
        uow.create_many(resources)
    report = build_outcome_report(bridge.repository, bridge.dialog, ReportRequest(subgroups=("gender",)),
                                  today=date(2025, 1, 1))
    for dimension, stratum in (("all", "all"), ("gender", "female")):
        figure = report.figure("treatment-satisfaction-mean", dimension=dimension, stratum=stratum)
        assert (figure.value, figure.shown.text) == (39 / 8, "4.88")


def test_the_families_read_together_are_the_families_read_alone(loaded) -> None:
    repository = loaded.repository
    for fields in ({}, {"start": 1704067200000000, "end": 1735689600000000}, {"organizations": ("nowhere",)}):
        query = _query(loaded, dimensions=("ethnicity", "gender", "age-band", "team", "organisation"),
                       age_bands=((0, "under 18"), (18, "18 and over")), **fields)
        assert repository.outcome_figures(query) == (repository.outcome_activity(query),
                                                     repository.outcome_episodes(query),
                                                     repository.outcome_trend(query))


def test_the_scratch_table_leaves_a_table_of_its_name_alone(loaded) -> None:
    """The episodes go through a temporary table, outcome_proms, dropped by schema-qualified name."""
    with loaded.database.connect(write=True) as connection, connection.begin():
        connection.execute(text("CREATE TABLE outcome_proms (kept INTEGER)"))
        connection.execute(text("INSERT INTO outcome_proms VALUES (1)"))
    query = _query(loaded)
    loaded.repository.outcome_episodes(query)
    assert len(loaded.repository.outcome_pairs(query)) == 24
    with loaded.database.connect() as connection:
        assert connection.execute(text("SELECT kept FROM outcome_proms")).scalar() == 1
