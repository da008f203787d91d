"""A DIALOG+ session as `Patient/[id]/$dialog-plus-session` receives it: a FHIR Parameters resource
(profiles/OperationDefinition-dialog-plus-session.json) read into plain values.

    response        0..1  QuestionnaireResponse  the DIALOG ratings (stored with purpose care-planning)
    date            0..1  dateTime               when the session took place (default: response.authored, else now;
                                                 not in the future, a day's grace)
    practitioner    0..1  Reference              the worker who ran it (Practitioner or PractitionerRole)
    domain          0..n  parts                  a domain the person chose to discuss (up to the setting, 3)
      code          1..1  code | Coding          a dialog-domain code (mental-health, accommodation ...)
      understanding, bestCase, smallestStep, options   0..1 string: the four steps' content
      action        0..*  parts                  an agreed action
        description 1..1  string                 what will be done
        owner       1..*  Reference              who: the person, a Practitioner(Role), an Organization, a RelatedPerson
        due         0..1  date                   by when
    review          0..*  parts                  what became of an action of the plan (dated the session's day: not
                                                 before the action was agreed or last reviewed)
      action        1..1  id | string            the action's id (CarePlan.activity.id)
      status        1..1  code                   done | in-progress | dropped
      note          0..1  string
    agreement       0..1  parts                  MHSDS MHS009
      agreedBy      1..*  code                   person | carer | professional
      date          0..1  dateTime               default: the session's date; not before it, not in the future
      familyCarePlan 0..1 boolean
    keyWorker       0..1  parts                  the named key worker (required for a person's first plan)
      member        1..1  Reference(Practitioner)
      start         0..1  date                   default: the session's day
      onBehalfOf    0..1  Reference(Organization)
    careTeamMember  0..*  parts                  someone else who joins the care team
      member        1..1  Reference
      role          1..1  code                   professional | vcse-worker | carer
      start, onBehalfOf   as for keyWorker
    crisis          0..1  parts                  the crisis plan (a CarePlan of type 12 part of the plan): items to add
      earlyWarningSign 0..* string
      whatHelps     0..*  string
      whoToContact  0..*  string | Reference     a Reference (with a display) is also the item's performer
      howToCommunicate 0..* string

Every problem is collected and reported at once, each with the FHIRPath of the element
(`Parameters.parameter[3].part[1].value.ofType(Coding)`), so a partner's system can fix a
session in one go. Problems with the session's content are 422: the body is a valid Parameters.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from fhir_bridge.careplan.codes import AGREED_BY, DOMAIN_SYSTEM, OWNER_TYPES, REVIEW_OUTCOMES, ROLES
from fhir_bridge.errors import InputError, Unprocessable
from fhir_bridge.fhir.outcome import Issue, operation_outcome

__all__ = ["Action", "Agreement", "CrisisItem", "Discussion", "Member", "Review", "Session", "parse_session",
           "Problems", "reference_type", "CRISIS_PARTS"]

MAX_TEXT = 10_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?")
# Characters XML 1.0 cannot carry: text with them could never be shown in the plan's narrative.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_REFERENCE = re.compile(r"(?:.*/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_PRIMITIVES = {"String", "Code", "Id", "Date", "DateTime", "Boolean", "Integer", "Uri", "Markdown", "Instant"}
_JOINING_ROLES = tuple(r for r in ROLES if r not in ("key-worker", "partner-organisation"))
# The crisis parameter's parts -> crisis-plan-section codes (terminology/CodeSystem-crisis-plan-section.json).
CRISIS_PARTS = {"earlyWarningSign": "early-warning-signs", "whatHelps": "what-helps",
                "whoToContact": "who-to-contact", "howToCommunicate": "how-to-communicate"}
CONTACT_TYPES = ("Practitioner", "PractitionerRole", "Organization", "RelatedPerson")


@dataclass(frozen=True)
class Action:
    domain: str
    description: str
    owners: tuple[dict, ...]
    due: str | None
    where: str


@dataclass(frozen=True)
class Discussion:
    domain: str
    understanding: str | None
    best_case: str | None
    smallest_step: str | None
    options: str | None
    actions: tuple[Action, ...]
    where: str


@dataclass(frozen=True)
class Review:
    action_id: str
    outcome: str  # done | in-progress | dropped
    note: str | None
    where: str


@dataclass(frozen=True)
class Agreement:
    agreed_by: tuple[str, ...]
    when: str
    family_care_plan: bool | None


@dataclass(frozen=True)
class Member:
    member: dict
    role: str
    start: str
    on_behalf_of: dict | None
    where: str


@dataclass(frozen=True)
class CrisisItem:
    section: str                 # crisis-plan-section code
    text: str
    contact: dict | None         # who to contact, as a Reference
    where: str


@dataclass(frozen=True)
class Session:
    date: str
    response: dict | None
    response_where: str | None
    practitioner: dict | None
    discussions: tuple[Discussion, ...]
    reviews: tuple[Review, ...]
    agreement: Agreement | None
    key_worker: Member | None
    members: tuple[Member, ...]
    crisis: tuple[CrisisItem, ...] = ()

    @property
    def day(self) -> str:
        return self.date[:10]

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(a for d in self.discussions for a in d.actions)


class Problems:
    """Collects a session's problems; `check()` raises them together as one 422 OperationOutcome."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, code: str, message: str, expression: str | None) -> None:
        self.issues.append(Issue("error", code, message, expression))

    def check(self, what: str = "The DIALOG+ session cannot be recorded") -> None:
        if self.issues:
            first = self.issues[0]
            raise Unprocessable(f"{what}: {first.message}", outcome=operation_outcome(self.issues),
                                expression=first.expression)


