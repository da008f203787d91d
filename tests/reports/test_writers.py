"""The report's outputs: tables that publish only what disclosure control allows, a self-contained
HTML page, and MeasureReports the project's validator accepts."""
from __future__ import annotations

import csv
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.reports import figure_rows, measure_report_bundle, to_csv, to_html, to_json
from tests.postgres import POSTGRES_ENV, postgres_schema
from tests.reports import dataset
from tests.reports.conftest import YEAR_2024


def test_csv_under_control_holds_no_raw_counts(run) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(run()))))
    assert "numerator" not in rows[0] and "people" not in rows[0]
    mixed = next(r for r in rows if r["measure"] == "people" and r["stratum"] == "Mixed")
    assert (mixed["value"], mixed["shown"], mixed["suppressed"]) == ("", "*", "True")


def test_json_states_the_rules_applied(run) -> None:
    document = orjson.loads(to_json(run(subgroups=("gender",))))
    assert document["disclosure_control"] == {"applied": True, "suppress_below": 5, "round_counts_to": 5,
                                              "caution_below_people": 30}
    assert document["period"] == {"start": "2024-01-01", "end": "2024-12-31"}
    assert [t["month"] for t in document["trend"]] == ["2024-02", "2024-05", "2024-06"]


def test_without_control_the_tables_carry_exact_counts(run) -> None:
    rows = figure_rows(run(subgroups=(), disclosure_control=False))
    people = next(r for r in rows if r["measure"] == "people")
    assert (people["value"], people["shown"]) == (24, "24")


def test_html_is_one_self_contained_page_with_charts(run) -> None:
    page = to_html(run())
    assert page.count("<svg") == 2                       # domain bars, trend line
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "By ethnic group" in page and "Entries left out of outcome figures" in page
    person = to_html(run(level="individual", patient_id="p-a0"))
    assert "Ratings per domain and DIALOG" in person and person.count("<svg") == 4


def test_html_escapes_what_the_data_says(loaded) -> None:
    with loaded.repository.unit_of_work() as uow:
        uow.create_many([dataset.referral("ref-x", "p-a0", "<script>alert(1)</script>")])
    from fhir_bridge.reports import ReportRequest, build_outcome_report
    from datetime import date
    report = build_outcome_report(loaded.repository, loaded.dialog, ReportRequest(**YEAR_2024), today=date(2025, 1, 1))
    assert "<script" not in to_html(report)


@pytest.mark.parametrize("fields", [{}, {"level": "individual", "patient_id": "p-a0"},
                                    {"level": "service", "teams": ("CareTeam/eip-south",)}])
def test_measure_reports_are_valid(run, validator, fields) -> None:
    bundle = measure_report_bundle(run(**fields), generated=datetime(2025, 1, 1, tzinfo=timezone.utc), reporter="RV3")
    reports = [e["resource"] for e in bundle["entry"]]
    assert [r["measure"].rsplit("/", 1)[1] for r in reports] == ["dialog-counts", "dialog-means", "dialog-shares"]
    for report in reports:
        result = validator.validate(report)
        assert result.valid, [(i.expression, i.message) for i in result.issues]


def test_a_suppressed_figure_is_masked_in_fhir(run) -> None:
    bundle = measure_report_bundle(run(subgroups=("ethnicity",)), generated=datetime(2025, 1, 1, tzinfo=timezone.utc))
    counts = bundle["entry"][0]["resource"]
    people = next(g for g in counts["group"] if g["code"]["coding"][0]["code"] == "people")
    assert people["population"][0]["count"] == 25
    mixed = next(s for s in people["stratifier"][0]["stratum"] if s["value"]["text"] == "Mixed")
    assert "count" not in mixed["population"][0]
    assert mixed["population"][0]["_count"]["extension"][0]["valueCode"] == "masked"


if os.environ.get(POSTGRES_ENV):  # defined only where PostgreSQL answers (.ci/run sets it): never skipped
    def test_sqlite_and_postgresql_give_identical_reports(tmp_path: Path, validator) -> None:
        from datetime import date
        from fhir_bridge.reports import ReportRequest, build_outcome_report
        outputs = []
        schema = postgres_schema(os.environ[POSTGRES_ENV])
        for url in (f"sqlite:///{tmp_path / 'a.db'}", next(schema)):
            bridge = Bridge(Settings(data_dir=tmp_path, database_url=url), validator=validator)
            try:
                dataset.load(bridge.repository)
                report = build_outcome_report(bridge.repository, bridge.dialog, ReportRequest(**YEAR_2024),
                                              today=date(2025, 1, 1))
                outputs.append(to_json(report))
            finally:
                bridge.close()
        next(schema, None)
        assert outputs[0] == outputs[1]
