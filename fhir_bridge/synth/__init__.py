"""Seeded generators of realistic source exports, at any size, clean or dirty.

`generate("rio" | "vcse" | "dialog-app" | "hl7" | "all", out_dir, count=, seed=, dirty=)` writes the
files and returns a `SynthManifest`: every file with its record count, and in dirty mode every
injected fault (each one, with file:line) and the first place of each quirk (with a count). Tests and
benchmarks assert against it: faults must end up quarantined, quirks must import cleanly.

`count` is the number of records in each source's main file: DIALOG assessments (RiO), sessions
(VCSE, app), ORU^R01 messages (HL7). Same seed, same bytes; person N is the same person in every
source, so generating several sources with one seed gives identity linking something to find.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fhir_bridge.errors import InputError

if TYPE_CHECKING:
    from fhir_bridge.synth.dirty import SynthFile

SOURCES = ("rio", "vcse", "dialog-app", "hl7")


@dataclass(frozen=True, slots=True)
class Domain:
    mhsds_item: int       # NHS England / SNOMED / MHSDS numbering: 6 friendships, 7 partner/family
    code: str             # the project's dialog-domain code
    label: str            # how people write it (VCSE column names)
    snomed: str           # SNOMED CT item score concept
    mean: float           # typical rating (Mosler et al. 2020: job lowest, meetings highest)


DOMAINS = (
    Domain(1, "mental-health", "Mental health", "1037651000000100", 4.3),
    Domain(2, "physical-health", "Physical health", "1037661000000102", 4.6),
    Domain(3, "job-situation", "Job situation", "1037671000000109", 4.05),
    Domain(4, "accommodation", "Accommodation", "1037681000000106", 4.9),
    Domain(5, "leisure-activities", "Leisure activities", "1037691000000108", 4.6),
    Domain(6, "friendships", "Friendships", "1037701000000108", 4.6),
    Domain(7, "partner-family", "Partner/family", "1037711000000105", 4.9),
    Domain(8, "personal-safety", "Personal safety", "1037721000000104", 5.1),
    Domain(9, "medication", "Medication", "1037731000000102", 5.1),
    Domain(10, "practical-help", "Practical help received", "1037741000000106", 5.15),
    Domain(11, "meetings", "Meetings with mental health professionals", "1037751000000109", 5.5),
)


def draw_dialog(rng: random.Random, shift: float, skip_rate: float) -> list[tuple[int | None, bool | None]]:
    """(rating, more help wanted) per domain in MHSDS order; None where the item was not answered.

    `shift` moves a person's ratings (later sessions improve on average by about half a point).
    """
    answers: list[tuple[int | None, bool | None]] = []
    for d in DOMAINS:
        if rng.random() < skip_rate:
            answers.append((None, None))
            continue
        rating = min(7, max(1, round(rng.gauss(d.mean + shift, 1.2))))
        answers.append((rating, rng.random() < (0.6 if rating <= 3 else 0.12)))
    return answers


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str          # relative to out_dir
    records: int       # data records (CSV rows after the header, JSON objects, HL7 messages)
    encoding: str
    newline: str


@dataclass(frozen=True, slots=True)
class Injection:
    file: str
    line: int
    kind: str          # one of dirty.QUIRKS or dirty.FAULTS
    expect: Literal["import", "quarantine"]
    detail: str = ""
    # Ordinal of the record in its file, from 1 (CSV row after the header, JSON object, HL7 message);
    # 0 for a whole-file quirk. HL7 importers number messages, not lines.
    record: int = 0


@dataclass
class SynthManifest:
    source: str
    out_dir: Path
    count: int
    seed: int
    dirty: bool
    files: list[FileEntry] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    # How often each quirk occurs per file; only its first place is an Injection (memory stays flat).
    quirk_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_file(self, out: SynthFile) -> None:
        encoding = "utf-8-sig" if out.bom else out.encoding  # Python's name for UTF-8 with a BOM
        self.files.append(FileEntry(out.name, out.records, encoding, repr(out.newline)[1:-1]))

    def inject(self, file: str, line: int, kind: str, expect: Literal["import", "quarantine"],
               detail: str = "", *, record: int = 0) -> None:
        if expect == "import":
            counts = self.quirk_counts.setdefault(file, {})
            counts[kind] = counts.get(kind, 0) + 1
            if counts[kind] > 1:
                return
        self.injections.append(Injection(file, line, kind, expect, detail, record))

    def records(self, path: str) -> int:
        return next(f.records for f in self.files if f.path == path)

    def faults(self) -> list[Injection]:
        return [i for i in self.injections if i.expect == "quarantine"]

    def kinds(self) -> set[str]:
        return {i.kind for i in self.injections}

    def merge(self, other: SynthManifest) -> None:
        self.files.extend(other.files)
        self.injections.extend(other.injections)
        self.quirk_counts.update(other.quirk_counts)

    def to_json(self) -> dict:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data

    def summary(self) -> list[str]:
        lines = [f"synth {self.source} (seed {self.seed}, count {self.count}{', dirty' if self.dirty else ''})"
                 f" -> {self.out_dir}"]
        lines += [f"{f.path}: {f.records} records ({f.encoding}, newline {f.newline})" for f in self.files]
        if self.dirty:
            quarantine = len(self.faults())
            quirks = sum(sum(c.values()) for c in self.quirk_counts.values())
            lines.append(f"injected: {quarantine} faults to quarantine, {quirks} quirks to import")
            lines += [f"  {i.expect:10} {i.kind:20} {i.file}:{i.line} {i.detail}".rstrip()
                      for i in self.injections]
        return lines


def generate(source: str, out_dir: Path | str, *, count: int, seed: int, dirty: bool = False) -> SynthManifest:
    """Write `source`'s export (or every source's, in sub-folders, for "all") into out_dir."""
    # Imported here: the generators import DOMAINS and the manifest types from this module.
    from fhir_bridge.synth import dialog_app, hl7, rio, vcse

    writers = {"rio": rio.write, "vcse": vcse.write, "dialog-app": dialog_app.write, "hl7": hl7.write}
    if source != "all" and source not in writers:
        raise InputError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)} or all")
    if count < 1:
        raise InputError(f"count must be at least 1, not {count}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}") from exc
    manifest = SynthManifest(source, out, count, seed, dirty)
    for name in (SOURCES if source == "all" else (source,)):
        target = out / name if source == "all" else out
        part = SynthManifest(name, out, count, seed, dirty)
        try:
            target.mkdir(exist_ok=True)
            writers[name](part, target, random.Random(f"{seed}/{name}"))
        except OSError as exc:
            raise InputError(f"cannot write into the output folder {target}: {exc.strerror or exc}") from exc
        manifest.merge(part)
    return manifest
