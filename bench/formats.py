"""Benchmark: the source codecs.

  1. CSV: a generated 1,000,000-row RiO-like DIALOG assessment extract (CRLF, Windows-1252, quoted
     fields) read with read_csv; rows/s next to the floor (the bare csv module over the same file)
     and peak RSS, which must not grow with the file (the CSV part runs first so the figure is its own).
  2. HL7 v2: the same DIALOG ORU^R01 (22 OBX: 11 ratings, 11 help-wanted answers) parsed N times with
     python-hl7 (through parse_message, checks included) and with hl7apy's parser; msgs/s and the ratio.

    python bench/formats.py [CSV_ROWS] [HL7_MESSAGES]      (defaults 1000000 and 10000)
"""
from __future__ import annotations

import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

from hl7apy.parser import parse_message as hl7apy_parse

from fhir_bridge.formats.csv_reader import read_csv
from fhir_bridge.formats.hl7v2 import parse_message, segments

SNOMED_ITEMS = ["1037651000000100", "1037661000000102", "1037671000000109", "1037681000000106",
                "1037691000000108", "1037701000000108", "1037711000000105", "1037721000000104",
                "1037731000000102", "1037741000000106", "1037751000000109"]
HEADER = (["assessment_id", "client_id", "referral_id", "completed", "staff_id", "purpose", "timepoint"]
          + [f"item_{i}" for i in range(1, 12)] + [f"help_{i}" for i in range(1, 12)] + ["comment"])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def write_extract(path: Path, rows: int) -> None:
    with path.open("w", encoding="cp1252", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        for n in range(rows):
            ratings = [str((n + i) % 7 + 1) for i in range(11)]
            helps = ["Y" if (n + i) % 3 == 0 else "N" for i in range(11)]
            writer.writerow([f"DLG{n:07d}", f"RX{n % 50_000:06d}", f"REF{n % 80_000:06d}",
                             f"{n % 28 + 1:02d}/03/2024 10:{n % 60:02d}", f"C{n % 300}", "PROM", "review",
                             *ratings, *helps, "Café, £5 bus fare" if n % 10 == 0 else ""])


def bench_csv(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dialog.csv"
        write_extract(path, rows)
        size_mb = path.stat().st_size / 1e6
        rss_before = peak_rss_mb()

        started = time.perf_counter()
        with path.open(newline="", encoding="cp1252") as f:
            floor_count = sum(1 for _ in csv.reader(f)) - 1
        floor = time.perf_counter() - started

        started = time.perf_counter()
        count = problems = 0
        for row in read_csv(path):
            count += 1
            problems += row.problem is not None
        took = time.perf_counter() - started
    assert count == floor_count == rows and problems == 0
    print(f"CSV  {rows:,} rows ({size_mb:.0f} MB, cp1252, CRLF): read_csv {rows / took:,.0f} rows/s "
          f"({took:.1f} s); floor csv.reader {rows / floor:,.0f} rows/s; "
          f"peak RSS {peak_rss_mb():.0f} MB (before reading {rss_before:.0f} MB)")


def oru(n: int) -> str:
    segs = [
        f"MSH|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305160000||ORU^R01^ORU_R01|ORU{n:07d}|P|2.4",
        "PID|1||9434765919^^^NHS^NH~RX123456^^^RAT^MR||SMITH^Anne^Marie^^Ms||19800214|F|||"
        "12 Acacia Avenue^^London^^E1 1AA^GBR^H",
        "PV1|1|O|CMHT-HACKNEY",
        "OBR|1|DLG-2024-0042||DIALOG^DIALOG assessment^L|||20240305153000|||||||||C123^JONES^Peter",
    ]
    for i, code in enumerate(SNOMED_ITEMS):
        segs.append(f"OBX|{2 * i + 1}|NM|{code}^DIALOG item {i + 1}^SCT||{i % 7 + 1}|score^^L|||||F|||20240305153000")
        segs.append(f"OBX|{2 * i + 2}|CE|help-{i + 1}^More help wanted^L||Y^Yes^HL70136||||||F|||20240305153000")
    return "\r".join(segs)


def bench_hl7(count: int) -> None:
    messages = [oru(n) for n in range(count)]

    started = time.perf_counter()
    for text in messages:
        assert len(segments(parse_message(text), "OBX")) == 22
    fast = count / (time.perf_counter() - started)

    started = time.perf_counter()
    for text in messages:
        assert hl7apy_parse(text).msh.msh_10.value.startswith("ORU")
    slow = count / (time.perf_counter() - started)

    print(f"HL7  {count:,} ORU^R01 (22 OBX): python-hl7 {fast:,.0f} msgs/s ({1000 / fast:.2f} ms/msg); "
          f"hl7apy {slow:,.0f} msgs/s ({1000 / slow:.2f} ms/msg); python-hl7 is {fast / slow:.1f}x faster")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    messages = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    bench_csv(rows)
    bench_hl7(messages)


if __name__ == "__main__":
    main()
