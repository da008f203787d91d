"""The bytes of a synthetic export: clean, or with what real extracts contain.

`SynthFile` writes records one at a time (memory stays flat whatever the count) and knows the line
each record starts on, so every injection can be reported as file:line. `Dirt` decides, per file,
where quirks (which must import cleanly) and faults (which must be quarantined) go, and logs them
in the manifest. Clean output is UTF-8 without BOM, LF, ISO dates; dirty output varies all three.
"""
from __future__ import annotations

import csv
import random
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_bridge.identifiers import nhs_number_check_digit

if TYPE_CHECKING:
    from fhir_bridge.synth import SynthManifest

# Quirks real extracts have: the importers must read them as if they were clean.
QUIRKS = (
    "utf8-bom", "windows-1252", "crlf", "quoted-newline", "trailing-spaces",
    "date-dd/mm/yyyy", "date-yyyy-mm-dd", "date-with-time", "nhs-number-spaces",
    "help-y/n", "help-yes/no", "help-1/0", "help-2/1", "not-answered-blank", "not-answered-8",
    "duplicate-row", "hl7-lf-segments",
)
# Faults: each must end up in the quarantine with a reason, never stop a run.
FAULTS = (
    "wrong-column-count", "rating-9", "impossible-date", "unparseable-date", "invalid-nhs-number",
    "binary-garbage", "empty-file", "missing-pid",
)
IMPOSSIBLE_DATE = "31/02/2024"
UNPARSEABLE_DATE = "yesterday"
# Bytes a garbage line may not contain: they would end the line, open a quoted field that swallows
# the rest of the file, add columns, or look like MLLP framing; a garbage line must stay one record.
_GARBAGE_EXCLUDED = frozenset(b'\r\n",\x0b\x1c|')
_GARBAGE_BYTES = bytes(b for b in range(256) if b not in _GARBAGE_EXCLUDED)

QUIRK_RATE = 0.04  # per eligible field; high enough that every quirk shows in a few hundred rows


class SynthFile:
    """One output file, written record by record, with the line each record starts on."""

    def __init__(self, path: Path, manifest: SynthManifest, *, encoding: str = "utf-8",
                 bom: bool = False, newline: str = "\n"):
        self.path = path
        self.name = path.relative_to(manifest.out_dir).as_posix()
        self.encoding = encoding
        self.bom = bom
        self.newline = newline
        self.line = 1        # the line the next record starts on
        self.records = 0
        self._manifest = manifest
        self._file = path.open("wb", buffering=1 << 20)
        self._pending = ""
        self._csv = csv.writer(self, lineterminator=newline)
        if bom:
            self._file.write(b"\xef\xbb\xbf")

    def write(self, text: str) -> None:
        """For csv.writer, which hands over each row as one string."""
        self._pending = text

    def header(self, fields: list[str]) -> None:
        self._csv.writerow(fields)
        self.text(self._pending)

    def text(self, text: str) -> None:
        """Text that is not a record: a JSON bracket or separator, a batch header."""
        self._emit(text)

    def row(self, fields: list[str]) -> int:
        """Write one CSV record; returns the line it starts on."""
        self._csv.writerow(fields)
        return self.record(self._pending)

    def record(self, text: str) -> int:
        """Write one record already formatted (a JSON line, an HL7 message with its terminators)."""
        start = self.line
        self._emit(text)
        self.records += 1
        return start

    def garbage(self, rng: random.Random) -> int:
        """A line of random bytes, the kind a broken extract job or a binary paste leaves: a record
        of its own to the readers (a flagged CSV row; a text of its own between HL7 messages)."""
        start = self.line
        noise = bytes(rng.choice(_GARBAGE_BYTES) for _ in range(rng.randrange(30, 70)))
        self._file.write(b"\x00\xff" + noise + self.newline.encode("ascii"))
        self.line += 1
        self.records += 1
        return start

    def close(self) -> None:
        self._file.close()
        self._manifest.add_file(self)

    def _emit(self, text: str) -> None:
        self._file.write(text.encode(self.encoding))
        # Count line breaks the way a line-numbering reader does: CRLF, CR and LF each end one line.
        self.line += text.count("\n") + text.count("\r") - text.count("\r\n")


