"""The data quality report that goes with every submission file (JSON and HTML).

Per table: rows sent and records left out. Per field, as MHSDS data quality measures it:
completeness (rows carrying a value) and validity (values that passed the field's XSD type and
checks; an optional value that did not is blanked and counted here). NHS number and status are
also checked against each other. Every record left out is listed with its reason; the list is
spooled to a file as it grows and streamed into the JSON, so memory stays flat. And the process
measures seed 000 names: DIALOGs submitted, people with a DIALOG at T1 and at T2, people with an
agreed care plan, people with a named key worker.
"""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fhir_bridge.submission.assembly import PersonRows
from fhir_bridge.submission.rows import LeftOut, Row
from fhir_bridge.submission.xsd import SubmissionSchema

__all__ = ["Quality", "HTML_LIST_LIMIT"]

HTML_LIST_LIMIT = 500   # records left out listed in the HTML page; the JSON lists them all
_PERSON_TABLE = "MHS001MPI"
_NHS_VERIFIED = ("01", "02")      # a number is present (verified, or not yet traced)
_NHS_ABSENT = "07"                # no number, and no trace required


@dataclass
class _FieldStats:
    required: bool
    present: int = 0
    invalid: int = 0


@dataclass
class _TableStats:
    rows: int = 0
    left_out: int = 0
    fields: dict[str, _FieldStats] = field(default_factory=dict)


