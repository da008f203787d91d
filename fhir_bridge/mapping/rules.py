"""The mapping vocabulary as small immutable dataclasses, built by the loader and run by the engine.

A mapping file is data (habit 1): these classes hold what the loader resolved, so the engine never
looks anything up by name while mapping a record.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_bridge.mapping.transforms import Transform

# `{name}` placeholders in `from` paths and `const` strings, filled from the enclosing `each` element.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w-]*)\}")

APPEND = -1  # a `to` segment written `name[]`: add a new element to the array


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    index: int | None = None  # None: a plain field; APPEND: a new array element; n >= 0: element n


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rule writes, relative to the object being built. `.` (no segments) is that object."""

    text: str
    segments: tuple[Segment, ...]

    @property
    def is_self(self) -> bool:
        return not self.segments


@dataclass(frozen=True, slots=True)
class ValueSource:
    """Exactly one of: a source path (alternatives tried in order), a constant, a caller parameter,
    a reference to another resource made from the same record (`ref`), or a reference to a resource
    made from ANOTHER record, by its type and business identifiers (`ref_type` and `ref_keys`)."""

    paths: tuple[str, ...] = ()
    const: Any = None
    param: str | None = None
    ref: str | None = None
    ref_type: str | None = None
    ref_keys: tuple["Rule", ...] = ()  # as a ResourceSpec's id_keys: the same keys give the same id


@dataclass(frozen=True, slots=True)
class CodeTable:
    """A local table (source code -> Coding) or a ConceptMap in terminology/.

    `source_system` is the system the incoming codes belong to: needed to ask a ConceptMap, and kept
    on the Coding when a code cannot be mapped, so the original is never lost (habit 2)."""

    name: str
    system: str | None = None
    codings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    conceptmap: str | None = None
    source_system: str | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    source: ValueSource
    equals: tuple[str, ...] | None = None  # `equals: v` and `in: [..]` both end up here
    present: bool = True


@dataclass(frozen=True, slots=True)
class Each:
    """Iterate a repeating source structure (`each: {from: path}`): its elements become the record
    the nested rules read. (`each: <list>` over a list in the mapping is unrolled by the loader.)"""

    path: str


@dataclass(frozen=True, slots=True)
class Rule:
    where: str                      # the rule path in its file, e.g. "resources.response.rules[3] (authored)"
    to: Target
    source: ValueSource | None = None
    transforms: tuple[Transform, ...] = ()
    codes: CodeTable | None = None
    when: Condition | None = None
    each: Each | None = None
    use: tuple["Rule", ...] | None = None  # the named block's rules, resolved at load
    required: bool = False


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    name: str
    type: str
    id_keys: tuple[Rule, ...]       # business identifiers: rules whose values make the uuid5
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class SourceMapping:
    """One mapping file: the resources one source record becomes."""

    name: str
    file: str
    parameters: tuple[str, ...]
    resources: tuple[ResourceSpec, ...]
    # The file's `lists`, as loaded: an adapter that needs the same table (which column holds which
    # DIALOG domain) reads it here rather than from the file again.
    lists: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    # Source fields every record must have (blank or not): a column renamed or missing in an
    # extract would otherwise lose its values without a word.
    required_fields: tuple[str, ...] = ()
    # Source fields that name a record in its source (an assessment id ...): a record fixed at the
    # source and imported again closes the quarantine entries it left (pipelines/ingest.py).
    record_key: tuple[str, ...] = ()

    def key_of(self, record: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> str | None:
        """The record's key: this mapping's name, its parameters' values (the organisation whose
        export it is: two trusts' RiO ids are not one record) and its key fields, compared without
        case or outer spaces; None when the mapping names none or a key field is blank."""
        if not self.record_key:
            return None
        values = [str(record.get(f) or "").strip().casefold() for f in self.record_key]
        scope = [str((params or {}).get(p) or "") for p in self.parameters]
        return "|".join([self.name, *scope, *values]) if all(values) else None
