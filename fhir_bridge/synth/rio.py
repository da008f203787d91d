"""The RiO-like EPR export (mappings/rio/README.md): five CSV extracts with consistent ids.

Clients are people 0, 1, 2 ... of the seed; each has one or two referrals, and each referral a key
worker, some care contacts and one to four DIALOGs (assessment, reviews, discharge as PROMs, now and
then a care-planning one). Writing stops when `count` DIALOG assessments are out. Dirty mode writes
clients.csv in Windows-1252 (as the oldest extract jobs do), the rest in UTF-8 with a BOM, all CRLF,
and leaves key_workers.csv empty (a failed extract job).
"""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_bridge.synth import DOMAINS, draw_dialog
from fhir_bridge.synth.dirty import IMPOSSIBLE_DATE, UNPARSEABLE_DATE, Dirt, SynthFile, bad_nhs_number
from fhir_bridge.synth.people import Person, person

if TYPE_CHECKING:
    from fhir_bridge.synth import SynthManifest

_ITEM_SUFFIXES = ("MentalHealth", "PhysicalHealth", "JobSituation", "Accommodation", "LeisureActivities",
                  "Friendships", "PartnerFamily", "PersonalSafety", "Medication", "PracticalHelp",
                  "Meetings")
CLIENT_COLUMNS = ["ClientID", "NHSNumber", "NHSNumberStatus", "Surname", "Forename", "DateOfBirth",
                  "Gender", "EthnicCategory", "Postcode", "GPPracticeCode"]
REFERRAL_COLUMNS = ["ReferralID", "ClientID", "ReferralReceivedDate", "DischargeDate", "TeamCode",
                    "TeamTypeCode"]
CONTACT_COLUMNS = ["ContactID", "ReferralID", "ContactDate", "ContactTime", "ConsultationMechanism",
                   "AttendanceStatus", "StaffID"]
KEY_WORKER_COLUMNS = ["ClientID", "StaffID", "StartDate", "EndDate"]
ASSESSMENT_COLUMNS = (
    ["AssessmentID", "ClientID", "ReferralID", "CompletedDateTime", "StaffID", "Purpose", "Timepoint"]
    + [f"Item{d.mhsds_item:02d}_{s}" for d, s in zip(DOMAINS, _ITEM_SUFFIXES, strict=True)]
    + [f"Help{d.mhsds_item:02d}_{s}" for d, s in zip(DOMAINS, _ITEM_SUFFIXES, strict=True)]
)
_FIRST_ITEM = ASSESSMENT_COLUMNS.index("Item01_MentalHealth")

# Local team codes with their MHSDS team type (A06 community mental health team, A14 early
# intervention in psychosis).
TEAMS = (("CMHT-HACKNEY-N", "A06"), ("CMHT-TOWER-E", "A06"), ("CMHT-NEWHAM-S", "A06"),
         ("EIS-EAST", "A14"), ("EIS-CITY", "A14"))
_CONSULTATION = ("01", "01", "01", "02", "02", "11")  # face to face, telephone, video
_ATTENDANCE = ("5", "5", "5", "5", "6", "2", "3", "4")  # attended, late but seen, cancelled, DNA
_STAFF = 240
_FAULT_ID_BASE = 9_000_000  # ids of fault rows, apart from the real ones so no real id is reused
_START = date(2021, 1, 4)


def write(manifest: SynthManifest, folder: Path, rng: random.Random) -> None:
    dirty = manifest.dirty
    enc = {"newline": "\r\n", "bom": True} if dirty else {}
    clients = SynthFile(folder / "clients.csv", manifest, **(
        {"encoding": "cp1252", "newline": "\r\n"} if dirty else {}))
    referrals = SynthFile(folder / "referrals.csv", manifest, **enc)
    contacts = SynthFile(folder / "care_contacts.csv", manifest, **enc)
    # Dirty: left empty, so no BOM either (a failed extract job writes nothing at all).
    key_workers = SynthFile(folder / "key_workers.csv", manifest)
    assessments = SynthFile(folder / "dialog_assessments.csv", manifest, **enc)
    export = _Export(manifest, rng, clients, referrals, contacts, key_workers, assessments)
    export.run()
    for out in (clients, referrals, contacts, key_workers, assessments):
        out.close()


