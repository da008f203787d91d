"""Report figures against the hand-worked data set (dataset.py), on SQLite and PostgreSQL alike.

Hand figures, the year 2024 (24 people, 48 PROM DIALOGs that count):
- mean SQOL (8x3 + 8x4 + 7x5 + 7x5 + 5x2 + 5x3 + 4x6 + 4x4) / 48 = 191 / 48 = 3.98; treatment
  satisfaction (8x3 + 8x5 + 14x5 + 5x2 + 5x3 + 4x6 + 4x4) / 48 = 199 / 48 = 4.15;
- mental health rated 1-3: White entries (8) + Black entries and latest (10) = 18 / 48 = 37.5%;
- SQOL change (8x1 + 7x0 + 5x1 + 4x-2) / 24 = 5 / 24 = +0.21; above 0.125: 13 / 24 = 54.2%;
- per item: improved 13 / 24 = 54.2%; deteriorated 4 (Mixed) / 24: numerator below 5 -> "*";
- starting need, per item: from 1-3 (White, Black) 13 episodes, all +1; from 5-7 (Asian 7 at 0,
  Mixed 4 at -2) 11 episodes, mean -8 / 11 = -0.73, deteriorated 4 / 11 -> "*"; pooled over the 8
  life domains: 104 pairs from 1-3, 88 from 5-7 with 32 deteriorated = 36.4%;
- ethnic groups of 8, 7, 5 and 4 people: shown 10, 5, 5 and "*".
"""
from __future__ import annotations

from datetime import date

import pytest

from fhir_bridge.errors import InputError
from fhir_bridge.measures import change_between, score_dialog
from fhir_bridge.reports import OutcomeReport, ReportRequest, build_outcome_report
from tests.reports import dataset


def text(report: OutcomeReport, measure: str, item: str | None = None, dimension: str = "all",
         stratum: str = "all") -> str:
    figure = report.figure(measure, item, dimension, stratum)
    assert figure is not None, (measure, item, dimension, stratum)
    return figure.shown.text


def test_counts_split_by_purpose_and_rounded(run) -> None:
    report = run(subgroups=())
    figures = {m: (report.figure(m).value, text(report, m)) for m in
               ("dialogs", "prom-dialogs", "care-planning-dialogs", "possible-duplicate-dialogs", "people")}
    assert figures == {"dialogs": (53, "55"), "prom-dialogs": (48, "50"), "care-planning-dialogs": (3, "*"),
                       "possible-duplicate-dialogs": (2, "*"), "people": (24, "25")}


def test_means_use_prom_dialogs_only(run) -> None:
    report = run(subgroups=())
    assert text(report, "sqol-mean") == "3.98"
    assert report.figure("sqol-mean").value == pytest.approx(191 / 48)
    assert text(report, "treatment-satisfaction-mean") == "4.15"
    assert text(report, "item-mean", "mental-health") == "3.98"
    assert text(report, "item-dissatisfied", "mental-health") == "37.5%"
    assert text(report, "item-dissatisfied", "meetings") == "37.5%"   # 8 White + 10 Black rate 9-11 at 2-3


def test_change_between_entry_and_latest_prom(run) -> None:
    report = run(subgroups=())
    assert text(report, "people-paired") == "25"
    assert report.figure("sqol-change-mean").value == pytest.approx(5 / 24)
    assert text(report, "sqol-change-mean") == "+0.21"
    assert text(report, "sqol-meaningful-improvement") == "54.2%"
    assert text(report, "item-reliable-improvement", "friendships") == "54.2%"
    assert text(report, "item-reliable-deterioration", "friendships") == "*"      # 4 people
    assert report.figure("item-reliable-deterioration", "friendships").numerator == 4
    assert (text(report, "item-entry-mean", "mental-health"), text(report, "item-latest-mean", "mental-health")) \
        == ("3.88", "4.08")                                                          # 93/24, 98/24
    assert report.figure("item-change-mean", "medication") is None                   # PREM: no change measure


def test_change_split_by_starting_need(run) -> None:
    report = run(subgroups=())
    assert text(report, "item-change-from-dissatisfied", "accommodation") == "+1.00"
    assert text(report, "item-improved-from-dissatisfied", "accommodation") == "100.0%"
    assert text(report, "item-change-from-satisfied", "accommodation") == "-0.73"
    assert text(report, "item-deteriorated-from-satisfied", "accommodation") == "*"
    assert report.figure("change-from-dissatisfied").denominator == 104
    assert (report.figure("change-from-satisfied").denominator, text(report, "deteriorated-from-satisfied")) \
        == (88, "36.4%")


