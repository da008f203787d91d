"""An HL7 v2.4 feed from the RiO-like EPR, as one batch file (FHS/BHS ... BTS/FTS), no MLLP framing.

Per person (the RiO clients of the same seed, with the same local ids): ADT^A28 (add person), now
and then ADT^A31 or ADT^A08 (a changed postcode), for one in twenty a duplicate registration later
merged by ADT^A40 (MRG), and one ORU^R01 per DIALOG until `count` ORUs are out.

ORU^R01 layout: PID-3 NHS number (authority NHS, type NH) and local id (RAT, MR); OBR-4
DIALOG^DIALOG^L, OBR-7 when completed; OBX "DIALOG-PURPOSE" and "DIALOG-TIMEPOINT" (CE, local);
then one OBX per answered item (NM, OBX-3 the SNOMED CT item concept ^SCT, or in messages from
older interfaces the local code DIALOG-01 ... DIALOG-11 ^L, numbered in the MHSDS order) and one per
help-wanted answer (CE, OBX-3 DIALOG-HELP-nn^...^L, OBX-5 Y/N of table 0136); OBX-14 the time.
PID-8 sex from the MHSDS stated gender: 1 M, 2 F, 9 O, X U.
Segments end with CR; dirty mode ends some messages' segments with LF or CRLF instead.
"""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_bridge.synth import DOMAINS, draw_dialog
from fhir_bridge.synth.dirty import Dirt, SynthFile, bad_nhs_number
from fhir_bridge.synth.people import Person, person

if TYPE_CHECKING:
    from fhir_bridge.synth import SynthManifest

FACILITY = "RAT"  # the sending trust's ODS code (as in the golden cases), authority of local ids
_SEX = {"1": "M", "2": "F", "9": "O", "X": "U"}
_TS = "%Y%m%d%H%M%S"
_BATCH_TIME = "20250101000000"  # fixed, so the same seed gives the same bytes
_DUPLICATE_ID_BASE = 8_000_000  # local ids of duplicate registrations merged later by A40


def write(manifest: SynthManifest, folder: Path, rng: random.Random) -> None:
    out = SynthFile(folder / "feed.hl7", manifest, newline="\r")
    feed = _Feed(manifest, out, rng)
    out.text(_segments([
        f"FHS|^~\\&|RIO|{FACILITY}|FHIR-BRIDGE|{FACILITY}|{_BATCH_TIME}||feed.hl7",
        f"BHS|^~\\&|RIO|{FACILITY}|FHIR-BRIDGE|{FACILITY}|{_BATCH_TIME}",
    ], "\r"))
    feed.run()
    out.text(_segments([f"BTS|{out.records}", "FTS|1"], "\r"))
    out.close()
    if manifest.dirty:
        empty = SynthFile(folder / "empty.hl7", manifest)
        manifest.inject(empty.name, 1, "empty-file", "quarantine", "0 bytes")
        empty.close()


def _segments(segments: list[str], terminator: str) -> str:
    return terminator.join(segments) + terminator


def _ts(value: datetime) -> str:
    return value.strftime(_TS)


