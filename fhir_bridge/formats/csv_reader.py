"""Read CSV extracts as they really arrive from trusts, VCSE systems and the DIALOG+ app.

Streaming: rows are decoded, split and yielded one at a time, so a 1,000,000-row file needs no
more memory than a small one. The encoding is decided once per file from its first chunk (UTF-8,
with or without BOM, else Windows-1252, which is what Excel on an English Windows saves); the
delimiter is sniffed from the header line. A row whose field count does not match the header is
yielded with ``problem`` set, so the caller quarantines it and carries on; faults that make the
whole file unusable (not text, duplicate headers, empty) raise ``InputError`` naming the line.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from fhir_bridge.errors import InputError

__all__ = ["CsvRow", "read_csv", "read_csv_folder_or_zip", "DELIMITERS"]

DELIMITERS = (",", "\t", ";", "|")  # in order of preference when the header counts tie
_SNIFF_BYTES = 64 * 1024
# C0 controls other than TAB, LF and CR (and DEL) never occur in a text extract: their presence
# means a binary file, or a corrupt one, that must not be half-imported as text. Undecodable bytes are kept by the surrogateescape
# handler (U+DC80-U+DCFF) so that the error names their exact line: the text layer decodes
# kilobytes ahead of the line being read. One pattern for both keeps it to one search per line.
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\udc80-\udcff]")
_QUOTED = re.compile(r'"[^"]*"')


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int               # physical line (1-based) where the record starts
    values: dict[str, str]  # header -> value, both stripped of surrounding spaces
    raw: str                # the record as it appears in the file, without its final line break
    problem: str | None = None  # set for a ragged row: the caller quarantines it
    # The header record's raw text: with `raw`, a one-row CSV of this record alone (what a
    # quarantine retry reads again). The file's, not the row's, so not part of its value.
    header: str = field(default="", compare=False, repr=False)


def read_csv(
    source: bytes | BinaryIO | Path, *, encoding: str | None = None, delimiter: str | None = None
) -> Iterator[CsvRow]:
    """Yield the data rows of a CSV file; blank rows are skipped."""
    if isinstance(source, (bytes, bytearray)):
        yield from _read(io.BytesIO(source), encoding, delimiter, name="<bytes>")
    elif isinstance(source, Path):
        with source.open("rb") as stream:
            yield from _read(stream, encoding, delimiter, name=str(source))
    else:
        yield from _read(source, encoding, delimiter, name=getattr(source, "name", "<stream>"))


def _read(stream: BinaryIO, encoding: str | None, delimiter: str | None, name: str) -> Iterator[CsvRow]:
    head = _read_head(stream)
    if not head.strip(b" \t\r\n") or head.strip(b" \t\r\n") == codecs.BOM_UTF8:
        raise InputError("empty file", location=f"{name}:1")
    encoding = _detect_encoding(head, name) if encoding is None else encoding
    if codecs.lookup(encoding).name == "utf-8" and head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"  # told UTF-8: the BOM must still not end up in the first header
    text = io.TextIOWrapper(
        io.BufferedReader(_Replay(head, stream)), encoding=encoding, errors="surrogateescape", newline=""
    )
    lines = _Lines(text, name)
    header_line = lines.first_non_blank()
    if header_line is None:
        raise InputError("empty file", location=f"{name}:1")
    delimiter = delimiter or _sniff_delimiter(header_line)
    reader = csv.reader(lines.replay_first(header_line), delimiter=delimiter)
    try:
        header_start = lines.start
        header = [name.strip() for name in next(reader)]
        header_raw = lines.take_record()
        _check_header(header, f"{name}:{header_start}")
        width = len(header)
        lines.in_data = True
        for record in reader:
            start, raw = lines.start, lines.take_record()
            if lines.bad is not None:  # garbage inside the data: that record is flagged, the rest is read
                yield CsvRow(start, {}, raw, lines.take_bad(), header_raw)
                continue
            values = list(map(str.strip, record))  # map: about twice as fast as a comprehension here
            if not any(values):  # an empty line, or a spreadsheet row of empty cells: no data to lose
                continue
            problem = None if len(values) == width else f"expected {width} fields, found {len(values)}"
            yield CsvRow(start, dict(zip(header, values)), raw, problem, header_raw)
    except csv.Error as exc:
        # In practice a quote never closed, which swallows lines until the field size limit
        raise InputError(f"unreadable CSV: {exc}", location=f"{name}:{lines.start}") from exc


def _read_head(stream: BinaryIO) -> bytes:
    """The first chunk, however short the reads of a pipe or socket are."""
    parts, size = [], 0
    while size < _SNIFF_BYTES:
        part = stream.read(_SNIFF_BYTES - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _detect_encoding(head: bytes, name: str) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # Excel's "Unicode Text" export
    try:
        # final=False: the chunk may end inside a multi-byte character
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError as exc:
        line = head.count(b"\n", 0, exc.start) + 1
        raise InputError("not a text file: neither UTF-8 nor Windows-1252", location=f"{name}:{line}") from exc


def _sniff_delimiter(header_line: str) -> str:
    unquoted = _QUOTED.sub("", header_line)
    counts = [unquoted.count(d) for d in DELIMITERS]
    best = max(counts)
    return DELIMITERS[counts.index(best)] if best else ","  # one column: any delimiter will do


def _check_header(header: list[str], location: str) -> None:
    # A duplicate would make one column silently overwrite the other in every row's dict
    duplicates = sorted(name for name, count in Counter(header).items() if count > 1)
    if duplicates:
        raise InputError(f"duplicate column headers: {', '.join(map(repr, duplicates))}", location=location)


class _Lines:
    """Physical lines for csv.reader, keeping count and the text of the record being read.

    csv.reader pulls exactly the lines one record needs and no more, so after each record the
    lines collected since the previous one are that record's raw text and start line.
    """

    def __init__(self, text: io.TextIOWrapper, name: str) -> None:
        self._text, self._name = text, name
        self._number = 0       # physical lines read so far
        self.start = 1         # first line of the record being collected
        self._pending: list[str] = []
        self.in_data = False   # past the header: a bad line flags its record instead of ending the file
        self.bad: str | None = None  # why the record being collected is unreadable

    def first_non_blank(self) -> str | None:
        for line in self._iter():
            if line.strip():
                return line
            self.start = self._number + 1
            self._pending.clear()
        return None

    def replay_first(self, first: str) -> Iterator[str]:
        yield first
        yield from self._iter()

    def take_bad(self) -> str | None:
        reason, self.bad = self.bad, None
        return reason

    def take_record(self) -> str:
        raw = "".join(self._pending).rstrip("\r\n")
        self._pending.clear()
        self.start = self._number + 1
        return raw

    def _iter(self) -> Iterator[str]:
        while True:
            try:
                line = self._text.readline()
            except UnicodeDecodeError as exc:  # codecs that cannot escape (UTF-16 cut mid-character)
                raise InputError(f"undecodable bytes for {self._text.encoding}",
                                 location=f"{self._name}:{self._number + 1}") from exc
            if not line:
                return
            self._number += 1
            bad = _BAD_TEXT.search(line)
            if bad:
                reason = (f"undecodable bytes for {self._text.encoding} (the file mixes encodings)"
                          if bad.group() >= "\udc80" else "binary content (NUL or control characters)")
                if not self.in_data:
                    raise InputError(reason + ": not a CSV file", location=f"{self._name}:{self._number}")
                # Keep a readable copy for the quarantine and hand csv an empty line in its place
                self.bad = reason
                self._pending.append(_readable(line))
                yield "\n"
                continue
            self._pending.append(line)
            yield line


def _readable(line: str) -> str:
    """Undecodable bytes and control characters as \\xNN: safe to store, show and compare."""
    text = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.rstrip("\r\n")) + "\n"


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Replay(io.RawIOBase):
    """The stream again from its start, with the already-read first chunk served from memory
    (stdin and sockets cannot seek back)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


