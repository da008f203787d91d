"""One person's rows for the month: the period rules and how the tables hang together.

A person is in the submission when at least one of their referrals to the provider is open in the
month (MHSDS counts people in contact with services through their referrals). Their contacts in
the month go under the referral they name, or else the one open on the contact's day; their
DIALOGs the same way, under the care contact they were done in when that contact is in the file
(MHS607), else under the referral (MHS606). Key workers whose assignment overlaps the month, and
care plans created or updated in it, complete the person. A record is submitted whole or not at
all: whatever cannot be placed is left out, with the reason, for the quality report.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from fhir_bridge.measures import DialogDefinition
from fhir_bridge.submission.dialogs import DialogPolicy, StoredDialog, scored_items, select_dialogs
from fhir_bridge.submission.mapping import SubmissionMapping, TableMapping
from fhir_bridge.submission.paths import first
from fhir_bridge.submission.rows import PERIOD, LeftOut, Row, RowMaker
from fhir_bridge.submission.values import Period

__all__ = ["PersonRecords", "PersonRows", "Assembler", "T1_TIMEPOINTS", "T2_TIMEPOINTS"]

T1_TIMEPOINTS = ("assessment",)            # the start of an episode (seed 000: T1)
T2_TIMEPOINTS = ("review", "discharge")    # a later DIALOG, which can show change (T2)
MAIN_PLAN = "10"                           # MHSDS CarePlanTypeMH: mental health care plan
NO_REFERRAL = "no referral of this submission that it names or that is open on its day"


@dataclass
class PersonRecords:
    """What the store holds about one person that may belong to the month, each as (id, resource)."""

    patient_id: str
    patient: dict | None = None
    referrals: list[tuple[str, dict]] = field(default_factory=list)
    contacts: list[tuple[str, dict]] = field(default_factory=list)
    care_teams: list[tuple[str, dict]] = field(default_factory=list)
    care_plans: list[tuple[str, dict]] = field(default_factory=list)
    dialogs: list[StoredDialog] = field(default_factory=list)   # oldest first


@dataclass
class PersonRows:
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))
    left_out: list[LeftOut] = field(default_factory=list)
    dialogs_submitted: int = 0
    items_not_answered: int = 0            # items answered 8 left out of the DIALOGs submitted
    with_t1: bool = False
    with_t2: bool = False
    with_agreed_plan: bool = False
    with_key_worker: bool = False

    @property
    def submitted(self) -> bool:
        return bool(self.rows)


class Assembler:
    def __init__(self, mapping: SubmissionMapping, maker: RowMaker, definition: DialogDefinition, period: Period,
                 provider: str, policy: DialogPolicy):
        self.mapping, self.maker, self.definition = mapping, maker, definition
        self.period, self.provider, self.policy = period, provider, policy
        self.person_table = mapping.tables_of("person")[0]
        self.referral_table = _top(mapping, "referral")
        self.contact_table = _top(mapping, "contact")
        self.plan_table = _top(mapping, "care-plan")
        self.team_tables = mapping.tables_of("care-team")
        self.dialog_tables = {t.attach: t for t in mapping.tables_of("dialog")}
        sources = mapping.sources
        self.contact_referral = _path(maker, sources["contact"].referral)
        self.dialog_referral = _path(maker, sources["dialog"].referral)
        self.dialog_contact = _path(maker, sources["dialog"].contact)

    def person(self, records: PersonRecords) -> PersonRows:
        out = PersonRows()
        if not records.referrals:
            self._all_left_out(records, out, f"no referral to {self.provider} open in {self.period.month}")
            return out
        if records.patient is None:
            self._all_left_out(records, out, "the Patient it is about is not stored (deleted, or never stored)")
            return out
        person_rows = self._record(self.person_table, records.patient, {}, f"Patient/{records.patient_id}",
                                   records.patient_id, out)
        if person_rows is None:
            self._all_left_out(records, out, "the person could not be submitted (see their MHS001 entry)")
            return out
        context = {self.person_table.name: person_rows[self.person_table.name]}
        referrals = self._referrals(records, context, out)
        if not referrals:
            out.rows.clear()
            self._all_left_out(records, out, f"no referral to {self.provider} open in {self.period.month}",
                               referrals=False)
            return out
        contacts = self._contacts(records, context, referrals, out)
        self._key_workers(records, context, out)
        self._care_plans(records, context, out)
        self._dialogs(records, context, referrals, contacts, out)
        return out

    # -- one kind of record at a time ------------------------------------------------------------
    def _referrals(self, records: PersonRecords, context: dict, out: PersonRows) -> dict[str, tuple]:
        """referral id -> (its row, open from, open until) for the referrals submitted."""
        found, table = {}, self.referral_table
        for resource_id, resource in records.referrals:
            rows = self._record(table, resource, context, f"ServiceRequest/{resource_id}", records.patient_id, out)
            if rows is not None:
                row = rows[table.name]
                found[resource_id] = (row, self.maker.value(table.name, table.opens, row),
                                      self.maker.value(table.name, table.closes, row) or None)
        return found

    def _contacts(self, records: PersonRecords, context: dict, referrals: dict, out: PersonRows) -> dict[str, dict]:
        """contact id -> the rows a DIALOG done in it hangs under."""
        found, table = {}, self.contact_table
        for resource_id, resource in records.contacts:
            ref = f"Encounter/{resource_id}"
            if not self._screen(table.name, resource, resource, ref, records.patient_id, out):
                continue
            day = self.maker.read(table.name, table.dated_by, resource, resource)
            referral = self._referral_for(referrals, _local_id(first(self.contact_referral, resource))
                                          if self.contact_referral else None, day)
            if referral is None:
                out.left_out.append(LeftOut(table.name, ref, records.patient_id, NO_REFERRAL, day or ""))
                continue
            rows = self._record(table, resource, {**context, self.referral_table.name: referrals[referral][0]}, ref,
                                records.patient_id, out, screened=True)
            if rows is not None:
                found[resource_id] = rows
        return found

    def _key_workers(self, records: PersonRecords, context: dict, out: PersonRows) -> None:
        for table in self.team_tables:
            seen: set[tuple[str, ...]] = set()
            for resource_id, resource in records.care_teams:
                for number, element in enumerate(self.maker.each(table.name, resource)):
                    ref = f"CareTeam/{resource_id}" + (f" key worker #{number + 1}" if table.each else "")
                    if not self._screen(table.name, element, resource, ref, records.patient_id, out):
                        continue
                    row = self._build(table.name, element, resource, context, ref, records.patient_id, out)
                    if row is None or (table.distinct and row.values in seen):
                        continue
                    seen.add(row.values)
                    out.rows[table.name].append(row)
                    out.with_key_worker = True

    def _care_plans(self, records: PersonRecords, context: dict, out: PersonRows) -> None:
        table = self.plan_table
        agreements = [t.name for t in self.mapping.tables if t.parent == table.name and t.each]
        for resource_id, resource in records.care_plans:
            before = {name: len(out.rows.get(name, ())) for name in agreements}
            rows = self._record(table, resource, context, f"CarePlan/{resource_id}", records.patient_id, out)
            if rows is None:
                continue
            agreed = any(len(out.rows.get(name, ())) > before[name] for name in agreements)
            if agreed and self.maker.value(table.name, "CarePlanTypeMH", rows[table.name]) == MAIN_PLAN:
                out.with_agreed_plan = True

    def _dialogs(self, records: PersonRecords, context: dict, referrals: dict, contacts: dict, out: PersonRows) -> None:
        chosen, refused = select_dialogs(records.dialogs, self.period, self.provider, self.policy)
        for dialog, reason, detail in refused:
            out.left_out.append(LeftOut("DIALOG", dialog.ref, records.patient_id, reason, detail))
        for dialog in chosen:
            contact = _local_id(first(self.dialog_contact, dialog.body)) if self.dialog_contact else None
            if contact in contacts and "contact" in self.dialog_tables:
                table, rows = self.dialog_tables["contact"], contacts[contact]
            else:
                named = _local_id(first(self.dialog_referral, dialog.body)) if self.dialog_referral else None
                table = self.dialog_tables["referral"]
                referral = self._referral_for(referrals, named, dialog.day)
                if referral is None:
                    out.left_out.append(LeftOut(table.name, dialog.ref, records.patient_id, NO_REFERRAL, dialog.day or ""))
                    continue
                rows = {**context, self.referral_table.name: referrals[referral][0]}
            record = {**dialog.body, "scoredItems": scored_items(dialog, self.definition, self.policy.not_answered_code)}
            built = []
            for item in self.maker.each(table.name, record):
                row = self._build(table.name, item, record, rows, f"{dialog.ref} item {item.get('domain')}",
                                  records.patient_id, out)
                if row is not None:
                    built.append(row)
            if not built:
                out.left_out.append(LeftOut(table.name, dialog.ref, records.patient_id, "no item rated 1-7 to submit"))
                continue
            out.rows[table.name].extend(built)
            out.dialogs_submitted += 1
            if self.policy.not_answered_code is None:
                out.items_not_answered += len(dialog.not_applicable)
            out.with_t1 |= dialog.timepoint in T1_TIMEPOINTS
            out.with_t2 |= dialog.timepoint in T2_TIMEPOINTS

    # -- helpers --------------------------------------------------------------------------------
    def _record(self, top: TableMapping, resource: dict, context: dict, ref: str, person: str, out: PersonRows, *,
                screened: bool = False) -> dict | None:
        """One record's rows: its row of `top` and of the tables under it (MHS101 with MHS102), all
        or none: a table under it without `each` is one row per record, so when that row cannot
        be made the record is left out whole. `each` tables (agreements) are rows of their own.
        Returns the rows by table (for what hangs under them), or None."""
        if not screened and not self._screen(top.name, resource, resource, ref, person, out):
            return None
        row = self._build(top.name, resource, resource, context, ref, person, out)
        if row is None:
            return None
        rows, written = {**context, top.name: row}, [(top.name, row)]
        for table in (t for t in self.mapping.tables if t.parent == top.name):
            for number, element in enumerate(self.maker.each(table.name, resource)):
                where = ref + (f" ({table.name} #{number + 1})" if table.each else "")
                if not self._screen(table.name, element, resource, where, person, out):
                    if table.each is None:
                        return None
                    continue
                child = self._build(table.name, element, resource, rows, where, person, out)
                if child is None and table.each is None:
                    return None
                if child is not None:
                    written.append((table.name, child))
                    if table.each is None:
                        rows[table.name] = child
        for name, built in written:
            out.rows[name].append(built)
        return rows

    def _screen(self, table: str, element, root: dict, ref: str, person: str, out: PersonRows) -> bool:
        verdict = self.maker.screen(table, element, root)
        if verdict is not None and verdict != PERIOD:
            out.left_out.append(LeftOut(table, ref, person, verdict))
        return verdict is None

    def _build(self, table: str, element, root: dict, context: dict, ref: str, person: str, out: PersonRows) -> Row | None:
        row = self.maker.build(table, element, root, context)
        if isinstance(row, str):
            out.left_out.append(LeftOut(table, ref, person, row))
            return None
        return row

    @staticmethod
    def _referral_for(referrals: dict, named: str | None, day: str | None) -> str | None:
        """The referral a contact or DIALOG goes under: the one it names if submitted, else the one
        open on its day (the latest received when several are)."""
        if named in referrals:
            return named
        if day is None:
            return None
        open_then = [(start, rid) for rid, (_, start, end) in referrals.items()
                     if start <= day and (end is None or end >= day)]
        return max(open_then)[1] if open_then else None

    def _all_left_out(self, records: PersonRecords, out: PersonRows, reason: str, *, referrals: bool = True) -> None:
        """Every record of the month about a person who is not submitted, with `reason`."""
        person = records.patient_id
        kinds = [(self.referral_table, "ServiceRequest", records.referrals)] if referrals else []
        kinds += [(self.contact_table, "Encounter", records.contacts), (self.plan_table, "CarePlan", records.care_plans)]
        for table, kind, items in kinds:
            for resource_id, resource in items:
                if self.maker.screen(table.name, resource, resource) != PERIOD:
                    out.left_out.append(LeftOut(table.name, f"{kind}/{resource_id}", person, reason))
        for table in self.team_tables:
            for resource_id, resource in records.care_teams:
                if any(self.maker.screen(table.name, e, resource) != PERIOD for e in self.maker.each(table.name, resource)):
                    out.left_out.append(LeftOut(table.name, f"CareTeam/{resource_id}", person, reason))
        chosen, refused = select_dialogs(records.dialogs, self.period, self.provider, self.policy)
        out.left_out += [LeftOut("DIALOG", d.ref, person, reason) for d in chosen]
        out.left_out += [LeftOut("DIALOG", d.ref, person, why, detail) for d, why, detail in refused]


def _top(mapping: SubmissionMapping, source: str) -> TableMapping:
    return next(t for t in mapping.tables_of(source) if t.parent is None)


def _path(maker: RowMaker, text: str | None):
    return maker.path(text) if text else None


def _local_id(reference) -> str | None:
    if not isinstance(reference, str) or "/" not in reference:
        return None
    return reference.split("/_history/")[0].rstrip("/").rsplit("/", 1)[-1]