@dataclass
class _Param:
    name: str
    where: str
    value: object = None
    value_type: str | None = None   # FHIR type of value[x]: "string", "Coding", "Reference" ...
    resource: dict | None = None
    parts: list["_Param"] | None = None

    def value_path(self) -> str:
        return f"{self.where}.value.ofType({self.value_type})" if self.value_type else self.where


def reference_type(reference: dict) -> str | None:
    """The resource type a Reference points at: from `reference` (relative or absolute) or `type`."""
    text = reference.get("reference")
    if type(text) is str:
        match = _REFERENCE.fullmatch(text)
        return match.group(1) if match else None
    kind = reference.get("type")
    return kind.rsplit("/", 1)[-1] if type(kind) is str else None


# -- reading Parameters --------------------------------------------------------------------------------
def parse_session(parameters: dict, *, patient_id: str, domains: Mapping[str, str], max_domains: int,
                  now: str) -> Session:
    """The session in `parameters`; Unprocessable (422) listing every problem. `domains` maps the
    dialog-domain codes to their displays; `now` is the default session date (a FHIR dateTime)."""
    if type(parameters) is not dict or parameters.get("resourceType") != "Parameters":
        raise InputError("$dialog-plus-session takes a Parameters resource")
    problems = Problems()
    top = _params(parameters.get("parameter"), "Parameters.parameter", problems)
    reader = _Reader(problems, patient_id)
    known = {"response", "date", "practitioner", "domain", "review", "agreement", "keyWorker", "careTeamMember",
             "crisis"}
    reader.unknown(top, known, "parameter")
    for name in ("response", "date", "practitioner", "agreement", "keyWorker", "crisis"):
        reader.at_most_one(top, name)

    response_param = next((p for p in top if p.name == "response"), None)
    response = reader.response(response_param)
    date_param = _first(top, "date")
    session_date = reader.date_time(date_param) or _authored(response) or now
    latest = (date.fromisoformat(now[:10]) + timedelta(days=1)).isoformat()  # a day's grace: time zones
    if session_date[:10] > latest:
        problems.add("business-rule", f"The session's date ({session_date[:10]}) is in the future",
                     date_param.value_path() if date_param else f"{response_param.where}.resource.authored")
    practitioner = reader.reference(_first(top, "practitioner"), ("Practitioner", "PractitionerRole"))
    chosen = [p for p in top if p.name == "domain"]
    discussions = [reader.discussion(p, domains, session_date[:10]) for p in chosen]
    seen: dict[str, str] = {}
    for param, discussion in zip(chosen, discussions):
        if discussion is None:
            continue
        if discussion.domain in seen:
            problems.add("business-rule", f"Domain {discussion.domain!r} is discussed twice in one session: "
                                          "give its steps and actions once", param.where)
        seen.setdefault(discussion.domain, param.where)
    if len(chosen) > max_domains:
        problems.add("business-rule", f"A DIALOG+ session discusses at most {max_domains} domains; "
                                      f"{len(chosen)} were given", chosen[max_domains].where)
    reviews = [reader.review(p) for p in top if p.name == "review"]
    reviewed: set[str] = set()
    for review in filter(None, reviews):
        if review.action_id in reviewed:
            problems.add("business-rule", f"Action {review.action_id!r} is reviewed twice in one session", review.where)
        reviewed.add(review.action_id)
    agreement = reader.agreement(_first(top, "agreement"), session_date, latest)
    key_worker = reader.member(_first(top, "keyWorker"), session_date[:10], role="key-worker")
    members = [reader.member(p, session_date[:10]) for p in top if p.name == "careTeamMember"]
    crisis = reader.crisis(_first(top, "crisis"))
    problems.check()
    return Session(session_date, response, response_param.where if response_param else None, practitioner,
                   tuple(discussions), tuple(reviews), agreement, key_worker, tuple(members), crisis)


