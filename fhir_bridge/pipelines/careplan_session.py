"""`Patient/[id]/$dialog-plus-session`: one DIALOG+ session into the person's one shared plan.

Read and check everything first (422 naming each bad element, 404 for an unknown person). Then,
from a snapshot (a read transaction, no writer lock): read the person's open plan, team and goals,
merge the session (fhir_bridge.careplan.merge), regenerate the narratives and validate what would
be stored. Then one unit of work: lock the person, check that their open plans are still the ones
read, and write the DIALOG response, goals, team and plan with one Provenance naming the partner
and user, each only while still at the version read (or still absent). If another writer got in
between (another partner's session, in this process or another, or an If-Match PUT), nothing is
written and the session is merged again, this time inside the unit of work with the person locked,
so that many partners at once for one person queue rather than keep retrying. The merge, most of
a session's work, so normally runs outside the lock: server processes (`serve --workers`) prepare
sessions side by side and queue only to write.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from fhir_bridge.careplan import ActionConflict, Current, SessionContext, apply_session, parse_session
from fhir_bridge.careplan.codes import CARE_PLANNING, ODS, PURPOSE_EXT, PURPOSE_SYSTEM, RECORDING_ORG_EXT
from fhir_bridge.careplan.crisis import apply_crisis
from fhir_bridge.careplan.merge import session_ids, team_id_for
from fhir_bridge.careplan.narrative import goal_div, team_div, with_text
from fhir_bridge.careplan.session import Problems, Session, reference_type
from fhir_bridge.errors import Conflict, Gone, NotFound, PreconditionFailed, PreconditionRequired, Unprocessable
from fhir_bridge.fhir.codec import json_copy
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.pipelines.careplan_views import local_id, open_crisis_plans, open_main_plans, with_narrative
from fhir_bridge.pipelines.patient_links import repointed, survivor
from fhir_bridge.pipelines.resources import SYSTEM_CALLER, Caller, ResourceService
from fhir_bridge.store.types import Stored
from fhir_bridge.store.repository import ABSENT, read_if_live, same_content

__all__ = ["CarePlanSessions", "SessionResult"]

ATTEMPTS = 5  # merges of one session when other writers keep getting in first
NAMED_TYPES = ("Practitioner", "PractitionerRole", "Organization", "RelatedPerson")


@dataclass(frozen=True)
class SessionResult:
    plan: Stored
    created: bool
    changed: bool = True   # False: the session was recorded already (a re-sent or re-imported one)
    added: bool = True     # it created a resource (its ratings, a goal, the plan ...), not only changed some


class _Stale(Exception):
    """A resource changed between this session's read and its write: merge again."""


@dataclass(frozen=True)
class _Prepared:
    writes: list[tuple[dict, int | None]]    # (resource, version it was read at; ABSENT: new; None: any)
    plans: tuple[tuple[str, int], ...]       # the person's open DIALOG+ plans as read: (id, version)