def test_process_measures(run) -> None:
    report = run(subgroups=())
    assert text(report, "t1-completion") == "100.0%"
    assert text(report, "t2-completion") == "100.0%"
    assert text(report, "coproduced-care-plan") == "20.8%"   # 5 of 24 hold a DIALOG+ plan


def test_subgroup_suppression_edges_at_4_5_7_and_8_people(run) -> None:
    report = run(subgroups=("ethnicity",))
    people = {s: text(report, "people", dimension="ethnicity", stratum=s) for s in report.strata("ethnicity")}
    assert people == {"Asian or Asian British": "5", "Black or Black British": "5", "Mixed": "*", "White": "10"}
    mean = {s: text(report, "sqol-mean", dimension="ethnicity", stratum=s) for s in people}
    assert mean == {"Asian or Asian British": "5.00", "Black or Black British": "2.50", "Mixed": "*", "White": "3.50"}
    improved = {s: text(report, "item-reliable-improvement", "mental-health", "ethnicity", s) for s in people}
    assert improved == {"Asian or Asian British": "*",   # 0 of 7 improved: numerator below 5
                        "Black or Black British": "100.0%", "Mixed": "*", "White": "100.0%"}
    white = report.figure("sqol-mean", None, "ethnicity", "White")
    assert white.shown.caution and white.people == 8


def test_every_subgroup_dimension(run) -> None:
    report = run()
    assert report.strata("gender") == ["female", "male"]
    assert text(report, "people", dimension="gender", stratum="female") == "15"   # 13
    assert text(report, "people", dimension="gender", stratum="male") == "10"     # 11
    assert report.strata("age-band") == ["18-24", "25-34", "35-44", "55-64"]      # ages at 2024-12-31
    assert report.strata("team") == ["CareTeam/cmht-north", "CareTeam/eip-south"]
    assert text(report, "people", dimension="team", stratum="CareTeam/cmht-north") == "15"
    assert report.strata("organisation") == ["RV3", "X9V2K"]
    assert text(report, "sqol-change-mean", dimension="organisation", stratum="X9V2K") == "*"


def test_service_level_by_team_or_organisation(run) -> None:
    north = run(level="service", teams=("CareTeam/cmht-north",), subgroups=())
    assert north.figure("people").value == 15
    assert north.figure("sqol-mean").value == pytest.approx((8 * 3.5 + 7 * 5) / 15)
    vcse = run(level="service", organizations=("X9V2K",), subgroups=())
    assert (vcse.figure("people").value, text(vcse, "people"), text(vcse, "sqol-mean")) == (4, "*", "*")


def test_individual_level_is_the_persons_own_record_without_suppression(run) -> None:
    report = run(level="individual", patient_id="p-a0")
    assert (text(report, "people"), text(report, "prom-dialogs"), text(report, "care-planning-dialogs")) == ("1", "2", "1")
    assert text(report, "sqol-change-mean") == "+1.00"
    assert [d["response_id"] for d in report.dialogs] == ["p-a0-t1", "p-a0-t2", "p-a0-cp"]
    (episode,) = report.episodes
    assert (episode["entry_id"], episode["latest_id"], episode["change_mental_health"]) == ("p-a0-t1", "p-a0-t2", 1)


def test_the_period_bounds_what_counts(run) -> None:
    spring = run(start=date(2024, 1, 1), end=date(2024, 3, 31), subgroups=())
    assert spring.figure("prom-dialogs").value == 24 and spring.figure("people-paired").value == 0
    summer = run(start=date(2024, 4, 1), end=date(2024, 12, 31), subgroups=())
    # the entry DIALOGs lie before the period; the change still pairs them with the latest inside it
    assert summer.figure("prom-dialogs").value == 24 and summer.figure("people-paired").value == 24