def _first(params: list[_Param], name: str) -> _Param | None:
    return next((p for p in params if p.name == name), None)


def _authored(response: dict | None) -> str | None:
    authored = response.get("authored") if response else None
    return authored if type(authored) is str and _DATE_TIME.fullmatch(authored) else None


def _params(entries: object, where: str, problems: Problems) -> list[_Param]:
    if entries is None:
        return []
    if type(entries) is not list:
        problems.add("structure", "must be a list", where)
        return []
    out = []
    for i, entry in enumerate(entries):
        path = f"{where}[{i}]"
        if type(entry) is not dict or type(entry.get("name")) is not str:
            problems.add("required", "a parameter needs a name", f"{path}.name")
            continue
        param = _Param(entry["name"], path)
        values = [k for k in entry if k.startswith("value") and len(k) > 5]
        if values:
            param.value, param.value_type = entry[values[0]], _fhir_type(values[0][5:])
        if type(entry.get("resource")) is dict:
            param.resource = entry["resource"]
        if "part" in entry:
            param.parts = _params(entry["part"], f"{path}.part", problems)
        out.append(param)
    return out


def _fhir_type(suffix: str) -> str:
    return suffix[0].lower() + suffix[1:] if suffix in _PRIMITIVES else suffix


class _Reader:
    def __init__(self, problems: Problems, patient_id: str):
        self.problems = problems
        self.patient_id = patient_id

    # -- structure ---------------------------------------------------------------------------------
    def unknown(self, params: list[_Param], known: set[str], kind: str) -> None:
        for p in params:
            if p.name not in known:
                self.problems.add("not-supported", f"Unknown {kind} {p.name!r}: expected one of {', '.join(sorted(known))}",
                                  p.where)

    def at_most_one(self, params: list[_Param], name: str) -> None:
        found = [p for p in params if p.name == name]
        if len(found) > 1:
            self.problems.add("structure", f"{name!r} may be given once only", found[1].where)

    def parts(self, param: _Param, spec: dict[str, bool], single: set[str]) -> dict[str, list[_Param]] | None:
        """The parts of a parameter by name; `spec` says which are required."""
        if not param.parts:
            self.problems.add("required", f"{param.name!r} needs its parts ({', '.join(spec)})", f"{param.where}.part")
            return None
        self.unknown(param.parts, set(spec), f"part of {param.name!r}")
        by_name: dict[str, list[_Param]] = {}
        for p in param.parts:
            by_name.setdefault(p.name, []).append(p)
        for name, required in spec.items():
            if required and name not in by_name:
                self.problems.add("required", f"{param.name!r} has no {name!r}", f"{param.where}.part.where(name = '{name}')")
        for name in single:
            if len(by_name.get(name, ())) > 1:
                self.problems.add("structure", f"{name!r} may be given once only in {param.name!r}", by_name[name][1].where)
        return by_name

    # -- values ------------------------------------------------------------------------------------
    def text(self, param: _Param | None) -> str | None:
        if param is None:
            return None
        value = param.value
        if param.value_type not in ("string", "markdown") or type(value) is not str or not value.strip():
            self.problems.add("value", f"{param.name!r} must be a non-empty valueString", param.value_path())
            return None
        if len(value) > MAX_TEXT:
            self.problems.add("too-long", f"{param.name!r} is longer than {MAX_TEXT} characters", param.value_path())
            return None
        if _NOT_XML.search(value):
            self.problems.add("value", f"{param.name!r} holds control characters that cannot be shown", param.value_path())
            return None
        return value.strip()

    def code(self, param: _Param | None, allowed: tuple[str, ...]) -> str | None:
        if param is None:
            return None
        value = param.value.get("code") if param.value_type == "Coding" and type(param.value) is dict else param.value
        if param.value_type not in ("code", "Coding", "string") or type(value) is not str:
            self.problems.add("value", f"{param.name!r} must be a code", param.value_path())
            return None
        if value not in allowed:
            self.problems.add("code-invalid", f"{param.name!r} {value!r} is not one of {', '.join(allowed)}",
                              param.value_path())
            return None
        return value

    def day(self, param: _Param | None) -> str | None:
        if param is None:
            return None
        value = param.value
        if param.value_type not in ("date", "dateTime") or type(value) is not str or not _valid_date(value[:10]) \
                or not (_DATE.fullmatch(value) or _DATE_TIME.fullmatch(value)):
            self.problems.add("value", f"{param.name!r} must be a full date (YYYY-MM-DD)", param.value_path())
            return None
        return value[:10]

    def date_time(self, param: _Param | None) -> str | None:
        if param is None:
            return None
        value = param.value
        if param.value_type not in ("date", "dateTime") or type(value) is not str or not _DATE_TIME.fullmatch(value) \
                or not _valid_date(value[:10]):
            self.problems.add("value", f"{param.name!r} must be a FHIR dateTime with at least a full date",
                              param.value_path())
            return None
        return value

    def flag(self, param: _Param | None) -> bool | None:
        if param is None:
            return None
        if param.value_type != "boolean" or type(param.value) is not bool:
            self.problems.add("value", f"{param.name!r} must be a valueBoolean", param.value_path())
            return None
        return param.value

    def reference(self, param: _Param | None, types: tuple[str, ...]) -> dict | None:
        """A Reference to one of `types`; the person themselves only as this patient."""
        if param is None:
            return None
        value = param.value
        if param.value_type != "Reference" or type(value) is not dict or not (value.get("reference") or value.get("identifier")):
            self.problems.add("value", f"{param.name!r} must be a valueReference (reference, or type and identifier)",
                              param.value_path())
            return None
        kind = reference_type(value)
        if kind not in types:
            self.problems.add("invalid", f"{param.name!r} must refer to {' or '.join(types)}, not "
                                         f"{kind or 'an unknown type'}", param.value_path())
            return None
        if kind == "Patient" and not str(value.get("reference", "")).endswith(f"Patient/{self.patient_id}"):
            self.problems.add("invalid", f"{param.name!r}: the only person who can own an action is "
                                         f"Patient/{self.patient_id}, whose plan this is", param.value_path())
            return None
        return {k: v for k, v in value.items() if k in ("reference", "type", "identifier", "display")}

    # -- the session's parameters --------------------------------------------------------------------
    def response(self, param: _Param | None) -> dict | None:
        if param is None:
            return None
        if param.resource is None or param.resource.get("resourceType") != "QuestionnaireResponse":
            self.problems.add("structure", "'response' must carry a QuestionnaireResponse resource",
                              f"{param.where}.resource")
            return None
        return param.resource

    def discussion(self, param: _Param, domains: Mapping[str, str], day: str) -> Discussion | None:
        parts = self.parts(param, {"code": True, "understanding": False, "bestCase": False, "smallestStep": False,
                                   "options": False, "action": False},
                           {"code", "understanding", "bestCase", "smallestStep", "options"})
        if parts is None:
            return None
        domain = self.domain_code(_one(parts, "code"), domains)
        actions = [self.action(p, domain, day) for p in parts.get("action", ())]
        if domain is None:
            return None
        return Discussion(domain, self.text(_one(parts, "understanding")), self.text(_one(parts, "bestCase")),
                          self.text(_one(parts, "smallestStep")), self.text(_one(parts, "options")),
                          tuple(a for a in actions if a is not None), param.where)

    def domain_code(self, param: _Param | None, domains: Mapping[str, str]) -> str | None:
        if param is None:
            return None
        value = param.value
        if param.value_type == "Coding" and type(value) is dict:
            if value.get("system") not in (None, DOMAIN_SYSTEM):
                self.problems.add("code-invalid", f"A domain is coded in {DOMAIN_SYSTEM}, not {value.get('system')}",
                                  param.value_path())
                return None
            value = value.get("code")
        elif param.value_type not in ("code", "string"):
            self.problems.add("value", "'code' must be a valueCode or valueCoding", param.value_path())
            return None
        if value not in domains:
            self.problems.add("code-invalid", f"Unknown DIALOG domain {value!r}: one of {', '.join(domains)}",
                              param.value_path())
            return None
        return value

    def action(self, param: _Param, domain: str | None, day: str) -> Action | None:
        parts = self.parts(param, {"description": True, "owner": True, "due": False}, {"description", "due"})
        if parts is None:
            return None
        description = self.text(_one(parts, "description"))
        owners = [self.reference(p, OWNER_TYPES) for p in parts.get("owner", ())]
        due_param = _one(parts, "due")
        due = self.day(due_param)
        if due is not None and due < day:
            self.problems.add("business-rule", f"The action is due on {due}, before the session ({day})",
                              due_param.value_path())
            due = None
        if domain is None or description is None or not owners or None in owners:
            return None
        return Action(domain, description, tuple(owners), due, param.where)

    def review(self, param: _Param) -> Review | None:
        parts = self.parts(param, {"action": True, "status": True, "note": False}, {"action", "status", "note"})
        if parts is None:
            return None
        action = _one(parts, "action")
        action_id = action.value if action is not None and action.value_type in ("id", "string") else None
        if action is not None and (type(action_id) is not str or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", action_id)):
            self.problems.add("value", "'action' must be the action's id (valueId)", action.value_path())
            action_id = None
        outcome = self.code(_one(parts, "status"), REVIEW_OUTCOMES)
        note = self.text(_one(parts, "note"))
        if action_id is None or outcome is None:
            return None
        return Review(action_id, outcome, note, param.where)

    def agreement(self, param: _Param | None, session_date: str, latest: str) -> Agreement | None:
        if param is None:
            return None
        parts = self.parts(param, {"agreedBy": True, "date": False, "familyCarePlan": False}, {"date", "familyCarePlan"})
        if parts is None:
            return None
        agreed_by = [self.code(p, tuple(AGREED_BY)) for p in parts.get("agreedBy", ())]
        when_param = _one(parts, "date")
        when = self.date_time(when_param)
        if when is not None and when[:10] < session_date[:10]:
            self.problems.add("business-rule", f"The plan cannot be agreed ({when[:10]}) before the session "
                                               f"({session_date[:10]})", when_param.value_path())
            return None
        if when is not None and when[:10] > latest:
            self.problems.add("business-rule", f"The plan cannot be agreed in the future ({when[:10]})",
                              when_param.value_path())
            return None
        family = self.flag(_one(parts, "familyCarePlan"))
        if not agreed_by or None in agreed_by:
            return None
        return Agreement(tuple(dict.fromkeys(agreed_by)), when or session_date, family)

    def crisis(self, param: _Param | None) -> tuple[CrisisItem, ...]:
        return _crisis(self, param)

    def member(self, param: _Param | None, day: str, role: str | None = None) -> Member | None:
        if param is None:
            return None
        spec = {"member": True, "start": False, "onBehalfOf": False}
        if role is None:
            spec["role"] = True
        parts = self.parts(param, spec, set(spec))
        if parts is None:
            return None
        role = role or self.code(_one(parts, "role"), _JOINING_ROLES)
        types = ("Practitioner",) if role == "key-worker" else \
            ("RelatedPerson",) if role == "carer" else ("Practitioner", "PractitionerRole", "Organization")
        member = self.reference(_one(parts, "member"), types)
        start = self.day(_one(parts, "start")) or day
        on_behalf_of = self.reference(_one(parts, "onBehalfOf"), ("Organization",))
        if role is None or member is None:
            return None
        return Member(member, role, start, on_behalf_of, param.where)


def _crisis(reader: "_Reader", param: _Param | None) -> tuple[CrisisItem, ...]:
    if param is None:
        return ()
    parts = reader.parts(param, {name: False for name in CRISIS_PARTS}, set())
    items = []
    for name, section in CRISIS_PARTS.items():
        for part in (parts or {}).get(name, ()):
            if name == "whoToContact" and part.value_type == "Reference":
                contact = reader.reference(part, CONTACT_TYPES)
                if contact is not None:
                    items.append(CrisisItem(section, contact.get("display") or "", contact, part.where))
                continue
            text = reader.text(part)
            if text is not None:
                items.append(CrisisItem(section, text, None, part.where))
    if parts is not None and not items and not reader.problems.issues:
        reader.problems.add("required", "'crisis' needs at least one item", f"{param.where}.part")
    return tuple(items)


def _one(parts: dict[str, list[_Param]], name: str) -> _Param | None:
    found = parts.get(name)
    return found[0] if found else None


def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