class Quality:
    def __init__(self, schema: SubmissionSchema, spool: Path):
        self.schema = schema
        self.tables = {t.name: _TableStats(fields={f.name: _FieldStats(f.required) for f in t.fields})
                       for t in schema.tables}
        self.reasons: Counter[tuple[str, str]] = Counter()
        self.spool_path = spool
        self._spool = open(spool, "wb")
        self.people = self.dialogs = self.t1 = self.t2 = self.agreed = self.key_worker = self.not_answered = 0
        self.nhs = Counter()      # NHS number / status consistency findings
        self._positions = {t.name: t.field_names for t in schema.tables}

    def add_rows(self, table: str, rows: list[Row]) -> None:
        stats = self.tables[table]
        names = self._positions[table]
        stats.rows += len(rows)
        for row in rows:
            for name, value in zip(names, row.values):
                if value:
                    stats.fields[name].present += 1
            for name in row.invalid:
                stats.fields[name].invalid += 1
            if table == _PERSON_TABLE:
                self._nhs_consistency(dict(zip(names, row.values)))

    def add_person(self, person: PersonRows) -> None:
        for table, rows in person.rows.items():
            self.add_rows(table, rows)
        for left in person.left_out:
            self.add_left_out(left)
        if person.submitted:
            self.people += 1
            self.dialogs += person.dialogs_submitted
            self.not_answered += person.items_not_answered
            self.t1 += person.with_t1
            self.t2 += person.with_t2
            self.agreed += person.with_agreed_plan
            self.key_worker += person.with_key_worker

    def add_left_out(self, left: LeftOut) -> None:
        if left.table in self.tables:
            self.tables[left.table].left_out += 1
        self.reasons[left.table, left.reason] += 1
        self._spool.write(orjson.dumps({"table": left.table, "record": left.record, "person": left.person,
                                        "reason": left.reason, "detail": left.detail}) + b"\n")

    def _nhs_consistency(self, row: dict[str, str]) -> None:
        number, status = row.get("NHSNumber"), row.get("NHSNumberStatus")
        if number and not status:
            self.nhs["number without a status"] += 1
        elif number and status == _NHS_ABSENT:
            self.nhs[f"number with status {_NHS_ABSENT} (not present)"] += 1
        elif not number and status in _NHS_VERIFIED:
            self.nhs[f"status {status} (number present) without a valid number"] += 1

    def close(self) -> None:
        """Done adding: the spool file is complete (reports read it; closing twice is harmless)."""
        self._spool.close()

    @property
    def left_out_total(self) -> int:
        return sum(self.reasons.values())

    # -- the report ------------------------------------------------------------------------------
    def summary(self) -> dict:
        tables = {}
        for name, stats in self.tables.items():
            fields = {}
            for field_name, f in stats.fields.items():
                seen = f.present + f.invalid
                fields[field_name] = {
                    "required": f.required, "complete": f.present, "invalid": f.invalid,
                    "completeness": round(f.present / stats.rows, 4) if stats.rows else None,
                    "validity": round(f.present / seen, 4) if seen else None}
            tables[name] = {"rows": stats.rows, "leftOut": stats.left_out, "fields": fields}
        return {
            "tables": tables,
            "nhsNumberConsistency": dict(self.nhs),
            "processMeasures": {
                "people": self.people, "dialogsSubmitted": self.dialogs,
                "peopleWithDialogAtT1": self.t1, "peopleWithDialogAtT2": self.t2,
                "peopleWithAgreedCarePlan": self.agreed, "peopleWithNamedKeyWorker": self.key_worker,
                "itemsNotAnsweredLeftOut": self.not_answered},
            "leftOut": {"count": self.left_out_total,
                        "byReason": [{"table": t, "reason": r, "count": n}
                                     for (t, r), n in sorted(self.reasons.items(), key=lambda kv: (kv[0][0], -kv[1]))]},
        }

    def write_json(self, path: Path, submission: dict) -> None:
        """The report; the full list of records left out is streamed from the spool file."""
        self.close()
        report = {"submission": submission, **self.summary()}
        left_out = report.pop("leftOut")
        with open(path, "wb") as out, open(self.spool_path, "rb") as spool:
            out.write(b"{\n")
            for key, value in report.items():
                out.write(b'"' + key.encode() + b'": ' + orjson.dumps(value, option=orjson.OPT_INDENT_2) + b",\n")
            out.write(b'"leftOut": {"count": ' + str(left_out["count"]).encode() + b', "byReason": '
                      + orjson.dumps(left_out["byReason"], option=orjson.OPT_INDENT_2) + b', "records": [')
            for number, line in enumerate(spool):
                out.write((b"\n" if number == 0 else b",\n") + line.rstrip(b"\n"))
            out.write(b"\n]}\n}\n")

    def write_html(self, path: Path, submission: dict) -> None:
        self.close()
        summary = self.summary()
        e = html.escape
        parts = [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            f"<title>MHSDS data quality: {e(submission['provider'])} {e(submission['period'])}</title>",
            "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
            "td.n{text-align:right}.bad{background:#fde8e8}.ok{background:#e8f6e8}</style></head><body>",
            f"<h1>MHSDS data quality report: {e(submission['provider'])}, {e(submission['period'])}</h1>",
            f"<p>File <code>{e(submission['file'])}</code>, valid against <code>{e(submission['schema'])}</code>; "
            f"made {e(submission['created'])} by {e(submission['createdBy'])}.</p>",
            "<h2>Process measures</h2><table>",
        ]
        labels = {"people": "People in the submission", "dialogsSubmitted": "DIALOGs submitted",
                  "peopleWithDialogAtT1": "People with a DIALOG at T1 (assessment)",
                  "peopleWithDialogAtT2": "People with a DIALOG at T2 (review or discharge)",
                  "peopleWithAgreedCarePlan": "People with an agreed care plan (type 10 with an agreement)",
                  "peopleWithNamedKeyWorker": "People with a named key worker",
                  "itemsNotAnsweredLeftOut": "DIALOG items answered 8 (not applicable), left out"}
        for key, value in summary["processMeasures"].items():
            parts.append(f"<tr><th>{e(labels[key])}</th><td class='n'>{value}</td></tr>")
        parts.append("</table><h2>Tables</h2><table><tr><th>table</th><th>rows</th><th>records left out</th></tr>")
        for name, table in summary["tables"].items():
            parts.append(f"<tr><td>{e(name)}</td><td class='n'>{table['rows']}</td><td class='n'>{table['leftOut']}</td></tr>")
        parts.append("</table><h2>Fields: completeness and validity</h2>")
        for name, table in summary["tables"].items():
            if not table["rows"]:
                continue
            parts.append(f"<h3>{e(name)}</h3><table><tr><th>field</th><th>required</th><th>complete</th>"
                         "<th>completeness</th><th>invalid (not sent)</th><th>validity</th></tr>")
            for field_name, f in table["fields"].items():
                bad = f["invalid"] or (f["completeness"] is not None and f["completeness"] < 1 and f["required"])
                parts.append(f"<tr class='{'bad' if bad else ''}'><td>{e(field_name)}</td><td>{'yes' if f['required'] else ''}</td>"
                             f"<td class='n'>{f['complete']}</td><td class='n'>{_percent(f['completeness'])}</td>"
                             f"<td class='n'>{f['invalid']}</td><td class='n'>{_percent(f['validity'])}</td></tr>")
            parts.append("</table>")
        if summary["nhsNumberConsistency"]:
            parts.append("<h3>NHS number and status</h3><table>")
            for finding, n in summary["nhsNumberConsistency"].items():
                parts.append(f"<tr><td>{e(finding)}</td><td class='n'>{n}</td></tr>")
            parts.append("</table>")
        parts.append(f"<h2>Records left out ({summary['leftOut']['count']})</h2><table>"
                     "<tr><th>table</th><th>reason</th><th>records</th></tr>")
        for item in summary["leftOut"]["byReason"]:
            parts.append(f"<tr><td>{e(item['table'])}</td><td>{e(item['reason'])}</td><td class='n'>{item['count']}</td></tr>")
        parts.append("</table>")
        if summary["leftOut"]["count"]:
            shown = min(summary["leftOut"]["count"], HTML_LIST_LIMIT)
            parts.append(f"<p>The first {shown} (every one is in the JSON report):</p><table>"
                         "<tr><th>table</th><th>record</th><th>person</th><th>reason</th><th>detail</th></tr>")
            with open(self.spool_path, "rb") as spool:
                for number, line in enumerate(spool):
                    if number >= HTML_LIST_LIMIT:
                        break
                    item = orjson.loads(line)
                    parts.append("<tr>" + "".join(f"<td>{e(str(item[k]))}</td>"
                                                  for k in ("table", "record", "person", "reason", "detail")) + "</tr>")
            parts.append("</table>")
        parts.append("</body></html>\n")
        path.write_text("".join(parts), encoding="utf-8")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
