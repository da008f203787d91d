"""Pooled DIALOG outcome reports: figures from the store's SQL aggregates, disclosure control,
tables (CSV, JSON), an HTML page with charts, and FHIR MeasureReports."""
from fhir_bridge.reports.disclosure import CAUTION_BELOW, ROUND_TO, SUPPRESS_BELOW, Shown, show
from fhir_bridge.reports.html import to_html
from fhir_bridge.reports.measure_report import measure_report_bundle
from fhir_bridge.reports.outcomes import (LEVELS, Figure, OutcomeReport, ReportRequest, build_outcome_report,
                                          parse_request)
from fhir_bridge.reports.tables import figure_rows, to_csv, to_json

__all__ = ["CAUTION_BELOW", "LEVELS", "ROUND_TO", "SUPPRESS_BELOW", "Figure", "OutcomeReport", "ReportRequest", "Shown",
           "build_outcome_report", "figure_rows", "measure_report_bundle", "parse_request", "show", "to_csv",
           "to_html", "to_json"]