class CarePlanSessions:
    def __init__(self, repository, validator, resources: ResourceService, *,
                 domains: Sequence[tuple[str, str]], dialog_url: str, max_domains: int,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc), access=None,
                 base_url: str | None = None):
        self.repository = repository
        self.base_url = base_url                # this server's: its absolute references are local ones
        self.access = access                    # CareAccess: only a partner that cares for the person
        self.validator = validator
        self.resources = resources
        self.domains = dict(domains)            # dialog-domain code -> display, in DIALOG order
        self.dialog_url = dialog_url
        self.max_domains = max_domains
        self.now = now

    def record(self, patient_id: str, parameters: dict, caller: Caller, *,
               based_on_version: int | None = None, response_id: str | None = None) -> SessionResult:
        """`based_on_version`: the plan version the partner read (If-Match); reviews need it.
        `response_id`: an importer's own (deterministic) id for the ratings, instead of the session's."""
        with self.repository.snapshot() as view:  # one read transaction for all the session reads first
            patient = survivor(view, patient_id)  # 404, 410; a person merged away: the survivor's plan
            if patient["id"] != patient_id:  # and the survivor wherever the body names the old record
                parameters = repointed(parameters, patient_id, patient["id"], self.base_url)
            patient_id = patient["id"]
            session = self._named(view, parse_session(parameters, patient_id=patient_id, domains=self.domains,
                                                      max_domains=self.max_domains, now=_instant(self.now())))
            key, first_plan_id, session_response_id = session_ids(patient_id, caller.partner, session.date)
            response_id = response_id or session_response_id
            response = self._response(session, patient_id, response_id, caller)
            partner = _partner(caller)
            context = SessionContext(patient_id=patient_id, person_name=_name(patient), session_key=key,
                                     partner=partner, author=_note_author(session, partner, caller),
                                     domains=self.domains, response_id=response_id if response else None,
                                     plan_id=first_plan_id, team_id=team_id_for(first_plan_id))  # if the first plan
            # Optimistic: merged from this snapshot, without the writer lock.
            prepared = self._prepare(view, session, response, caller, based_on_version, context)
        for _ in range(ATTEMPTS):
            try:
                with self.repository.unit_of_work() as uow:
                    if prepared is None:  # someone wrote this person's plan meanwhile (many partners at
                        # once?): merge under the lock, where only an If-Match PUT can still get in between
                        uow.lock("Patient", patient_id)
                        prepared = self._prepare(uow, session, response, caller, based_on_version, context)
                    return self._write(uow, prepared, caller, patient_id)
            except _Stale:
                prepared = None
        raise Conflict(f"The plan of Patient/{patient_id} kept changing while this session was merged "
                       f"({ATTEMPTS} attempts): send it again")

    # -- prepared from a snapshot, written in a unit of work -------------------------------------------
    def _prepare(self, view, session: Session, response: dict | None, caller: Caller, based_on: int | None,
                 context: SessionContext) -> "_Prepared":
        """Everything the session writes, with the version each was read at (ABSENT: not there yet)."""
        if self.access is not None:
            self.access.require_person(caller, context.patient_id, view)
        plans = self._open_plans(view, context.patient_id)
        stored = plans[0] if plans else None
        current = Current(plan=stored.resource if stored else None, plan_version=stored.version_id if stored else None)
        if session.reviews and based_on is None:
            raise PreconditionRequired("Reviews change actions other partners share: send If-Match with the version "
                                       "of the plan you reviewed (its ETag)",
                                       expression="Parameters.parameter.where(name = 'review')")
        if based_on is not None:
            current.base_plan = self._base(stored, based_on, context.patient_id)
        if stored is not None:  # the plan's own ids; its team where it says (a new one if not on this server)
            team_ref = (stored.resource.get("careTeam") or [None])[0]
            plan_id = stored.resource_id
            context = replace(context, plan_id=plan_id,
                              team_id=local_id(team_ref, "CareTeam") or team_id_for(plan_id))
        goal_keys = [("Goal", local_id(ref, "Goal")) for ref in (current.plan or {}).get("goal", ())]
        live = view.read_live([("CareTeam", context.team_id), *[k for k in goal_keys if k[1]]])  # one statement
        team_stored = live.get(("CareTeam", context.team_id))
        current.team = team_stored.resource if team_stored else None
        goals_stored = [live[key] for key in goal_keys if key in live]
        current.goals = {_domain_of(g.resource): g.resource for g in goals_stored}

        merged = apply_session(session, current, context)
        if local_id((merged.plan.get("careTeam") or [None])[0], "CareTeam") != context.team_id:
            merged.plan["careTeam"] = [{"reference": f"CareTeam/{context.team_id}"}]
        goals = [with_text(g, goal_div(g, self.domains.get(_domain_of(g), "DIALOG+ goal"))) for g in merged.goals]
        team = with_text(merged.team, team_div(merged.team))
        every_goal = {**{g.resource_id: g.resource for g in goals_stored}, **{g["id"]: g for g in goals}}
        plan = with_narrative(view, merged.plan, tuple(self.domains), team, list(every_goal.values()))
        crisis = self._crisis(view, session, plan, team, context)
        # What the session leaves as stored is written as nothing (a version unchanged): no need to
        # validate it again. The rest is validated before anything is written.
        stored_as = {**{g.resource_id: g.resource for g in goals_stored}, context.team_id: current.team}
        self._validate([r for r in [*goals, team] if stored_as.get(r["id"]) is None
                        or not same_content(r, stored_as[r["id"]])] + [plan, *([crisis[0]] if crisis else [])])
        goal_versions = {g.resource_id: g.version_id for g in goals_stored}
        # The goals the session leaves alone go too, unchanged: written only if still at the version the
        # narrative was made from (an unchanged resource costs a comparison, no version).
        touched = {g["id"] for g in goals}
        untouched = [(g.resource, g.version_id) for g in goals_stored if g.resource_id not in touched]
        writes = ([(response, None)] if response else []) + untouched + \
            [(g, goal_versions.get(g["id"], ABSENT)) for g in goals] + \
            [(team, team_stored.version_id if team_stored else ABSENT)] + ([crisis] if crisis else []) + \
            [(plan, stored.version_id if stored else ABSENT)]
        return _Prepared(writes, tuple((p.resource_id, p.version_id) for p in plans))

    def _write(self, uow, prepared: "_Prepared", caller: Caller, patient_id: str) -> SessionResult:
        """The prepared writes, if the person's open plans and every resource read are as they were."""
        if self.access is not None:  # in the session's transaction: a relationship just ended counts
            self.access.require_person(caller, patient_id, uow)
        uow.lock("Patient", patient_id)
        now = tuple((p.resource_id, p.version_id) for p in self._open_plans(uow, patient_id))
        if now != prepared.plans:  # another session (maybe another process) got in between: merge again
            raise _Stale()
        try:
            results = self.resources.put_checked(prepared.writes, caller, uow=uow)
        except PreconditionFailed as exc:  # the repository's If-Match check: someone wrote in between
            raise _Stale() from exc
        plan_created = prepared.writes[-1][1] == ABSENT
        return SessionResult(results[-1].stored, created=plan_created,
                             changed=not all(r.unchanged for r in results),
                             added=any(r.created and not r.unchanged for r in results))

    def _crisis(self, uow, session: Session, plan: dict, team: dict,
                context: SessionContext) -> tuple[dict, int | None] | None:
        """The crisis plan with the session's items, and the version it was read at (ABSENT: new)."""
        if not session.crisis:
            return None
        current = next(iter(open_crisis_plans(uow, plan["id"])), None)
        crisis = apply_crisis(session, current.resource if current else None, plan, context)
        crisis = with_narrative(uow, crisis, tuple(self.domains), team, [])
        return crisis, current.version_id if current else ABSENT

    def _open_plans(self, reader, patient_id: str) -> list[Stored]:
        plans = open_main_plans(reader, patient_id)
        if len(plans) > 1:
            listed = ", ".join(f"CarePlan/{p.resource_id}" for p in plans)
            raise Conflict(f"Patient/{patient_id} has {len(plans)} open DIALOG+ care plans ({listed}): a person has "
                           "one. Close all but one (status completed or revoked, with If-Match), then record the session")
        return plans

    def _base(self, stored: Stored | None, version: int, patient_id: str) -> dict | None:
        """The plan as the partner read it (If-Match), when that is not the current version."""
        if stored is None:
            raise PreconditionFailed(f"If-Match names version {version}, but Patient/{patient_id} has no open plan")
        if version == stored.version_id:
            return None
        try:
            if version > stored.version_id:
                raise NotFound("a future version")
            return self.repository.vread("CarePlan", stored.resource_id, version).resource
        except (NotFound, Gone) as exc:
            raise ActionConflict(f"CarePlan/{stored.resource_id} has no version {version} to review from; it is at "
                                 f"version {stored.version_id}", current_version=stored.version_id) from exc

    def _validate(self, resources: list[dict]) -> None:
        for resource in resources:
            result = self.validator.validate(resource)
            if not result.valid:
                first = result.errors[0]
                raise Unprocessable(f"The session would make an invalid {resource['resourceType']}: {first.message}",
                                    outcome=result.outcome(), expression=first.expression)

    # -- before the unit of work -------------------------------------------------------------------------
    def _response(self, session: Session, patient_id: str, response_id: str, caller: Caller) -> dict | None:
        """The session's DIALOG ratings as stored: for this person, purpose care planning, the
        partner as recording organisation, validated (errors point into the Parameters)."""
        if session.response is None:
            return None
        where = f"{session.response_where}.resource"
        response = json_copy(session.response)
        problems = Problems()
        if str(response.get("questionnaire", "")).split("|")[0] != self.dialog_url:
            problems.add("invalid", f"The ratings must answer the DIALOG Questionnaire {self.dialog_url}",
                         f"{where}.questionnaire")
        subject = local_id(response.get("subject"), "Patient")
        if response.get("subject") is not None and subject != patient_id:
            problems.add("invalid", f"The ratings are for {response['subject'].get('reference')}, not "
                                    f"Patient/{patient_id}", f"{where}.subject")
        extensions = [e for e in response.get("extension", ()) if type(e) is dict]
        purpose = next((e for e in extensions if e.get("url") == PURPOSE_EXT), None)
        code = ((purpose or {}).get("valueCoding") or {}).get("code")
        if purpose is not None and code != CARE_PLANNING:
            problems.add("business-rule", f"A DIALOG+ session's ratings are recorded for care planning, not {code!r}: "
                                          "record a PROM collection separately (POST QuestionnaireResponse)",
                         f"{where}.extension('{PURPOSE_EXT}')")
        problems.check()
        if purpose is None:
            extensions.append({"url": PURPOSE_EXT, "valueCoding": {"system": PURPOSE_SYSTEM, "code": CARE_PLANNING,
                                                                   "display": "DIALOG+ care-planning session"}})
        partner = _partner(caller)
        if partner and not any(e.get("url") == RECORDING_ORG_EXT for e in extensions):
            extensions.append({"url": RECORDING_ORG_EXT, "valueReference": partner})
        response.update(id=response_id, extension=extensions, subject={"reference": f"Patient/{patient_id}"})
        result = self.validator.validate(response)
        if not result.valid:
            issues = [Issue(i.severity, i.code, i.message, _inside(i.expression, where)) for i in result.issues]
            raise Unprocessable(f"The session's DIALOG ratings are not valid: {result.errors[0].message}",
                                outcome=operation_outcome(issues), expression=_inside(result.errors[0].expression, where))
        return response

    def _named(self, reader, session: Session) -> Session:
        """Every person and organisation the plan names has a display (a plan a person reads says who,
        not `Practitioner/123`): the reference's own, else the stored resource's name, else 422."""
        problems = Problems()

        def named(reference: dict, where: str) -> dict:
            if reference.get("display") or reference_type(reference) == "Patient":
                return reference
            kind = reference_type(reference)
            found = read_if_live(reader, kind, local_id(reference, kind)) if kind in NAMED_TYPES else None
            name = _name(found.resource) if found else None
            if name is None:
                problems.add("not-found", f"{reference.get('reference') or kind} is not known here and has no display: "
                                          "give its name in the reference's display", where)
                return reference
            return {**reference, "display": name}

        def member(m):
            return m and replace(m, member=named(m.member, f"{m.where}.part.where(name = 'member')"))

        discussions = tuple(replace(d, actions=tuple(
            replace(a, owners=tuple(named(o, f"{a.where}.part.where(name = 'owner')") for o in a.owners))
            for a in d.actions)) for d in session.discussions)
        practitioner = session.practitioner and named(session.practitioner,
                                                      "Parameters.parameter.where(name = 'practitioner')")

        def contact(item):
            if item.contact is None:
                return item
            reference = named(item.contact, item.where)
            return replace(item, contact=reference, text=item.text or reference.get("display") or "")

        named_session = replace(session, discussions=discussions, key_worker=member(session.key_worker),
                                members=tuple(member(m) for m in session.members), practitioner=practitioner,
                                crisis=tuple(contact(i) for i in session.crisis))
        problems.check()
        return named_session