class _Feed:
    def __init__(self, manifest: SynthManifest, out: SynthFile, rng: random.Random):
        self.m = manifest
        self.out = out
        self.rng = rng
        self.d = Dirt(manifest, out, rng, enabled=manifest.dirty, rows=manifest.count,
                      faults=("missing-pid", "binary-garbage", "rating-9", "impossible-date",
                              "unparseable-date", "invalid-nhs-number"))
        self.results = 0
        self._last: tuple[Person, str, datetime]  # the latest DIALOG, which faults copy

    def run(self) -> None:
        index = 0
        while self.results < self.m.count:
            self._person(person(self.m.seed, index))
            index += 1
        for kind in self.d.remaining():
            self._fault(kind)

    def _person(self, p: Person) -> None:
        rng = self.rng
        local_id = str(1_000_000 + p.index)
        at = datetime.combine(date(2021, 1, 4) + timedelta(days=rng.randrange(3 * 365)), time(9))
        self._send("A28", at, self._pid(p, local_id, p.postcode))
        if rng.random() < 0.05:
            # Registered twice by mistake (no NHS number traced yet), then merged into the first.
            duplicate = str(_DUPLICATE_ID_BASE + p.index)
            self._send("A28", at + timedelta(hours=1), self._pid(p, duplicate, p.postcode, nhs=False))
            self._send("A40", at + timedelta(days=2), self._pid(p, local_id, p.postcode),
                       [f"MRG|{duplicate}^^^{FACILITY}^MR"])
        for number in range(rng.randrange(1, 5)):
            if self.results >= self.m.count:
                return
            at += timedelta(days=rng.randrange(60, 200), minutes=rng.randrange(480))
            if rng.random() < 0.1:
                moved = f"{p.postcode.split()[0]} {rng.randrange(1, 10)}XY"
                self._send(rng.choice(("A31", "A08")), at - timedelta(days=1), self._pid(p, local_id, moved))
            self._result(p, local_id, at, "assessment" if number == 0 else "review")

    def _pid(self, p: Person, local_id: str, postcode: str, *, nhs: bool = True) -> str:
        ids = [f"{local_id}^^^{FACILITY}^MR"]
        if nhs and p.nhs_number:
            ids.insert(0, f"{self.d.nhs_number(p.nhs_number)}^^^NHS^NH")
        return (f"PID|1||{'~'.join(ids)}||{self.d.text(p.family)}^{p.given}||{p.birth_date:%Y%m%d}|"
                f"{_SEX[p.gender]}|||^^^^{postcode}|||||||||||{p.ethnic_category}")

    def _send(self, event: str, at: datetime, pid: str, extra: list[str] | None = None) -> None:
        structure = {"A28": "ADT_A05", "A31": "ADT_A05", "A08": "ADT_A01", "A40": "ADT_A39"}[event]
        segments = [self._msh(f"ADT^{event}^{structure}", at), f"EVN|{event}|{_ts(at)}", pid, *(extra or [])]
        if event != "A40":
            segments.append("PV1|1|N")
        self._write(segments)

    def _msh(self, message_type: str, at: datetime) -> str:
        control = f"MSG{self.out.records + 1:09d}"
        return f"MSH|^~\\&|RIO|{FACILITY}|FHIR-BRIDGE|{FACILITY}|{_ts(at)}||{message_type}|{control}|P|2.4|||AL|NE"

    def _result(self, p: Person, local_id: str, at: datetime, timepoint: str) -> None:
        segments = self._oru(p, local_id, at, timepoint)
        self._write(segments)
        self.results += 1
        if self.d.chance(0.01):
            self.d.quirk("duplicate-row", "the same ORU^R01 sent twice (same control id)")
            self._write(segments)
        self._last = (p, local_id, at)
        for kind in self.d.faults_at(self.results):
            self._fault(kind)

    def _oru(self, p: Person, local_id: str, at: datetime, timepoint: str) -> list[str]:
        rng = self.rng
        purpose = "PROM" if rng.random() < 0.8 else "care-planning"
        timepoint = timepoint if purpose == "PROM" else "other"
        snomed = rng.random() < 0.7  # older interfaces send local item codes, mapped by a ConceptMap
        stamp = _ts(at)
        segments = [self._msh("ORU^R01^ORU_R01", at), self._pid(p, local_id, p.postcode),
                    f"OBR|1|{local_id}-{stamp}^RIO||DIALOG^DIALOG^L|||{stamp}",
                    _obx(1, "CE", "DIALOG-PURPOSE^DIALOG purpose^L", f"{purpose}^^L", stamp),
                    _obx(2, "CE", "DIALOG-TIMEPOINT^DIALOG timepoint^L", f"{timepoint}^^L", stamp)]
        for domain, (rating, wanted) in zip(DOMAINS, draw_dialog(rng, rng.gauss(-0.2, 0.6), 0.05), strict=True):
            item = f"{domain.snomed}^{domain.label}^SCT" if snomed else \
                f"DIALOG-{domain.mhsds_item:02d}^{domain.label}^L"
            value = self.d.rating(rating)
            if value:
                segments.append(_obx(len(segments) - 2, "NM", item, value, stamp))
            if wanted is not None:
                help_code = f"DIALOG-HELP-{domain.mhsds_item:02d}^More help wanted: {domain.label}^L"
                answer = "Y^Yes^HL70136" if wanted else "N^No^HL70136"
                segments.append(_obx(len(segments) - 2, "CE", help_code, answer, stamp))
        return segments

    def _write(self, segments: list[str]) -> int:
        terminator = "\r"
        if self.d.chance(0.02):
            terminator = self.rng.choice(("\n", "\r\n"))
            self.d.quirk("hl7-lf-segments" if terminator == "\n" else "crlf", "segment terminators")
        return self.out.record(_segments(segments, terminator))

    def _fault(self, kind: str) -> None:
        """A copy of the last DIALOG (a new control id) with one fault the importer must quarantine."""
        p, local_id, at = self._last
        if kind == "binary-garbage":
            # split_batch gives garbage between messages a record of its own (quarantined alone)
            self.d.fault(kind, self.out.garbage(self.rng), "random bytes between messages")
            return
        segments = self._oru(p, local_id, at, "review")
        obx = next(k for k, s in enumerate(segments) if s.startswith("OBX|3|"))
        if kind == "missing-pid":
            del segments[1]
            detail = "ORU^R01 without a PID segment"
        elif kind == "rating-9":
            fields = segments[obx].split("|")
            fields[2], fields[5] = "NM", "9"
            segments[obx] = "|".join(fields)
            detail = "first item OBX-5 = 9"
        elif kind == "invalid-nhs-number":
            bad = bad_nhs_number(p.nhs_number, self.rng)
            segments[1] = f"PID|1||{bad}^^^NHS^NH||{p.family}^{p.given}||{p.birth_date:%Y%m%d}"
            detail = f"PID-3 {bad} fails the modulus 11 check"
        else:
            value = "20240231120000" if kind == "impossible-date" else "yesterday"
            fields = segments[obx].split("|")
            fields[14] = value
            segments[obx] = "|".join(fields)
            detail = f"OBX-14 {value}"
        self.d.fault(kind, self._write(segments), detail)


def _obx(set_id: int, value_type: str, code: str, value: str, stamp: str) -> str:
    # OBX-6..10 empty, OBX-11 F (final), OBX-12/13 empty, OBX-14 the time of the observation.
    return f"OBX|{set_id}|{value_type}|{code}||{value}||||||F|||{stamp}"
