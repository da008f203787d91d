"""Merging two Patients of one person (HL7 v2 ADT^A40): the survivor keeps every reference.

`merge_patients` finds both people in the store and, in ONE unit of work:
- rewrites every stored resource that refers to the merged Patient (found through the reference
  search index) to refer to the survivor, as a new version, so history shows the move. Provenance
  is left alone (it records what happened to which version), and so are other Patients (their
  links are identity decisions of their own);
- the merged Patient: `active: false` and a link `replaced-by` the survivor. It keeps its
  identifiers, as FHIR's merge does: a search by an old identifier still finds it, and
  `surviving_patient` (patient_links.py) leads from it to the survivor;
- the survivor: the message's demographics (merged by source trust, as any ADT), a link
  `replaces` the merged Patient, the identifiers the message retired (MRG-1) with `use: old`,
  and the merged Patient's other identifiers (another source's ids for the person) as they were.
  NHS numbers are never copied: a Patient holds one (bridge-patient), and two that differ mean one
  of them was wrong; the difference is reported as a disagreement, for someone to check with PDS;
- one Provenance for the lot: the sending organisation as author, activity UPDATE (v3-DataOperation
  has no merge) with the ISO 21089 lifecycle event `merge`, every version written as a target and
  the merged Patient's version before the merge as the source entity.
Applying the same merge again writes nothing: `unchanged`.

Decisions, as a trust's integration engineer would expect of a receiving system:
- The merged person is not in the store (the bridge holds only people its feeds named): the
  message still updates the survivor (or creates them) and records the retired identifiers on
  them, so a late message carrying one finds the survivor. Accepted (AA), since a sender's queue
  must not stop on the routine merge of someone this system never held.
- Identity linking had already joined both records into one Patient: the same, nothing to move.
- Refused with the reason (the record is quarantined, AE over MLLP): merged identifiers naming the
  survivor's own; none the store can be searched by; identifiers naming several Patients; a merged
  Patient already merged into someone else; a survivor identity linking cannot name safely.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fhir_bridge.errors import Unprocessable
from fhir_bridge.pipelines.careplan_merge import consolidate_plans
from fhir_bridge.pipelines.identity import NHS_SYSTEM, SOURCE_BASE, Disagreement, nhs_number_of, source_of
from fhir_bridge.pipelines.merge_request import MergeRequest
from fhir_bridge.pipelines.patient_links import replaced_by, repointed, surviving_patient
from fhir_bridge.pipelines.resources import DATA_OPERATION, ODS, PARTICIPANT_TYPE, Caller
from fhir_bridge.store.repository import read_if_live
from fhir_bridge.store.types import Stored, WriteResult

__all__ = ["MergeRequest", "MergeResult", "merge_patients", "surviving_patient"]

LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
NOT_MOVED = frozenset({"Patient", "Provenance"})


@dataclass
class MergeResult:
    status: str                    # created | updated | unchanged, like any imported record
    survivor_id: str
    merged_id: str | None          # None: nobody apart from the survivor held the merged identifiers
    moved: list[str] = field(default_factory=list)   # Type/id of the resources moved to the survivor
    disagreements: list[Disagreement] = field(default_factory=list)


def merge_patients(bridge, request: MergeRequest, caller: Caller, source: str) -> MergeResult:
    """Merge the person `request` names into its survivor (see the module's docstring). Raises
    Unprocessable with the reason when the merge cannot be applied safely; writes nothing then."""
    retired = _searchable(request.merged_identifiers)
    if not retired:
        raise Unprocessable("the merged person's identifiers (MRG-1) include none the store can be searched by: "
                            "an NHS number, or a local id of an authority with an identifier system")
    own = set(_searchable(request.survivor.get("identifier", [])))
    if same := [f"{s}|{v}" for s, v in retired if (s, v) in own]:
        raise Unprocessable(f"the merged person's identifier {same[0]} is the surviving person's own (PID-3)")

    survivor_id, survivor, disagreements = _survivor(bridge, request.survivor, source)
    merged_id, merged = _merged(bridge, retired, survivor_id)
    if nhs := nhs_number_of(request.survivor):  # the survivor's NHS number must not be a third person's
        others = _current(bridge, bridge.identity.holders(NHS_SYSTEM, nhs)) - {survivor_id, merged_id}
        if others:
            raise Unprocessable(f"the surviving person's NHS number {nhs} (PID-3) is held by Patient/{min(others)}, "
                                "neither record of this merge")
    survivor = _with_retired(survivor, request.merged_identifiers, merged)
    if merged is not None:
        survivor = _with_link(survivor, merged_id, "replaces")
        disagreements += _nhs_disagreement(survivor, merged, source)
        if replaced_by(merged) is None:
            merged = _with_link({**merged, "active": False}, survivor_id, "replaced-by")
    for patient in (survivor, merged):
        if patient is not None:
            _check(bridge, patient)

    with bridge.repository.unit_of_work() as uow:
        # Both records must be the caller's to merge (a partner's upload: pipelines/care_access.py);
        # a survivor new here is registered by the merge.
        stored_people = {p for p in (survivor_id, merged_id) if p and read_if_live(uow, "Patient", p) is not None}
        bridge.access.require_people(caller, stored_people, uow)
        written = [uow.update(survivor)]
        moved: list[str] = []
        moved_from: list[dict] = []  # what the moved records were: the merged person's
        if merged is not None:
            before = uow.read("Patient", merged_id)
            written.append(uow.update(merged))
            for stored in uow.referring_to("Patient", merged_id):
                if stored.resource_type in NOT_MOVED:
                    continue
                moved_resource = repointed(stored.resource, merged_id, survivor_id, bridge.settings.base_url)
                written.append(uow.update(moved_resource))
                moved_from.append(stored.resource)
                moved.append(f"{stored.resource_type}/{stored.resource_id}")
            # Both had a DIALOG+ plan: the person keeps one (pipelines/careplan_merge.py says how).
            domains = [d.code for d in bridge.dialog.domains]
            written += [uow.update(r) for r in consolidate_plans(uow, bridge.search_request, survivor_id, merged_id,
                                                                 set(moved), domains)]
        changed = [w.stored for w in written if not w.unchanged]
        if changed:
            uow.create(_provenance(bridge.resources.new_id(), changed, caller,
                                   before if merged is not None else None))
        # one person's PROMs now: a moved one close after the survivor's is a possible duplicate
        bridge.resources.note_written(uow, caller, [s.resource for s in changed], moved_from)
    return MergeResult(_status(written), survivor_id, merged_id, moved, disagreements)


# -- who is who -----------------------------------------------------------------------------------
def _survivor(bridge, incoming: dict, source: str) -> tuple[str, dict, list[Disagreement]]:
    """The survivor's id and body updated with the message's demographics. The source's own ids
    for the survivor (PID-3 local ids) decide first: identity linking alone could name the merged
    Patient (the NHS number the merge brings may be held only by it)."""
    local = [(s, v) for s, v in _searchable(incoming.get("identifier", [])) if s != NHS_SYSTEM]
    held = _current(bridge, {h for s, v in local for h in bridge.identity.holders(s, v)})
    if len(held) > 1:
        raise Unprocessable(f"the surviving person's identifiers (PID-3) belong to {len(held)} Patients: "
                            f"{', '.join(sorted(held))}")
    if held:
        patient_id = held.pop()
    else:
        link = bridge.identity.resolve(incoming)
        if link.action == "review":
            raise Unprocessable(f"the surviving person (PID) cannot be identified safely: {link.reason}")
        if link.action == "new":
            patient_id = link.patient_id or incoming["id"]
            return patient_id, {**incoming, "id": patient_id,
                                "meta": {**incoming.get("meta", {}), "source": SOURCE_BASE + source}}, []
        patient_id = surviving_patient(bridge.repository, link.patient_id)
    merge = bridge.identity.merge(bridge.repository.read("Patient", patient_id).resource, incoming, source)
    return patient_id, merge.patient, merge.disagreements


def _merged(bridge, retired: list[tuple[str, str]], survivor_id: str) -> tuple[str | None, dict | None]:
    """The Patient the retired identifiers name, other than the survivor (which holds them as old
    once merged): None when nobody else holds them."""
    holders = sorted({h for s, v in retired for h in bridge.identity.holders(s, v)} - {survivor_id})
    found = {h: bridge.repository.read("Patient", h).resource for h in holders}
    for holder, patient in found.items():
        if replaced_by(patient) is not None and (now := surviving_patient(bridge.repository, holder)) != survivor_id:
            raise Unprocessable(f"Patient/{holder}, named by the merged person's identifiers (MRG-1), was merged "
                                f"into Patient/{now} already")
    if len(found) > 1:
        raise Unprocessable(f"the merged person's identifiers (MRG-1) belong to {len(found)} Patients: "
                            f"{', '.join(holders)}")
    return next(iter(found.items()), (None, None))


def _current(bridge, patient_ids: set[str]) -> set[str]:
    return {surviving_patient(bridge.repository, p) for p in patient_ids}


def _searchable(identifiers: list) -> list[tuple[str, str]]:
    return [(i["system"], i["value"]) for i in identifiers
            if type(i) is dict and type(i.get("system")) is str and type(i.get("value")) is str]


# -- the new versions -----------------------------------------------------------------------------
def _with_retired(survivor: dict, retired: list[dict], merged: dict | None) -> dict:
    """The survivor holding the retired local ids as old (an id it held already becomes old) and
    the merged Patient's other local ids as they were. NHS numbers stay where they are."""
    identifiers = [dict(i) for i in survivor.get("identifier", [])]
    index = {(i.get("system"), i.get("value")): i for i in identifiers}
    adding = [*retired, *(merged or {}).get("identifier", [])]
    for ident in adding:
        if type(ident) is not dict or ident.get("system") in (None, NHS_SYSTEM) or not ident.get("value"):
            continue
        key = (ident["system"], ident["value"])
        if key in index:
            if ident in retired:
                index[key]["use"] = "old"
            continue
        index[key] = dict(ident)
        identifiers.append(index[key])
    return {**survivor, "identifier": identifiers} if identifiers else survivor


def _with_link(patient: dict, other_id: str, kind: str) -> dict:
    link = {"other": {"reference": f"Patient/{other_id}"}, "type": kind}
    links = list(patient.get("link", []))
    return patient if link in links else {**patient, "link": [*links, link]}


def _nhs_disagreement(survivor: dict, merged: dict, source: str) -> list[Disagreement]:
    kept, other = nhs_number_of(survivor), nhs_number_of(merged)
    if other is None or other == kept:
        return []
    return [Disagreement("identifier (NHS number, not merged)", kept, other, source, source_of(merged) or source)]


def _check(bridge, patient: dict) -> None:
    result = bridge.validator.validate(patient)
    if not result.valid:
        first = result.errors[0]
        raise Unprocessable(f"Patient/{patient.get('id')} after the merge would be invalid: {first.message}",
                            outcome=result.outcome(), expression=first.expression)


def _provenance(provenance_id: str, changed: list[Stored], caller: Caller, merged_before: Stored | None) -> dict:
    author = {"identifier": {"system": ODS, "value": caller.partner}}
    if caller.partner_name:
        author["display"] = caller.partner_name
    provenance = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "target": [{"reference": stored.location} for stored in changed],
        "recorded": max(changed, key=lambda stored: stored.last_updated).last_updated_instant,
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"},
                                {"system": LIFECYCLE, "code": "merge"}],
                     "text": "Patient merge"},
        "agent": [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]}, "who": author}],
    }
    if caller.user:
        provenance["agent"].append({"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "enterer"}]},
                                    "who": {"display": caller.user}, "onBehalfOf": author})
    if merged_before is not None:
        provenance["entity"] = [{"role": "source", "what": {"reference": merged_before.location}}]
    return provenance


def _status(written: list[WriteResult]) -> str:
    if written[0].created and not written[0].unchanged:
        return "created"
    return "unchanged" if all(w.unchanged for w in written) else "updated"