# -- helpers -------------------------------------------------------------------------------------------------
def _domain_of(goal: dict) -> str | None:
    for category in goal.get("category", ()):
        for coding in category.get("coding", ()):
            return coding.get("code")
    return None


def _note_author(session: Session, partner: dict | None, caller: Caller) -> dict:
    """Annotation.author[x] of the session's notes: the practitioner (Annotation takes no
    PractitionerRole), else the partner organisation, else the system's name."""
    if session.practitioner and reference_type(session.practitioner) == "Practitioner":
        return {"authorReference": session.practitioner}
    return {"authorReference": partner} if partner else {"authorString": caller.partner_name or caller.partner}


def _partner(caller: Caller) -> dict | None:
    if caller.partner == SYSTEM_CALLER.partner:
        return None
    return {"type": "Organization", "identifier": {"system": ODS, "value": caller.partner},
            "display": caller.partner_name or caller.partner}


def _name(resource: dict | None) -> str | None:
    """A display name: HumanName text or given + family, an Organization's name, a role's practitioner."""
    if not resource:
        return None
    if type(resource.get("name")) is str:
        return resource["name"]
    for name in resource.get("name") or ():
        if type(name) is dict:
            text = name.get("text") or " ".join([*name.get("given", ()), name.get("family", "")]).strip()
            if text:
                return text
    practitioner = resource.get("practitioner")
    return practitioner.get("display") if type(practitioner) is dict else None


def _inside(expression: str | None, where: str) -> str | None:
    """A QuestionnaireResponse issue's path as a path into the Parameters that carried it."""
    if expression and expression.startswith("QuestionnaireResponse"):
        return where + expression[len("QuestionnaireResponse"):]
    return expression


def _instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
