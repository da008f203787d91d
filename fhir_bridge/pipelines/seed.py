"""Seeding an empty store with the project's valid examples (`fhir-bridge serve --seed-examples`).

Examples follow a naming convention the demo shares: `invalid-*` files (or resources whose id
starts with `invalid`) are meant to fail validation and are never stored. Every example read is
accounted for in the `SeedReport`: stored, or skipped with a reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_bridge.errors import BridgeError
from fhir_bridge.fhir.reading import Record, read_records
from fhir_bridge.pipelines.resources import SYSTEM_CALLER

if TYPE_CHECKING:
    from fhir_bridge.bridge import Bridge

__all__ = ["SEED_ORDER", "SeedReport", "example_name", "expected_invalid", "seed_examples"]

SEED_ORDER = ("Patient", "QuestionnaireResponse", "Observation", "CarePlan")  # referenced before referring


@dataclass
class SeedReport:
    """`held` > 0: the database was not empty and nothing was seeded. Otherwise the examples
    stored and those skipped, by name relative to the examples folder, in the order tried."""
    held: int = 0
    stored: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (example, reason)


def seed_examples(bridge: Bridge, examples_dir: Path, served_types: frozenset[str]) -> SeedReport:
    """Store the valid examples of the `served_types` under their own ids (their references name
    each other), only into an empty database so a restart never brings back what users changed
    or deleted."""
    held = bridge.repository.count()
    if held:
        return SeedReport(held=held)
    paths = sorted(str(p) for p in examples_dir.rglob("*") if p.suffix in (".json", ".ndjson")
                   and not p.name.endswith(".expected.json"))
    records = [r for r in read_records(paths, bridge.validator.model)
               if r.error is None and not expected_invalid(r)]
    rank = {rtype: i for i, rtype in enumerate(SEED_ORDER)}
    # a plan part of another (a crisis plan) after the plans: it must name its person's stored plan
    records.sort(key=lambda r: (rank.get(r.resource.get("resourceType"), len(rank)), bool(r.resource.get("partOf"))))
    report = SeedReport()
    for record in records:
        resource, name = record.resource, example_name(record.label, examples_dir)
        if resource.get("resourceType") not in served_types:
            report.skipped.append((name, f"a {resource.get('resourceType')} is not stored "
                                         "(a transaction Bundle is POSTed to the base URL)"))
            continue
        try:
            bridge.resources.update(resource.get("resourceType"), resource.get("id"), resource, SYSTEM_CALLER)
            report.stored.append(name)
        except BridgeError as exc:
            report.skipped.append((name, exc.message))
    return report


def example_name(label: str, root: Path) -> str:
    """examples/x/y.json:3 -> x/y.json:3 (an NDJSON line keeps its number)."""
    path, _, line = label.partition(".ndjson:")
    path = path + ".ndjson" if line else label
    rel = str(Path(path).relative_to(root))
    return f"{rel}:{line}" if line else rel


def expected_invalid(record: Record) -> bool:
    """Invalid examples are named invalid-*; inside a multi-resource file, by resource id."""
    file_name = Path(record.label.split(".ndjson:")[0]).name
    return file_name.startswith("invalid") or str(record.resource.get("id", "")).startswith("invalid")