def test_sql_change_agrees_with_the_measures_module(loaded) -> None:
    """The SQL pairs' differences are those fhir_bridge.measures.change_between computes."""
    query_report = build_outcome_report(loaded.repository, loaded.dialog, ReportRequest(subgroups=()),
                                        today=date(2025, 1, 1))
    assert query_report.figure("people-paired").value == 24
    from fhir_bridge.reports.outcomes import _column  # noqa: PLC0415 - the column naming used by the query
    pairs = loaded.repository.outcome_pairs(_query(loaded))
    assert len(pairs) == 24
    for pair in pairs:
        entry = score_dialog(loaded.repository.read("QuestionnaireResponse", pair["entry_id"]).resource, loaded.dialog)
        latest = score_dialog(loaded.repository.read("QuestionnaireResponse", pair["latest_id"]).resource, loaded.dialog)
        expected = change_between(entry, latest)
        assert pair["sqol_change"] == pytest.approx(expected.sqol_mean_change)
        for item in expected.items:
            if item.in_change_measures:
                assert pair[f"change_{_column(item.domain.code)}"] == item.difference


def _query(bridge):
    from fhir_bridge.store.outcome_queries import OutcomeQuery
    items = [d.code.replace("-", "_") for d in bridge.dialog.domains]
    return OutcomeQuery(items=items, change_items=items[:8], as_of=20250101)


def test_exit_dialog_of_one_service_serves_as_entry_of_the_next(bridge) -> None:
    d = dataset.dialog
    with bridge.repository.unit_of_work() as uow:
        uow.create_many([
            dataset.patient("p-move", "female", "1985-05-05", "A"),
            d("mv-1", "p-move", "2024-01-10T10:00:00Z", timepoint="assessment", life=2, treatment=4),
            d("mv-2", "p-move", "2024-03-10T10:00:00Z", timepoint="discharge", life=4, treatment=4),
            d("mv-3", "p-move", "2024-06-10T10:00:00Z", timepoint="review", life=5, treatment=4),   # next service
            d("mv-4", "p-move", "2024-07-10T10:00:00Z", timepoint="review", org="X9V2K", life=6, treatment=4),
        ])
    def episodes(exit_as_entry: bool) -> list[tuple]:
        report = build_outcome_report(bridge.repository, bridge.dialog, ReportRequest(
            level="individual", patient_id="p-move", exit_as_entry=exit_as_entry), today=date(2025, 1, 1))
        return sorted((e["entry_id"], e["latest_id"], e["has_entry"]) for e in report.episodes)
    # Another provider's DIALOG (X9V2K) never borrows RV3's exit: its episode is mv-4 alone.
    assert episodes(True) == [("mv-1", "mv-2", 1), ("mv-2", "mv-3", 1), ("mv-4", "mv-4", 0)]
    assert episodes(False) == [("mv-1", "mv-2", 1), ("mv-3", "mv-3", 0), ("mv-4", "mv-4", 0)]


def test_a_referral_is_one_episode_whatever_its_timepoints(bridge) -> None:
    d = dataset.dialog
    with bridge.repository.unit_of_work() as uow:
        uow.create_many([
            dataset.patient("p-ref", "male", "1970-01-01", None),
            d("rf-1", "p-ref", "2024-01-10T10:00:00Z", timepoint="assessment", life=3, referral_id="r1"),
            d("rf-2", "p-ref", "2024-02-10T10:00:00Z", timepoint="assessment", life=4, referral_id="r1"),
            d("rf-3", "p-ref", "2024-03-10T10:00:00Z", timepoint="review", life=6, referral_id="r1"),
        ])
    report = build_outcome_report(bridge.repository, bridge.dialog, ReportRequest(level="individual", patient_id="p-ref"),
                                  today=date(2025, 1, 1))
    assert [(e["entry_id"], e["latest_id"], e["sqol_change"]) for e in report.episodes] == [("rf-1", "rf-3", 3.0)]


@pytest.mark.parametrize(("fields", "message"), [
    ({"level": "individual"}, "needs the person"),
    ({"level": "service"}, "needs an organisation or a team"),
    ({"subgroups": ("religion",)}, "unknown subgroup 'religion'"),
    ({"start": date(2024, 5, 1), "end": date(2024, 4, 1)}, "starts (2024-05-01) after it ends"),
    ({"patient_id": "p-a0"}, "belongs to the individual level"),
])
def test_unusable_requests_say_why(bridge, fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_outcome_report(bridge.repository, bridge.dialog, ReportRequest(**fields), today=date(2025, 1, 1))
