"""The report as FHIR MeasureReports: one per published Measure (profiles/Measure-dialog-*.json),
in a collection Bundle. R4 sets the scoring per Measure, so figures go by kind: counts (cohort),
means and mean changes (continuous variable), shares (proportion).

- group: one figure; its code from the dialog-outcome-figure CodeSystem, the DIALOG item (for
  per-item figures) in the measure-group-item extension;
- stratifier: one per subgroup dimension (code from dialog-report-subgroup), a stratum per group
  of people (value.text);
- a suppressed count has no `count` but a data-absent-reason `masked` on it; a suppressed score
  an empty measureScore with the same extension; a figure resting on few people carries the
  measure-caution extension.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from fhir_bridge.reports.disclosure import round_count
from fhir_bridge.reports.outcomes import Figure, OutcomeReport

__all__ = ["MEASURES", "measure_report_bundle"]

BASE = "https://fhir-bridge.example.org"
FIGURE_SYSTEM = f"{BASE}/CodeSystem/dialog-outcome-figure"
SUBGROUP_SYSTEM = f"{BASE}/CodeSystem/dialog-report-subgroup"
DOMAIN_SYSTEM = f"{BASE}/CodeSystem/dialog-domain"
ITEM_EXT = f"{BASE}/StructureDefinition/measure-group-item"
CAUTION_EXT = f"{BASE}/StructureDefinition/measure-caution"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
# kind of figure -> the Measure publishing it
MEASURES = {"count": f"{BASE}/Measure/dialog-counts", "mean": f"{BASE}/Measure/dialog-means",
            "change": f"{BASE}/Measure/dialog-means", "share": f"{BASE}/Measure/dialog-shares"}
_NAMESPACE = uuid.UUID("4f1c2a9e-7d55-4d53-9c1e-6b0f0d7a2c11")  # ids: uuid5 of the report's parameters


def measure_report_bundle(report: OutcomeReport, *, generated: datetime, reporter: str | None = None) -> dict:
    """A collection Bundle of MeasureReports (counts, means, shares), deterministic for the same
    data and parameters apart from `date`."""
    reports = {url: _report(report, url, generated, reporter) for url in dict.fromkeys(MEASURES.values())}
    control = report.request.disclosure_control and report.request.level != "individual"
    groups: dict[tuple[str, str | None], dict] = {}
    for figure in report.figures:
        key = (figure.measure, figure.item)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _group(report, figure)
            reports[MEASURES[figure.kind]]["group"].append(group)
        if figure.dimension == "all":
            group.update(_scored(figure, control))
            continue
        stratifier = next((s for s in group.setdefault("stratifier", []) if s["code"][0]["coding"][0]["code"]
                           == figure.dimension), None)
        if stratifier is None:
            stratifier = {"code": [{"coding": [{"system": SUBGROUP_SYSTEM, "code": figure.dimension}]}], "stratum": []}
            group["stratifier"].append(stratifier)
        stratifier["stratum"].append({"value": {"text": figure.stratum}, **_scored(figure, control)})
    entries = [r for r in reports.values() if r["group"]]
    return {"resourceType": "Bundle", "id": entries[0]["id"] if entries else str(uuid.uuid5(_NAMESPACE, "empty")),
            "type": "collection", "timestamp": _instant(generated),
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries]}


def _report(report: OutcomeReport, measure: str, generated: datetime, reporter: str | None) -> dict:
    r = report.request
    key = "|".join([measure, r.level, str(r.start), str(r.end), ",".join(r.organizations), ",".join(r.teams),
                    r.patient_id or "", ",".join(r.subgroups or ()), str(r.disclosure_control), str(r.exit_as_entry)])
    resource: dict = {"resourceType": "MeasureReport", "id": str(uuid.uuid5(_NAMESPACE, key)), "status": "complete",
                      "type": "individual" if r.level == "individual" else "summary", "measure": measure}
    if r.patient_id:
        resource["subject"] = {"reference": f"Patient/{r.patient_id}"}
    resource["date"] = _instant(generated)
    if reporter:
        resource["reporter"] = {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                               "value": reporter}}
    period = {}
    if r.start:
        period["start"] = r.start.isoformat()
    period["end"] = (r.end or report.as_of).isoformat()
    resource["period"] = period
    resource["group"] = []
    return resource


def _group(report: OutcomeReport, figure: Figure) -> dict:
    group: dict = {}
    if figure.item:
        group["extension"] = [{"url": ITEM_EXT, "valueCoding": {"system": DOMAIN_SYSTEM, "code": figure.item}}]
    display = dict((code, text) for code, text, _ in report.items).get(figure.item or "")
    group["code"] = {"coding": [{"system": FIGURE_SYSTEM, "code": figure.measure}],
                     **({"text": f"{figure.measure}: {display}"} if display else {})}
    return group


def _scored(figure: Figure, control: bool) -> dict:
    """population[] and measureScore of one figure (group level, or a stratum)."""
    out: dict = {}
    if figure.shown.caution:
        out["extension"] = [{"url": CAUTION_EXT, "valueBoolean": True}]
    shown = figure.shown
    if figure.kind == "count":
        out["population"] = [_population("initial-population", shown.value, shown.suppressed, False)]
        return out
    if figure.kind == "share":
        out["population"] = [_population("denominator", figure.denominator, shown.suppressed, control),
                             _population("numerator", figure.numerator, shown.suppressed, control)]
    else:
        out["population"] = [_population("initial-population", figure.denominator, shown.suppressed, control)]
    if shown.suppressed:
        out["measureScore"] = {"extension": [_masked()]}
    elif shown.value is not None:
        out["measureScore"] = {"value": shown.value}
    return out


def _population(code: str, count, suppressed: bool, rounded: bool) -> dict:
    population: dict = {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}}
    if suppressed:
        population["_count"] = {"extension": [_masked()]}
    elif count is not None:
        # The counts behind a published score are rounded like any count, so nothing finer leaks.
        population["count"] = round_count(int(count)) if rounded else int(count)
    return population


def _masked() -> dict:
    return {"url": DATA_ABSENT, "valueCode": "masked"}


def _instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