DEFAULT_MAX_MEMBER_BYTES = 1 << 30  # 1 GiB per file: a 1,000,000-row extract is ~100 MB
DEFAULT_MAX_TOTAL_BYTES = 4 << 30   # a zip bomb stops here, whatever its headers claim


def read_csv_folder_or_zip(
    path: Path,
    *,
    suffixes: tuple[str, ...] = (".csv",),
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    lazy: bool = False,
) -> Iterator[tuple[str, bytes | Path]]:
    """The CSV files of a folder (recursively), a zip file or a single file, as (name, bytes),
    in name order. Hidden files and macOS resource forks are skipped. `lazy`: files on disk come
    as their Path, which `read_csv` streams, so a 1,000,000-row extract is never held whole
    (zip members are read, within the size limits)."""
    path = Path(path)
    if path.is_dir():
        total = 0
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = file.relative_to(path).as_posix()
            if not _wanted(name, suffixes):
                continue
            size = file.stat().st_size
            total += size
            _check_size(name, size, total, max_member_bytes, max_total_bytes)
            yield name, file if lazy else file.read_bytes()
    elif zipfile.is_zipfile(path):
        yield from _read_zip(path, suffixes, max_member_bytes, max_total_bytes)
    elif path.is_file():
        yield path.name, path if lazy else path.read_bytes()
    else:
        raise InputError(f"no such file or folder: {path}", location=str(path))


def _read_zip(path: Path, suffixes: tuple[str, ...], max_member: int, max_total: int) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        members = sorted((m for m in archive.infolist() if not m.is_dir()), key=lambda m: m.filename)
        # Check every name before reading anything: a hostile archive is refused as a whole
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise InputError(f"zip member with an unsafe path refused: {member.filename!r}",
                                 location=f"{path}:{member.filename}")
        total = 0
        for member in members:
            if not _wanted(member.filename, suffixes):
                continue
            if member.flag_bits & 0x1:
                raise InputError("encrypted zip member", location=f"{path}:{member.filename}")
            total += member.file_size
            _check_size(member.filename, member.file_size, total, max_member, max_total)
            # The declared size may lie: read at most one byte past the limit and check again
            with archive.open(member) as stream:
                data = stream.read(max_member + 1)
            _check_size(member.filename, len(data), total - member.file_size + len(data), max_member, max_total)
            yield member.filename, data


def _wanted(name: str, suffixes: tuple[str, ...]) -> bool:
    parts = PurePosixPath(name).parts
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return name.lower().endswith(suffixes)


def _check_size(name: str, size: int, total: int, max_member: int, max_total: int) -> None:
    if size > max_member:
        raise InputError(f"{name} is larger than the {max_member} byte limit", location=name)
    if total > max_total:
        raise InputError(f"the files add up to more than the {max_total} byte limit", location=name)
