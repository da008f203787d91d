"""Per-run mapping counts: how many records mapped cleanly, which problems stopped the others
(by rule and issue code, so one broken column shows as one line, not ten thousand), and which
source fields no rule carries."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fhir_bridge.mapping.engine import MappingResult


@dataclass(slots=True)
class MappingReport:
    records: int = 0
    mapped: int = 0                       # no error: ready to validate and store
    failed: int = 0                       # at least one error: the caller quarantines the record
    problems: Counter[str] = field(default_factory=Counter)  # "severity code rule (field)" -> records
    unmapped: Counter[str] = field(default_factory=Counter)  # source field -> records carrying it

    def add(self, result: MappingResult) -> None:
        self.records += 1
        if result.ok:
            self.mapped += 1
        else:
            self.failed += 1
        # Counted once per record: "12 records had a bad Friendships Rank", not 12 x issues.
        for reason in {_reason(p.severity, p.code, p.rule, p.source) for p in result.problems}:
            self.problems[reason] += 1
        self.unmapped.update(result.unmapped)

    def to_dict(self) -> dict:
        return {
            "records": self.records,
            "mapped": self.mapped,
            "failed": self.failed,
            "problems": dict(self.problems.most_common()),
            "unmapped": dict(self.unmapped.most_common()),
        }


def _reason(severity: str, code: str, rule: str, source: str | None) -> str:
    return f"{severity} {code} {rule}" + (f" ({source})" if source else "")
