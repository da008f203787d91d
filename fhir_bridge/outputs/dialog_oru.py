"""A stored DIALOG QuestionnaireResponse and its Patient -> the record an ORU^R01 is built from.

The record (its names: `RECORD`) holds plain values already in HL7 form; which segment and field
each goes to is data (mappings/hl7-out/oru-dialog.yaml). Answers are read by `score_dialog`,
which matches items by linkId to the Questionnaire's coded items, so every value lands under its
domain's code, never a position. Rating 8 ("not applicable") and unanswered items are left out:
an OBX carries a rating 1-7, nothing else (mappings/hl7-out/README.md).
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fhir_bridge.errors import Unprocessable
from fhir_bridge.identifiers import is_valid_nhs_number
from fhir_bridge.measures import DialogDefinition, score_dialog
from fhir_bridge.outputs.hl7_mapping import RecordShape

__all__ = ["RECORD", "dialog_oru_record", "hl7_timestamp", "local_identifier_systems", "recorder_of"]

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
PURPOSE_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
TIMEPOINT_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-timepoint"
RECORDING_ORG_EXT = "https://fhir-bridge.example.org/StructureDefinition/recording-organization"
# Where the importers keep an EPR's own id of a person (+ the EPR's ODS code): the RiO client id
# (mappings/rio/client.yaml) and an HL7 PID-3 MR/PI id whose assigning authority is the ODS code
# (mappings/hl7, block local-id).
LOCAL_ID_SYSTEM_BASES = ("https://fhir-bridge.example.org/Id/rio-client/",
                         "https://fhir-bridge.example.org/Id/hl7-local/")

RECORD: RecordShape = {
    "control-id": None, "message-time": None, "result-status": None, "recording-organization": None,
    "response-id": None, "authored": None, "purpose": None, "timepoint": None,
    "identifiers": frozenset({"value", "authority", "type"}),
    "family": None, "given": None, "second-given": None, "birth-date": None, "gender": None, "postcode": None,
    "domains": frozenset({"domain", "snomed", "display", "rating", "help", "help-display"}),
}

_DATETIME = re.compile(r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?(Z|[+-]\d\d:\d\d)?)?)?)?\Z")


def local_identifier_systems(organization: str) -> tuple[str, ...]:
    return tuple(base + organization for base in LOCAL_ID_SYSTEM_BASES)


def dialog_oru_record(response: dict, patient: dict, definition: DialogDefinition, *, receiving_organization: str,
                      recorder: str | None, control_id: str, message_time: datetime, corrected: bool) -> dict[str, Any]:
    """Unprocessable (saying why) when the response cannot be sent: the EPR could not match the
    person, or the answers cannot be read unambiguously."""
    where = f"QuestionnaireResponse/{response.get('id')}"
    score = score_dialog(response, definition)
    if score.problems:
        raise Unprocessable(f"{where}: {score.problems[0].message} ({score.problems[0].expression})")
    authored = hl7_timestamp(response.get("authored"))
    if not authored:
        raise Unprocessable(f"{where}: authored {response.get('authored')!r} is not a FHIR dateTime")
    identifiers = _identifiers(patient, receiving_organization)
    if not identifiers:
        raise Unprocessable(f"{where}: Patient/{patient.get('id')} has neither a valid NHS number nor an identifier "
                            f"of {receiving_organization}: the EPR could not match the person")
    name = _name(patient)
    given = [g for g in name.get("given", ()) if isinstance(g, str)]
    record: dict[str, Any] = {
        "control-id": control_id,
        "message-time": message_time.strftime("%Y%m%d%H%M%S%z"),
        "result-status": "C" if corrected else "F",
        "recording-organization": recorder,
        "response-id": response.get("id"),
        "authored": authored,
        "purpose": _extension_code(response, PURPOSE_EXT),
        "timepoint": _extension_code(response, TIMEPOINT_EXT),
        "identifiers": identifiers,
        "family": name.get("family"),
        "given": given[0] if given else None,
        "second-given": " ".join(given[1:]) or None,
        "birth-date": hl7_timestamp(patient.get("birthDate")),
        "gender": patient.get("gender"),
        "postcode": next((a["postalCode"] for a in patient.get("address", ()) if isinstance(a, dict)
                          and isinstance(a.get("postalCode"), str)), None),
        "domains": [],
    }
    more_help = score.more_help
    for item in score.items:  # the Questionnaire's order
        snomed = definition.rating_item_for(item.domain).snomed_coding
        help_answer = more_help.get(item.domain.code)
        record["domains"].append({
            "domain": item.domain.code,
            "snomed": snomed.get("code", item.domain.snomed),
            "display": snomed.get("display") or item.domain.display,
            "rating": str(item.rating) if item.rating is not None else None,  # None for 8 and unanswered
            "help": None if help_answer is None else "Y" if help_answer else "N",
            "help-display": f"More help wanted: {item.domain.display}",  # as CodeSystem dialog-more-help
        })
    return record


def recorder_of(response: dict) -> tuple[str | None, str | None]:
    """The recording-organization extension as (ODS code, reference): one of them is usually set."""
    for ext in response.get("extension", ()):
        if isinstance(ext, dict) and ext.get("url") == RECORDING_ORG_EXT and isinstance(ext.get("valueReference"), dict):
            ref = ext["valueReference"]
            ident = ref.get("identifier") or {}
            ods = ident.get("value") if ident.get("system") == ODS_SYSTEM else None
            return (ods.upper() if isinstance(ods, str) else None), ref.get("reference")
    return None, None


def hl7_timestamp(value: Any) -> str | None:
    """FHIR date/dateTime -> HL7 TS (YYYY[MM[DD[HHMM[SS[.SSSS]]]]][+ZZZZ]), precision kept."""
    match = _DATETIME.match(value) if isinstance(value, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    text = year + (month or "") + (day or "") + (hour or "") + (minute or "") + (second or "")
    if fraction:
        text += "." + fraction[:4]
    if zone:
        text += "+0000" if zone == "Z" else zone.replace(":", "")
    return text


def _identifiers(patient: dict, organization: str) -> list[dict[str, str]]:
    """PID-3: the NHS number (NHS^NH), then the EPR's own ids of the person (authority = its ODS code, MR)."""
    nhs: list[dict[str, str]] = []
    local: list[dict[str, str]] = []
    local_systems = local_identifier_systems(organization)
    for ident in patient.get("identifier", ()):
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            continue
        value = ident["value"].replace(" ", "")
        if ident.get("system") == NHS_SYSTEM and is_valid_nhs_number(value):
            nhs.append({"value": value, "authority": "NHS", "type": "NH"})
        elif ident.get("system") in local_systems or _assigned_by(ident, organization):
            local.append({"value": ident["value"], "authority": organization, "type": "MR"})
    return nhs[:1] + local


def _assigned_by(ident: dict, organization: str) -> bool:
    assigner = (ident.get("assigner") or {}).get("identifier") or {}
    return assigner.get("system") == ODS_SYSTEM and str(assigner.get("value", "")).upper() == organization


def _name(patient: dict) -> dict:
    names = [n for n in patient.get("name", ()) if isinstance(n, dict)]
    return next((n for n in names if n.get("use") == "official"), names[0] if names else {})


def _extension_code(resource: dict, url: str) -> str | None:
    for ext in resource.get("extension", ()):
        if isinstance(ext, dict) and ext.get("url") == url and isinstance(ext.get("valueCoding"), dict):
            return ext["valueCoding"].get("code")
    return None