class _Export:
    def __init__(self, manifest: SynthManifest, rng: random.Random, clients: SynthFile,
                 referrals: SynthFile, contacts: SynthFile, key_workers: SynthFile, assessments: SynthFile):
        self.m = manifest
        self.rng = rng
        self.count = manifest.count
        self.clients, self.referrals, self.contacts = clients, referrals, contacts
        self.key_workers, self.assessments = key_workers, assessments
        dirty = manifest.dirty
        # Row estimates place the faults; faults planned past the end are written last anyway.
        self.client_dirt = Dirt(manifest, clients, rng, enabled=dirty, rows=self.count // 4,
                                faults=("invalid-nhs-number", "wrong-column-count"))
        self.referral_dirt = Dirt(manifest, referrals, rng, enabled=dirty, rows=self.count // 3,
                                  faults=("impossible-date",))
        self.contact_dirt = Dirt(manifest, contacts, rng, enabled=dirty, rows=self.count)
        self.dialog_dirt = Dirt(manifest, assessments, rng, enabled=dirty, rows=self.count,
                                faults=("rating-9", "unparseable-date", "impossible-date",
                                        "wrong-column-count", "binary-garbage"))
        self.written = 0
        self.faults = 0
        # The latest row of each kind: faults planned past the end copy these.
        self._last_client: list[str] = []
        self._last_referral: list[str] = []
        self._last_dialog: list[str] = []

    def run(self) -> None:
        m = self.m
        if m.dirty:
            m.inject(self.clients.name, 1, "windows-1252", "import", "whole file")
            for out in (self.clients, self.referrals, self.contacts, self.assessments):
                m.inject(out.name, 1, "crlf", "import", "whole file")
                if out is not self.clients:
                    m.inject(out.name, 1, "utf8-bom", "import", "whole file")
            # A failed extract job leaves a file with nothing in it, not even the header.
            m.inject(self.key_workers.name, 1, "empty-file", "quarantine", "no header and no rows")
        else:
            self.key_workers.header(KEY_WORKER_COLUMNS)
        self.clients.header(CLIENT_COLUMNS)
        self.referrals.header(REFERRAL_COLUMNS)
        self.contacts.header(CONTACT_COLUMNS)
        self.assessments.header(ASSESSMENT_COLUMNS)
        index = 0
        while self.written < self.count:
            self._client(person(m.seed, index))
            index += 1
        for kind in self.client_dirt.remaining():
            self._client_fault(kind, self._last_client)
        for kind in self.referral_dirt.remaining():
            self._referral_fault(kind, self._last_referral)
        for kind in self.dialog_dirt.remaining():
            self._dialog_fault(kind, self._last_dialog)

    # -- clients -------------------------------------------------------------------------------

    def _client(self, p: Person) -> None:
        rng, d = self.rng, self.client_dirt
        client_id = str(1_000_000 + p.index)
        status = "01" if p.nhs_number else "07"  # 07: number not present, trace not required
        if p.nhs_number and rng.random() < 0.05:
            status = "02"  # present but not traced
        row = [client_id, d.nhs_number(p.nhs_number), status, d.text(p.family), p.given,
               d.format_date(p.birth_date), p.gender, p.ethnic_category, p.postcode,
               f"F{84000 + p.index % 120:05d}"]
        if p.has_accent and d.enabled:
            d.quirk("windows-1252", f"accented given name {p.given}")
        self._row(self.clients, d, row)
        self._last_client = row
        for kind in d.faults_at(self.clients.records):
            self._client_fault(kind, row)
        for _ in range(1 if rng.random() < 0.7 else 2):
            if self.written < self.count:
                self._referral(client_id, p)

    def _client_fault(self, kind: str, row: list[str]) -> None:
        bad = [self._fault_id(), *row[1:]]
        if kind == "invalid-nhs-number":
            bad[1] = bad_nhs_number(row[1].replace(" ", ""), self.rng)
            bad[2] = "01"
            detail = f"{bad[1]} fails the modulus 11 check"
        else:
            bad, detail = bad[:-1], f"{len(bad) - 1} columns instead of {len(bad)}"
        self.client_dirt.fault(kind, self.clients.row(bad), detail)

    # -- referrals, key workers, contacts ------------------------------------------------------

    def _referral(self, client_id: str, p: Person) -> None:
        rng, d = self.rng, self.referral_dirt
        referral_id = str(5_000_000 + self.referrals.records)
        received = _START + timedelta(days=rng.randrange(3 * 365))
        discharged = received + timedelta(days=rng.randrange(120, 720)) if rng.random() < 0.6 else None
        team, team_type = rng.choice(TEAMS)
        row = [referral_id, client_id, d.format_date(received),
               d.format_date(discharged) if discharged else "", team, team_type]
        self._row(self.referrals, d, row)
        self._last_referral = row
        for kind in d.faults_at(self.referrals.records):
            self._referral_fault(kind, row)
        staff = f"STF{rng.randrange(_STAFF):04d}"
        if not self.m.dirty:
            self.key_workers.row([client_id, staff, received.isoformat(),
                                  discharged.isoformat() if discharged else ""])
        end = discharged or received + timedelta(days=540)
        for _ in range(rng.randrange(2, 7)):
            self._contact(referral_id, received + timedelta(days=rng.randrange((end - received).days)), staff)
        self._dialogs(client_id, referral_id, received, discharged, staff)

    def _referral_fault(self, kind: str, row: list[str]) -> None:
        bad = [self._fault_id(), row[1], IMPOSSIBLE_DATE, *row[3:]]
        self.referral_dirt.fault(kind, self.referrals.row(bad), f"ReferralReceivedDate {IMPOSSIBLE_DATE}")

    def _contact(self, referral_id: str, day: date, staff: str) -> None:
        rng, d = self.rng, self.contact_dirt
        at = time(rng.randrange(9, 18), rng.choice((0, 15, 30, 45)))
        self._row(self.contacts, d, [str(7_000_000 + self.contacts.records), referral_id,
                                     d.format_date(day), at.strftime("%H:%M"), rng.choice(_CONSULTATION),
                                     rng.choice(_ATTENDANCE), staff])

    # -- DIALOG assessments --------------------------------------------------------------------

    def _dialogs(self, client_id: str, referral_id: str, received: date, discharged: date | None,
                 staff: str) -> None:
        rng = self.rng
        plan = [("PROM", "Assessment", received + timedelta(days=rng.randrange(0, 28)))]
        last_review = (discharged or received + timedelta(days=720)) - timedelta(days=30)
        for _ in range(rng.randrange(0, 3)):
            day = plan[-1][2] + timedelta(days=rng.randrange(90, 200))
            if day < last_review:
                plan.append(("PROM", "Review", day))
        if discharged is not None:
            plan.append(("PROM", "Discharge", discharged - timedelta(days=rng.randrange(0, 14))))
        if rng.random() < 0.3:
            plan.insert(1, ("Care planning", "Other", plan[0][2] + timedelta(days=rng.randrange(7, 60))))
        shift = rng.gauss(-0.3, 0.5)
        for number, (purpose, timepoint, day) in enumerate(plan[:4]):
            if self.written >= self.count:
                return
            at = datetime.combine(day, time(rng.randrange(9, 18), rng.randrange(60)))
            self._dialog(client_id, referral_id, at, staff, purpose, timepoint, shift + 0.25 * number)

    def _dialog(self, client_id: str, referral_id: str, at: datetime, staff: str, purpose: str,
                timepoint: str, shift: float) -> None:
        d = self.dialog_dirt
        answers = draw_dialog(self.rng, shift, 0.03 if purpose == "PROM" else 0.3)
        row = [str(3_000_000 + self.written), client_id, referral_id, d.format_datetime(at), staff,
               purpose, timepoint]
        row += [d.rating(rating) for rating, _ in answers]
        row += [d.help(wanted, ("Y", "N")) for _, wanted in answers]
        self._row(self.assessments, d, row)
        self.written += 1
        self._last_dialog = row
        for kind in d.faults_at(self.written):
            self._dialog_fault(kind, row)

    def _dialog_fault(self, kind: str, row: list[str]) -> None:
        d, out = self.dialog_dirt, self.assessments
        if kind == "binary-garbage":
            d.fault(kind, out.garbage(self.rng), "random bytes, NUL included")
            return
        bad = [self._fault_id(), *row[1:]]
        if kind == "rating-9":
            bad[_FIRST_ITEM] = "9"
            detail = "Item01_MentalHealth = 9"
        elif kind == "wrong-column-count":
            bad.append("extra")
            detail = f"{len(bad)} columns instead of {len(row)}"
        else:
            bad[3] = IMPOSSIBLE_DATE if kind == "impossible-date" else UNPARSEABLE_DATE
            detail = f"CompletedDateTime {bad[3]}"
        d.fault(kind, out.row(bad), detail)

    # -- shared --------------------------------------------------------------------------------

    def _row(self, out: SynthFile, d: Dirt, row: list[str]) -> None:
        line = out.row(row)
        if d.chance(0.01):
            # Extracts that join on a many-valued table repeat whole rows: same content, same id.
            d.quirk("duplicate-row", f"repeats line {line}")
            out.row(row)

    def _fault_id(self) -> str:
        self.faults += 1
        return str(_FAULT_ID_BASE + self.faults)
