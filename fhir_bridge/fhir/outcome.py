"""Validation issues and the FHIR OperationOutcome they become."""
from __future__ import annotations

from dataclasses import dataclass

SEVERITY_ORDER = {"fatal": 0, "error": 1, "warning": 2, "information": 3}


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str    # fatal | error | warning | information
    code: str        # http://hl7.org/fhir/issue-type
    message: str
    expression: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def to_fhir(self) -> dict:
        issue = {"severity": self.severity, "code": self.code, "diagnostics": self.message}
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


def sort_issues(issues: list[Issue]) -> list[Issue]:
    """Most severe first, then in document order of appearance (stable)."""
    return sorted(dict.fromkeys(issues), key=lambda i: SEVERITY_ORDER.get(i.severity, 9))


def operation_outcome(issues: list[Issue]) -> dict:
    """An OperationOutcome needs at least one issue: a clean result says so explicitly."""
    if not issues:
        issues = [Issue("information", "informational", "No issues detected during validation")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in sort_issues(issues)]}


def issues_from_outcome(outcome: dict) -> list[Issue]:
    return [
        Issue(i["severity"], i["code"], i.get("diagnostics") or i.get("details", {}).get("text", ""),
              (i.get("expression") or [None])[0])
        for i in outcome.get("issue", [])
    ]
