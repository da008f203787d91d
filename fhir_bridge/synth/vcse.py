"""The VCSE export (mappings/vcse/README.md): sessions.csv and sessions.json, the same sessions.

About a third of the people are RiO clients of the same seed (same name, birth date, postcode; one in
ten with a typing slip in the given name), the rest are known to the voluntary sector only. Six in
ten people have no NHS number on the VCSE system. Dirty mode writes the CSV in Windows-1252 with
CRLF (what a spreadsheet "Save as CSV" gives), breaks agreed actions over lines inside the quoted
field, and adds an empty sessions-empty.csv.
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from fhir_bridge.synth import DOMAINS, Domain, draw_dialog
from fhir_bridge.synth.dirty import IMPOSSIBLE_DATE, UNPARSEABLE_DATE, Dirt, SynthFile, bad_nhs_number
from fhir_bridge.synth.people import GIVEN_NAMES, FAMILY_NAMES, Person, misspelt, person

if TYPE_CHECKING:
    from fhir_bridge.synth import SynthManifest

CSV_COLUMNS = (
    ["SessionID", "ClientRef", "NHSNumber", "Surname", "Forename", "DateOfBirth", "Postcode",
     "SessionDate", "WorkerName", "OrganisationODS", "SessionType"]
    + [f"{d.label} {part}" for d in DOMAINS for part in ("rating", "help")]
    + ["ChosenDomains", "AgreedActions"]
)
# Synthetic ODS-style codes for voluntary organisations (not looked up: not real organisations).
ORGANISATIONS = ("8ZX01", "8ZX02", "8ZX03")
ACTIONS = {
    "mental-health": ("Keep a mood diary", "Try the breathing exercise when anxious", "Call the crisis line if needed"),
    "physical-health": ("Book a GP appointment about sleep", "Join the walking group"),
    "job-situation": ("Meet the employment adviser", "Update CV with the library's help"),
    "accommodation": ("Call the housing officer about repairs", "Apply for £150 hardship grant for a cooker"),
    "leisure-activities": ("Go to the Thursday art group", "Visit the library café"),
    "friendships": ("Text one old friend this week", "Try the peer support group"),
    "partner-family": ("Plan a visit to sister", "Family meeting with the care coordinator"),
    "personal-safety": ("Agree a safety plan", "Ask the landlord to fix the door lock"),
    "medication": ("Ask the pharmacist about side effects", "Use a weekly pill box"),
    "practical-help": ("Claim the £25 travel refund", "Get help filling in the benefits form"),
    "meetings": ("Write questions down before the next appointment", "Ask for an evening appointment"),
}
WHO = ("client", "worker", "client and worker", "care coordinator", "family")
_SHARED_WITH_RIO = 0.35
_VCSE_ONLY_INDEX = 500_000  # people of the VCSE alone: indices far above any RiO client's


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    client_ref: str
    nhs_number: str
    person: Person
    given: str
    day: date
    worker: str
    organisation: str
    session_type: str
    answers: list[tuple[int | None, bool | None]]
    chosen: list[Domain]
    actions: list[tuple[Domain, str, str, date]]


def write(manifest: SynthManifest, folder: Path, rng: random.Random) -> None:
    dirty = manifest.dirty
    csv_out = SynthFile(folder / "sessions.csv", manifest,
                        **({"encoding": "cp1252", "newline": "\r\n"} if dirty else {}))
    json_out = SynthFile(folder / "sessions.json", manifest)
    csv_dirt = Dirt(manifest, csv_out, rng, enabled=dirty, rows=manifest.count,
                    faults=("rating-9", "impossible-date", "unparseable-date", "invalid-nhs-number",
                            "wrong-column-count"))
    json_dirt = Dirt(manifest, json_out, rng, enabled=dirty, rows=manifest.count,
                     faults=("rating-9", "impossible-date", "invalid-nhs-number"))
    if dirty:
        manifest.inject(csv_out.name, 1, "windows-1252", "import", "whole file")
        manifest.inject(csv_out.name, 1, "crlf", "import", "whole file")
    csv_out.header(CSV_COLUMNS)
    json_out.text("[\n")
    written = 0
    for session in _sessions(manifest, rng):
        _write_both(session, csv_out, csv_dirt, json_out, json_dirt, written)
        written += 1
        for kind in csv_dirt.faults_at(written):
            _csv_fault(kind, session, csv_out, csv_dirt, rng)
        for kind in json_dirt.faults_at(written):
            _json_fault(kind, session, json_out, json_dirt, rng)
        last = session
    for kind in csv_dirt.remaining():
        _csv_fault(kind, last, csv_out, csv_dirt, rng)
    for kind in json_dirt.remaining():
        _json_fault(kind, last, json_out, json_dirt, rng)
    json_out.text("\n]\n")
    csv_out.close()
    json_out.close()
    if dirty:
        empty = SynthFile(folder / "sessions-empty.csv", manifest)
        manifest.inject(empty.name, 1, "empty-file", "quarantine", "0 bytes")
        empty.close()


def _sessions(manifest: SynthManifest, rng: random.Random) -> Iterator[Session]:
    """Sessions person by person (1-6 each, about monthly) until `count` are out."""
    made, vcse_only = 0, 0
    while made < manifest.count:
        if rng.random() < _SHARED_WITH_RIO:
            # Every RiO export of this count has at least count/8 clients: these indices are in it.
            p = person(manifest.seed, rng.randrange(max(1, manifest.count // 8)))
            given = misspelt(p.given, rng) if rng.random() < 0.1 else p.given
        else:
            p = person(manifest.seed, _VCSE_ONLY_INDEX + vcse_only)
            vcse_only += 1
            given = p.given
        nhs_number = p.nhs_number if rng.random() < 0.4 else ""
        organisation = rng.choice(ORGANISATIONS)
        worker = f"{rng.choice(GIVEN_NAMES)} {rng.choice(FAMILY_NAMES)}"
        day = date(2022, 1, 3) + timedelta(days=rng.randrange(2 * 365))
        shift = rng.gauss(-0.3, 0.5)
        for _ in range(rng.randrange(1, 7)):
            if made >= manifest.count:
                return
            yield _session(rng, f"S{made + 1:08d}", f"{organisation}-{p.index:07d}", nhs_number, p, given,
                           day, worker, organisation, shift)
            made += 1
            day += timedelta(days=rng.randrange(21, 45))
            shift += 0.1


def _session(rng: random.Random, session_id: str, client_ref: str, nhs_number: str, p: Person,
             given: str, day: date, worker: str, organisation: str, shift: float) -> Session:
    plus = rng.random() < 0.7
    answers = draw_dialog(rng, shift, 0.1 if plus else 0.03)
    chosen: list[Domain] = []
    actions: list[tuple[Domain, str, str, date]] = []
    if plus:
        # People pick up to three domains, mostly the low-rated ones or where they want more help.
        ranked = sorted((a[0] or 9, not a[1], k) for k, a in enumerate(answers))
        chosen = [DOMAINS[k] for *_, k in ranked[:rng.randrange(1, 4)]]
        for d in chosen:
            for action in rng.sample(ACTIONS[d.code], rng.randrange(1, 3)):
                actions.append((d, action, rng.choice(WHO), day + timedelta(days=rng.randrange(7, 43))))
    return Session(session_id, client_ref, nhs_number, p, given, day, worker, organisation,
                   "DIALOG+" if plus else "DIALOG", answers, chosen, actions)


def _csv_row(s: Session, d: Dirt) -> list[str]:
    row = [s.session_id, s.client_ref, d.nhs_number(s.nhs_number), d.text(s.person.family), s.given,
           d.format_date(s.person.birth_date), s.person.postcode, d.format_date(s.day), d.text(s.worker),
           s.organisation, s.session_type]
    for rating, wanted in s.answers:
        row += [d.rating(rating), d.help(wanted, ("Yes", "No"))]
    actions = [f"{dom.label}: {text} ({who}, {d.format_date(due)})" for dom, text, who, due in s.actions]
    return row + [";".join(dom.label for dom in s.chosen), d.free_text(actions)]


def _json_record(s: Session, d: Dirt) -> dict:
    return {
        "client": {"ref": s.client_ref, "nhsNumber": d.nhs_number(s.nhs_number) or None,
                   "surname": s.person.family, "forename": s.given,
                   "dateOfBirth": d.format_date(s.person.birth_date), "postcode": s.person.postcode},
        "session": {"id": s.session_id, "date": d.format_date(s.day), "worker": s.worker,
                    "organisationOds": s.organisation, "type": s.session_type,
                    "chosenDomains": [dom.label for dom in s.chosen]},
        "ratings": {dom.label: {"rating": rating, "help": wanted}
                    for dom, (rating, wanted) in zip(DOMAINS, s.answers, strict=True)},
        "actions": [{"domain": dom.label, "action": text, "who": who, "due": d.format_date(due)}
                    for dom, text, who, due in s.actions],
    }


def _write_both(s: Session, csv_out: SynthFile, csv_dirt: Dirt, json_out: SynthFile, json_dirt: Dirt,
                written: int) -> None:
    if s.person.has_accent and csv_dirt.enabled:
        csv_dirt.quirk("windows-1252", f"accented given name {s.given}")
    row = _csv_row(s, csv_dirt)
    line = csv_out.row(row)
    if csv_dirt.chance(0.01):
        csv_dirt.quirk("duplicate-row", f"repeats line {line}")
        csv_out.row(row)
    _json_line(json_out, _json_record(s, json_dirt), first=written == 0)


def _json_line(out: SynthFile, record: dict, *, first: bool) -> int:
    # One object per line, so a fault in the JSON can be named by line like one in the CSV.
    if not first:
        out.text(",\n")
    return out.record(orjson.dumps(record).decode())


def _faulty(kind: str, s: Session, rng: random.Random) -> tuple[Session, str]:
    """A copy of the session, under its own id, with one fault the importer must quarantine."""
    s = dataclasses.replace(s, session_id=f"F{s.session_id}-{kind}")
    if kind == "rating-9":
        return dataclasses.replace(s, answers=[(9, s.answers[0][1]), *s.answers[1:]]), "Mental health rating 9"
    if kind == "invalid-nhs-number":
        bad = bad_nhs_number(s.person.nhs_number, rng)
        return dataclasses.replace(s, nhs_number=bad), f"{bad} fails the modulus 11 check"
    return s, ""


def _csv_fault(kind: str, s: Session, out: SynthFile, d: Dirt, rng: random.Random) -> None:
    bad, detail = _faulty(kind, s, rng)
    row = _csv_row(bad, d)
    if kind in ("impossible-date", "unparseable-date"):
        row[7] = IMPOSSIBLE_DATE if kind == "impossible-date" else UNPARSEABLE_DATE
        detail = f"SessionDate {row[7]}"
    elif kind == "wrong-column-count":
        row = row[:-3]
        detail = f"{len(row)} columns instead of {len(CSV_COLUMNS)}"
    d.fault(kind, out.row(row), detail)


def _json_fault(kind: str, s: Session, out: SynthFile, d: Dirt, rng: random.Random) -> None:
    bad, detail = _faulty(kind, s, rng)
    record = _json_record(bad, d)
    if kind == "impossible-date":
        record["session"]["date"] = IMPOSSIBLE_DATE
        detail = f"session.date {IMPOSSIBLE_DATE}"
    d.fault(kind, _json_line(out, record, first=False), detail)
