"""Writes as a FHIR server makes them: validate at the edge, then store the resource, its history,
index rows, DIALOG score row and a Provenance naming the partner, all in one transaction.

The API and the bundle processor call this; nothing here knows HTTP. `Caller` is who is writing
(the authenticated partner organisation and, when its system passes one, the user).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol

from fhir_bridge.errors import InputError, PreconditionFailed, Unprocessable
from fhir_bridge.fhir.json_patch import apply_patch
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.store.types import Stored, WriteResult
from fhir_bridge.validation import Validator

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ACTIVITY = {"POST": ("CREATE", "create"), "PUT": ("UPDATE", "revise"), "PATCH": ("UPDATE", "revise"),
            "DELETE": ("DELETE", "delete")}
UNTRACKED = {"Provenance"}  # a Provenance is itself the record of a write


@dataclass(frozen=True)
class Caller:
    partner: str                     # ODS code of the partner organisation (from its token)
    partner_name: str = ""
    user: str | None = None          # the user claim, when the partner's system passes one
    scopes: frozenset[str] = frozenset()


SYSTEM_CALLER = Caller("fhir-bridge", "fhir-bridge", None, frozenset({"system/*.*"}))


class WriteRule(Protocol):
    """A rule for one kind of resource, run inside the write's transaction before it is stored:
    raises to refuse the write, or returns the resource to store (e.g. with server-made narrative).
    `if_match` is the version the client sent (None: it sent none)."""

    def __call__(self, uow, resource: dict, *, method: str, if_match: int | None) -> dict: ...


class WriteGuard(Protocol):
    """A check of who writes what, run inside the write's transaction before the write rules (care
    access, the recording-burden guard): raises to refuse, appends warnings to `issues`, returns the
    resource to store (e.g. tagged)."""

    def __call__(self, uow, caller: Caller, resource: dict, issues: list[Issue]) -> dict: ...


class WriteFollower(Protocol):
    """What a client's write entails, run in its transaction after it (and after a delete): returns
    the further writes made (a plan's narrative made again when its Goal changed), which the
    write's Provenance names too."""

    def __call__(self, uow, resource_type: str, resource_id: str) -> list[WriteResult]: ...


class AccessGuard(Protocol):
    """What the care-access policy (fhir_bridge.pipelines.care_access) offers the write paths."""

    def check_write(self, uow, caller: Caller, resource: dict, issues: list[Issue]) -> dict: ...

    def check_writes(self, uow, caller: Caller, resources: list[dict]) -> list[dict]: ...

    def check_delete(self, uow, caller: Caller, resource_type: str, resource_id: str) -> None: ...

    def check_read(self, caller: Caller, stored: Stored, reader=None) -> Stored: ...


@dataclass
class Written:
    result: WriteResult
    issues: list[Issue] = field(default_factory=list)  # warnings and information from validation


class ResourceService:
    def __init__(self, repository, validator: Validator, *, find: Callable[[str, list[tuple[str, str]]], list[Stored]],
                 new_id: Callable[[], str] = lambda: str(uuid.uuid4())):
        self.repository = repository
        self.validator = validator
        self.find = find        # (type, search params) -> current matches, for conditional interactions
        self.new_id = new_id
        self.write_rules: list[WriteRule] = []  # run by the client interactions (create, update, patch)
        self.followers: list[WriteFollower] = []  # and after them (and after a delete)
        self.access: AccessGuard | None = None  # who may write whose records (client interactions, imports)
        # Run on every write that stores a resource (client interactions, imports, sessions), after access.
        self.guards: list[WriteGuard] = []

    # -- validation at the edge ------------------------------------------------------------------
    def check(self, resource: dict, expected_type: str | None = None) -> list[Issue]:
        """Profile validation of an incoming resource: errors refuse it (422), the rest is returned."""
        if type(resource) is not dict:
            raise InputError("The body must be a FHIR resource (a JSON object)")
        if expected_type and resource.get("resourceType") != expected_type:
            raise InputError(f"The body is a {resource.get('resourceType')!r}, not a {expected_type}",
                             expression="resourceType")
        result = self.validator.validate(resource)
        if not result.valid:
            first = result.errors[0]
            raise Unprocessable(f"{resource.get('resourceType')} failed validation: {first.message}",
                                outcome=result.outcome(), expression=first.expression)
        return [i for i in result.issues if not (i.severity == "information" and i.code == "informational"
                                                 and not i.expression)]

    # -- interactions ------------------------------------------------------------------------------
    def create(self, resource: dict, caller: Caller, *, if_none_exist: list[tuple[str, str]] | None = None,
               uow=None, assigned_id: str | None = None) -> Written:
        """`assigned_id`: the id a transaction chose in advance, so that other entries' references
        to this one could be rewritten before anything was written; otherwise a new one."""
        rtype = resource.get("resourceType") if type(resource) is dict else None
        if if_none_exist is not None:
            existing = self._conditional(rtype, if_none_exist, "create")
            if existing is not None:
                if self.access is not None:  # the match is answered: it must be one the caller may see
                    self.access.check_read(caller, existing, uow)
                return Written(WriteResult(existing, created=False, unchanged=True))
        issues = self.check(resource)
        resource = {**resource, "id": assigned_id or self.new_id()}
        return Written(self._write(lambda u: u.create(self._ruled(u, resource, "POST", None, caller, issues)),
                                   caller, "POST", uow, follow=True), issues)

    def update(self, resource_type: str, resource_id: str, resource: dict, caller: Caller, *,
               if_match: int | None = None, uow=None) -> Written:
        issues = self.check(resource, resource_type)
        if resource.get("id") != resource_id:
            raise InputError(f"The body's id {resource.get('id')!r} does not match the URL's {resource_id!r}",
                             expression=f"{resource_type}.id")
        return Written(self._write(lambda u: u.update(self._ruled(u, resource, "PUT", if_match, caller, issues),
                                                      if_match=if_match), caller, "PUT", uow, follow=True), issues)

    def conditional_update(self, resource_type: str, params: list[tuple[str, str]], resource: dict,
                           caller: Caller, *, uow=None) -> Written:
        existing = self._conditional(resource_type, params, "update")
        if existing is None:
            if resource.get("id"):
                return self.update(resource_type, resource["id"], resource, caller, uow=uow)
            return self.create(resource, caller, uow=uow)
        if resource.get("id") not in (None, existing.resource_id):
            raise InputError(f"The body's id {resource['id']!r} is not the matched {resource_type}/{existing.resource_id}")
        return self.update(resource_type, existing.resource_id, {**resource, "id": existing.resource_id}, caller, uow=uow)

    def patch(self, resource_type: str, resource_id: str, patch: object, caller: Caller, *,
              if_match: int | None = None, uow=None) -> Written:
        current = (uow or self.repository).read(resource_type, resource_id)
        if if_match is not None and if_match != current.version_id:
            raise PreconditionFailed(f"{resource_type}/{resource_id} is at version {current.version_id}, not {if_match}",
                                     current_version=current.version_id)
        patched = apply_patch(current.resource, patch)
        patched.get("meta", {}).pop("versionId", None)
        issues = self.check(patched, resource_type)
        if patched.get("id") != resource_id:
            raise Unprocessable("A patch may not change the resource's id")
        write = self._write(lambda u: u.update(self._ruled(u, patched, "PATCH", if_match, caller, issues),
                                               if_match=current.version_id, method="PATCH"), caller, "PATCH", uow,
                            follow=True)
        return Written(write, issues)

    def put_validated(self, resource: dict, caller: Caller, *, uow) -> WriteResult:
        """Store (create or update by id) a resource the caller has already validated, with its
        Provenance: the import pipeline validates once, at the edge, then links identities."""
        def store(u) -> WriteResult:
            [allowed] = self._allowed(u, caller, [_custodian(resource, caller)])
            return u.update(self._guarded(u, caller, allowed, []))

        return self._write(store, caller, "PUT", uow)

    def put_many_validated(self, resources: list[dict], caller: Caller, *, uow,
                           precomputed: dict | None = None) -> list[WriteResult]:
        """put_validated for a batch (the import pipeline's unit of work): one bulk write, and one
        Provenance per activity (created, updated) naming every resource the batch changed.
        `precomputed`: what the import's workers computed (UnitOfWork.put_many)."""
        allowed = self._allowed(uow, caller, [_custodian(r, caller) for r in resources])
        guarded = self._guarded_batch(uow, caller, allowed)
        before = [r for guard in self.guards if hasattr(guard, "before_batch") for r in guard.before_batch(uow, guarded)]
        results = uow.put_many(guarded, then=lambda results: self._provenances(results, caller),
                               precomputed=precomputed)
        self.note_written(uow, caller, [r.stored.resource for r in results if not r.unchanged], before)
        return results

    def note_written(self, uow, caller: Caller, written: list[dict], before: list[dict] = ()) -> None:
        """Resources a unit of work wrote (and what they were `before`), for the guards that judge
        stored ones again when the work is done (recording_burden.py); writes made outside this
        service (a Patient merge moving a person's records) are told here too."""
        for guard in self.guards:
            if hasattr(guard, "note_batch"):
                guard.note_batch(uow, written, list(before), self._writer_of_judged_again(caller))

    def put_checked(self, writes: list[tuple[dict, int | None]], caller: Caller, *, uow) -> list[WriteResult]:
        """Store resources the caller has validated, each only while still at the version it read
        (`(resource, version)`; None: create or overwrite), then one Provenance per activity (created,
        updated) naming everything written: one record of a piece of work such as a DIALOG+ session.
        A stale version raises the repository's PreconditionFailed; the caller may retry."""
        guarded = [self._guarded(uow, caller, resource, []) for resource, _ in writes]
        return uow.put_many(guarded, if_match=[version for _, version in writes],
                            then=lambda results: self._provenances(results, caller))

    def delete(self, resource_type: str, resource_id: str, caller: Caller, *, if_match: int | None = None,
               uow=None) -> Stored | None:
        def do(u):
            if self.access is not None:
                self.access.check_delete(u, caller, resource_type, resource_id)
            stored = u.delete(resource_type, resource_id, if_match=if_match)
            if stored is not None:
                self._noted(u, caller, stored)
                followed = self._followed(u, resource_type, resource_id)
                if resource_type not in UNTRACKED:
                    u.create(self._provenance([stored], caller, "DELETE"))
                if followed:
                    u.create(self._provenance(followed, caller, "PUT"))
            return stored

        if uow is not None:
            return do(uow)
        with self.repository.unit_of_work() as u:
            return do(u)

    # -- helpers -------------------------------------------------------------------------------
    def _provenances(self, results: list[WriteResult], caller: Caller) -> list[dict]:
        """One Provenance per activity (created, updated) naming every resource a piece of work wrote."""
        provenances = []
        for created in (True, False):
            targets = [r.stored for r in results if not r.unchanged and r.created is created
                       and r.stored.resource_type not in UNTRACKED]
            if targets:
                provenances.append(self._provenance(targets, caller, "POST" if created else "PUT"))
        return provenances

    def _ruled(self, uow, resource: dict, method: str, if_match: int | None, caller: Caller,
               issues: list[Issue]) -> dict:
        if self.access is not None:
            resource = self.access.check_write(uow, caller, resource, issues)
        resource = self._guarded(uow, caller, resource, issues)
        for rule in self.write_rules:
            resource = rule(uow, resource, method=method, if_match=if_match)
        return resource

    def _allowed(self, uow, caller: Caller, resources: list[dict]) -> list[dict]:
        """An import's batch as the care-access policy lets the caller store it (Forbidden if not)."""
        return resources if self.access is None else self.access.check_writes(uow, caller, resources)

    def _guarded(self, uow, caller: Caller, resource: dict, issues: list[Issue]) -> dict:
        for guard in self.guards:
            resource = guard(uow, caller, resource, issues)
        return resource

    def _guarded_batch(self, uow, caller: Caller, resources: list[dict]) -> list[dict]:
        """The guards over a batch in order; a guard with `batch` judges the whole batch at once
        (and sees each resource's predecessors in it)."""
        for guard in self.guards:
            batch = getattr(guard, "batch", None)
            resources = batch(uow, caller, resources) if batch else [guard(uow, caller, r, []) for r in resources]
        return resources

    def _writer_of_judged_again(self, caller: Caller) -> Callable:
        """How a guard stores what it judges otherwise at the end of a unit of work (a later PROM,
        now a possible duplicate): new versions, with a Provenance naming `caller`, whose write made them."""
        def write(uow, resources: list[dict]) -> None:
            if resources:
                uow.put_many(resources, then=lambda results: self._provenances(results, caller))
        return write

    def _noted(self, uow, caller: Caller, written: Stored) -> None:
        for guard in self.guards:
            if hasattr(guard, "note_write"):
                guard.note_write(uow, written, self._writer_of_judged_again(caller))

    def _write(self, action: Callable, caller: Caller, method: str, uow, *, follow: bool = False) -> WriteResult:
        def do(u) -> WriteResult:
            result = action(u)
            if result.unchanged:
                return result
            stored = result.stored
            self._noted(u, caller, stored)
            followed = self._followed(u, stored.resource_type, stored.resource_id) if follow else []
            if stored.resource_type not in UNTRACKED:
                u.create(self._provenance([stored, *followed], caller, "POST" if result.created else method))
            return result

        if uow is not None:
            return do(uow)
        with self.repository.unit_of_work() as u:
            return do(u)

    def _followed(self, uow, resource_type: str, resource_id: str) -> list[Stored]:
        return [r.stored for follow in self.followers for r in follow(uow, resource_type, resource_id)
                if not r.unchanged]

    def _conditional(self, resource_type: str | None, params: list[tuple[str, str]], what: str) -> Stored | None:
        if not resource_type:
            raise InputError("A conditional interaction needs a resource type")
        if not params:
            raise InputError(f"A conditional {what} needs search criteria")
        matches = self.find(resource_type, params)
        if len(matches) > 1:
            raise PreconditionFailed(f"Conditional {what}: {len(matches)} {resource_type} resources match; "
                                     "the criteria must select one at most")
        return matches[0] if matches else None

    def _provenance(self, targets: list[Stored], caller: Caller, method: str) -> dict:
        code, display = ACTIVITY[method]
        agent_who = {"identifier": {"system": ODS, "value": caller.partner}}
        if caller.partner_name:
            agent_who["display"] = caller.partner_name
        agent = {"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]}, "who": agent_who}
        provenance = {
            "resourceType": "Provenance",
            "id": self.new_id(),
            "target": [{"reference": stored.location} for stored in targets],
            "recorded": max(targets, key=lambda stored: stored.last_updated).last_updated_instant,
            "activity": {"coding": [{"system": DATA_OPERATION, "code": code, "display": display}]},
            "agent": [agent],
        }
        if caller.user:
            provenance["agent"].append({
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "enterer"}]},
                "who": {"display": caller.user},
                "onBehalfOf": agent_who,
            })
        return provenance



def with_custodian(patient: dict, caller: Caller) -> dict:
    """A Patient held by the caller's organisation (managingOrganization) when it names no custodian:
    registering or importing a person (fhir_bridge.pipelines.care_access); the bridge registers nobody."""
    if patient.get("managingOrganization") or caller.partner == SYSTEM_CALLER.partner:
        return patient
    reference = {"type": "Organization", "identifier": {"system": ODS, "value": caller.partner},
                 "display": caller.partner_name or caller.partner}
    return {**patient, "managingOrganization": reference}


def _custodian(resource: dict, caller: Caller) -> dict:
    return with_custodian(resource, caller) if resource.get("resourceType") == "Patient" else resource
