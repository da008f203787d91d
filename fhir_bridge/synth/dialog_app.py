"""The QMUL DIALOG+ app CSV export (format in domain.md and mappings/dialog-app/README.md).

Columns come in the app's own domain order (partner/family before friendships) with the native
misspelt header "Leisure Activitie Discussed"; help wanted is 2 = yes, 1 = no; dates DD/MM/YYYY.
A fifth of the people are RiO clients of the same seed. Dirty mode: UTF-8 with BOM, CRLF, action
items broken over lines, other spellings of dates and help, and an empty dialog-plus-empty.csv.
"""
from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_bridge.synth import DOMAINS, draw_dialog
from fhir_bridge.synth.dirty import IMPOSSIBLE_DATE, UNPARSEABLE_DATE, Dirt, SynthFile
from fhir_bridge.synth.people import person
from fhir_bridge.synth.vcse import ACTIONS

if TYPE_CHECKING:
    from fhir_bridge.synth import SynthManifest

# (column prefix, project domain code) in the app's order: item 6 partner/family, 7 friendships.
APP_DOMAINS = (
    ("Mental Health", "mental-health"), ("Physical Health", "physical-health"),
    ("Job Situation", "job-situation"), ("Accommodation", "accommodation"),
    ("Leisure Activities", "leisure-activities"), ("Partner / Family", "partner-family"),
    ("Friendships", "friendships"), ("Personal Safety", "personal-safety"),
    ("Medication", "medication"), ("Practical Help", "practical-help"), ("Meetings", "meetings"),
)
HEADERS = ["Client Name", "Date Start", "Date End"] + [
    header
    for prefix, _ in APP_DOMAINS
    for header in (f"{prefix} Rank", f"{prefix} Additional Help",
                   # The native export really spells this one header so.
                   "Leisure Activitie Discussed" if prefix == "Leisure Activities" else f"{prefix} Discussed",
                   f"{prefix} Action Items")
]
_MHSDS_POSITION = {d.code: k for k, d in enumerate(DOMAINS)}
_APP_ONLY_INDEX = 800_000  # app-only people: apart from RiO (below) and VCSE-only (500,000 up)
_DMY = "%d/%m/%Y"


def write(manifest: SynthManifest, folder: Path, rng: random.Random) -> None:
    dirty = manifest.dirty
    out = SynthFile(folder / "dialog-plus-export.csv", manifest,
                    **({"bom": True, "newline": "\r\n"} if dirty else {}))
    d = Dirt(manifest, out, rng, enabled=dirty, rows=manifest.count,
             faults=("rating-9", "impossible-date", "unparseable-date", "wrong-column-count", "binary-garbage"))
    if dirty:
        manifest.inject(out.name, 1, "utf8-bom", "import", "whole file")
        manifest.inject(out.name, 1, "crlf", "import", "whole file")
    out.header(HEADERS)
    made, app_only = 0, 0
    row: list[str] = []
    while made < manifest.count:
        if rng.random() < 0.2:
            p = person(manifest.seed, rng.randrange(max(1, manifest.count // 8)))
        else:
            p = person(manifest.seed, _APP_ONLY_INDEX + app_only)
            app_only += 1
        day = date(2022, 1, 3) + timedelta(days=rng.randrange(2 * 365))
        shift = rng.gauss(-0.3, 0.5)
        for _ in range(rng.randrange(1, 7)):
            if made >= manifest.count:
                break
            row = _row(rng, d, f"{p.family}, {p.given}", day, shift)
            line = out.row(row)
            if d.chance(0.01):
                d.quirk("duplicate-row", f"repeats line {line}")
                out.row(row)
            made += 1
            for kind in d.faults_at(made):
                _fault(kind, row, out, d, rng)
            day += timedelta(days=rng.randrange(21, 45))
            shift += 0.1
    for kind in d.remaining():
        _fault(kind, row, out, d, rng)
    out.close()
    if dirty:
        empty = SynthFile(folder / "dialog-plus-empty.csv", manifest)
        manifest.inject(empty.name, 1, "empty-file", "quarantine", "0 bytes")
        empty.close()


def _row(rng: random.Random, d: Dirt, client_name: str, day: date, shift: float) -> list[str]:
    answers = draw_dialog(rng, shift, 0.1)
    ranked = sorted((a[0] or 9, not a[1], k) for k, a in enumerate(answers))
    chosen = {DOMAINS[k].code for *_, k in ranked[:rng.randrange(1, 4)]}
    started = d.format_date(day, _DMY)
    row = [client_name, started, started if d.enabled else day.strftime(_DMY)]
    for _, code in APP_DOMAINS:
        # Looked up by domain, never by position: the two orders differ at items 6 and 7.
        rating, wanted = answers[_MHSDS_POSITION[code]]
        actions = rng.sample(ACTIONS[code], rng.randrange(1, 3)) if code in chosen else []
        help_ = d.help(wanted, ("2", "1"), ones_and_zeros=False)
        if help_ in ("2", "1") and d.enabled:
            d.quirk("help-2/1", "the app's own codes: 2 = yes, 1 = no")
        row += [d.rating(rating), help_, "1" if code in chosen else "0", d.free_text(actions)]
    return row


def _fault(kind: str, row: list[str], out: SynthFile, d: Dirt, rng: random.Random) -> None:
    if kind == "binary-garbage":
        d.fault(kind, out.garbage(rng), "random bytes, NUL included")
        return
    # A session of a person of its own, so the faulty row cannot be taken for a later real one.
    bad = [f"Faulty, Row {kind}", *row[1:]]
    if kind == "rating-9":
        bad[3] = "9"
        detail = "Mental Health Rank 9"
    elif kind == "wrong-column-count":
        bad = bad[:-4]
        detail = f"{len(bad)} columns instead of {len(HEADERS)}"
    else:
        bad[1] = IMPOSSIBLE_DATE if kind == "impossible-date" else UNPARSEABLE_DATE
        detail = f"Date Start {bad[1]}"
    d.fault(kind, out.row(bad), detail)