class Dirt:
    """Where the quirks and faults of one file go. Disabled (clean output) it changes nothing."""

    def __init__(self, manifest: SynthManifest, out: SynthFile, rng: random.Random, *,
                 enabled: bool, rows: int, faults: tuple[str, ...] = ()):
        self.enabled = enabled
        self._manifest = manifest
        self._out = out
        self._rng = rng
        # Faults at fixed, spread-out rows so each appears exactly once whatever the count.
        planned = faults if enabled else ()
        self._fault_rows: dict[int, list[str]] = {}
        for k, kind in enumerate(planned):
            self._fault_rows.setdefault((k + 1) * max(rows, 1) // (len(planned) + 1), []).append(kind)

    def faults_at(self, row_index: int) -> list[str]:
        return self._fault_rows.pop(row_index, [])

    def remaining(self) -> list[str]:
        """Faults planned past the last row (the row estimate was high): the writer puts them last."""
        kinds = [kind for row in sorted(self._fault_rows) for kind in self._fault_rows[row]]
        self._fault_rows.clear()
        return kinds

    def fault(self, kind: str, line: int, detail: str = "") -> None:
        """Log a fault just written at `line` (the file's latest record)."""
        self._manifest.inject(self._out.name, line, kind, "quarantine", detail, record=self._out.records)

    def quirk(self, kind: str, detail: str = "") -> None:
        """Log a quirk in the record about to be written."""
        self._manifest.inject(self._out.name, self._out.line, kind, "import", detail,
                              record=self._out.records + 1)

    def chance(self, rate: float = QUIRK_RATE) -> bool:
        return self.enabled and self._rng.random() < rate

    # -- field formatters: the clean form, or now and then one of the forms real extracts use --

    def format_date(self, value: date, clean: str = "%Y-%m-%d") -> str:
        if not self.chance(0.3):
            return value.strftime(clean)
        style = self._rng.randrange(3)
        if style == 0:
            self.quirk("date-dd/mm/yyyy")
            return value.strftime("%d/%m/%Y")
        if style == 1:
            self.quirk("date-yyyy-mm-dd")
            return value.isoformat()
        self.quirk("date-with-time", "a date column exported as midnight")
        return value.strftime("%d/%m/%Y 00:00")

    def format_datetime(self, value: datetime) -> str:
        if not self.chance(0.3):
            return value.strftime("%Y-%m-%d %H:%M")
        if self._rng.random() < 0.5:
            self.quirk("date-with-time", "DD/MM/YYYY HH:MM:SS")
            return value.strftime("%d/%m/%Y %H:%M:%S")
        self.quirk("date-yyyy-mm-dd", "ISO with T")
        return value.strftime("%Y-%m-%dT%H:%M:%S")

    def nhs_number(self, value: str) -> str:
        if value and self.chance(0.2):
            self.quirk("nhs-number-spaces")
            return f"{value[:3]} {value[3:6]} {value[6:]}"
        return value

    def text(self, value: str) -> str:
        if value and self.chance():
            self.quirk("trailing-spaces")
            return value + "   "
        return value

    def rating(self, value: int | None) -> str:
        """A DIALOG rating 1-7; not answered is blank, or 8 in extracts that code it."""
        if value is not None:
            return str(value)
        if self.enabled and self._rng.random() < 0.5:
            self.quirk("not-answered-8")
            return "8"
        if self.enabled:
            self.quirk("not-answered-blank")
        return ""

    def help(self, wanted: bool | None, clean: tuple[str, str], *, ones_and_zeros: bool = True) -> str:
        """More help wanted: the source's own (yes, no) codes, or another spelling real files use.

        Sources whose own codes are 2/1 (the DIALOG+ app) never get 1/0: there 1 means no.
        """
        if wanted is None:
            return ""
        if not self.chance(0.2):
            return clean[0] if wanted else clean[1]
        variants = [("help-y/n", "Y", "N"), ("help-yes/no", "Yes", "No")]
        if ones_and_zeros:
            variants.append(("help-1/0", "1", "0"))
        kind, yes, no = self._rng.choice(variants)
        self.quirk(kind)
        return yes if wanted else no

    def free_text(self, parts: list[str], separator: str = "; ") -> str:
        """Joined free text; dirty files sometimes break it over lines inside the quoted field."""
        if len(parts) > 1 and self.chance(0.2):
            self.quirk("quoted-newline")
            return (separator.rstrip() + "\n").join(parts)
        return separator.join(parts)


def bad_nhs_number(valid: str, rng: random.Random) -> str:
    """A 999-range number whose check digit is wrong (what a mistyped digit gives)."""
    body = valid[:9] if valid else f"999{rng.randrange(10 ** 6):06d}"
    good = nhs_number_check_digit(body)  # None (check digit 10): every last digit is wrong
    wrong = rng.choice([d for d in range(10) if d != good])
    return f"{body}{wrong}"
