"""Compiled validation nodes: the base spec turned, once, into plain objects the walker reads.

A `Node` describes one complex element (a resource, a datatype, or a backbone element): which
JSON keys may appear (`Rule`s), which are required, and which invariants run on it. Profiles are
applied by copy-on-write (profiles.py), so the base nodes stay shared between all profiles.
"""
from __future__ import annotations

from copy import copy
from dataclasses import dataclass
from typing import Callable

from fhir_bridge.fhir.model import Binding, Constraint, StructureModel

MISSING = object()
EXTENSION_KEYS = frozenset({"extension", "modifierExtension"})


@dataclass(slots=True)
class Invariant:
    """A FHIRPath invariant compiled once; `evaluate` is None when the engine could not compile it."""

    key: str
    severity: str
    human: str
    expression: str
    evaluate: Callable | None
    source: str  # the profile or base type that declared it
    # (keys, prefixes): it holds on an object with none of the keys and no key starting with a
    # prefix, so the walker skips it there (CompiledExpression.absence_guard)
    guard: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    # True when the invariant surely holds on an object, asked before evaluating (sure_invariants.py)
    sure: Callable[[dict], bool] | None = None
    # False when its verdict may depend on more than the focus (%resource, resolve() ...): an
    # element it was evaluated on is not remembered as clean by content (walker.py)
    local: bool = False


class Rule:
    """What may sit under one JSON key (`valueCoding`, `item`, `_birthDate`'s base ...)."""

    __slots__ = ("key", "name", "expr_name", "min", "max", "repeats", "type_code", "kind", "check",
                 "node", "binding", "fixed", "pattern", "invariants", "slices", "slice_name",
                 "matcher", "selector", "target_types", "is_extension", "profile_node", "owner", "plain", "fast",
                 "passed")

    def __init__(self, key: str, name: str, expr_name: str, min_: int, max_: int | None, type_code: str, kind: str):
        self.key = key
        self.name = name                # element name in the definition: value[x], item
        self.expr_name = expr_name      # as written in a FHIRPath: value.ofType(Coding), item
        self.min = min_
        self.max = max_
        self.repeats = max_ is None or max_ > 1
        self.type_code = type_code
        self.kind = kind                # object | resource | boolean | integer | decimal | string
        self.check = None               # primitive check
        self.node: Node | None = None   # for objects
        self.binding: Binding | None = None
        self.fixed = MISSING
        self.pattern = MISSING
        self.invariants: tuple[Invariant, ...] = ()
        self.slices: tuple[Rule, ...] = ()
        self.slice_name: str | None = None
        self.matcher: Callable[[object], bool] | None = None
        self.selector: str | None = None  # FHIRPath that selects a slice, for messages
        self.target_types: frozenset[str] | None = None  # Reference targets; None = any
        self.is_extension = key in EXTENSION_KEYS
        self.profile_node: Node | None = None  # an extension slice validated by its definition
        self.owner: object = None  # the profile compilation that may edit this rule in place
        self.plain = True          # a primitive with nothing to check beyond its type: see settle()
        self.fast = False          # plain and primitive: the walker runs its check inline
        # strings this primitive rule's invariants all held on, reading nothing else (walker.py):
        # a DIALOG response's questionnaire and status are one of a few values, checked once
        self.passed: set[str] = set()

    def clone(self) -> "Rule":
        twin = copy(self)
        twin.passed = set()  # a profile's copy may have other invariants
        return twin

    def settle(self) -> None:
        """Recompute the fast-path flag after the rule's constraints changed."""
        self.plain = (self.binding is None or self.type_code != "code") and self.fixed is MISSING \
            and self.pattern is MISSING and not self.invariants
        self.fast = self.plain and self.check is not None
        self.passed = set()


class Node:
    __slots__ = ("type_name", "path", "rules", "required", "required_keys", "required_choices", "sliced", "invariants",
                 "disallowed", "is_resource", "is_coding", "is_codeable_concept", "owner", "memo", "memo_tries",
                 "memo_misses")

    def __init__(self, type_name: str, path: str):
        self.type_name = type_name
        self.path = path
        self.rules: dict[str, Rule] = {}
        self.required: tuple[tuple[str, tuple[str, ...], int], ...] = ()
        # the happy path of `required`: keys that must all be present, and the entries that
        # any of several keys satisfies (choices); see recompute_required()
        self.required_keys: frozenset[str] = frozenset()
        self.required_choices: tuple[tuple[str, tuple[str, ...], int], ...] = ()
        self.sliced: tuple[Rule, ...] = ()  # rules whose slices have minimums to check
        self.invariants: tuple[Invariant, ...] = ()
        self.disallowed: dict[str, tuple[str, str, str]] = {}  # key -> (message, expr name, element name)
        self.is_resource = False
        self.is_coding = type_name == "Coding" and path == "Coding"
        self.is_codeable_concept = type_name == "CodeableConcept" and path == "CodeableConcept"
        self.owner: object = None  # the profile compilation that may edit this node in place
        # Contents (their JSON) already found clean here, whose verdict depended on the content
        # alone (walker.py): a DIALOG response's 22 items, and the Codings in them, are each one
        # of a few hundred, checked once. None for a resource (never the same twice), or once the
        # contents met proved too varied to be worth remembering.
        self.memo: set[bytes] | None = None
        self.memo_tries = self.memo_misses = 0  # lookups since the memo was last judged (walker.py)

    def clone(self, owner: object) -> "Node":
        twin = copy(self)
        twin.rules = dict(self.rules)
        twin.disallowed = dict(self.disallowed)
        twin.owner = owner
        twin.memo = None if twin.is_resource else set()  # what passed the base node may fail the profile
        twin.memo_tries = twin.memo_misses = 0
        return twin

    def recompute_required(self) -> None:
        for rule in self.rules.values():
            rule.settle()
            for s in rule.slices:
                s.settle()
        by_name: dict[str, tuple[list[str], int]] = {}
        for rule in self.rules.values():
            if rule.min > 0:
                keys, _ = by_name.setdefault(rule.name, ([], rule.min))
                keys.append(rule.key)
        for key, (_, _, name) in self.disallowed.items():
            if name in by_name:  # present in a type the profile forbids: reported as that, not as missing
                by_name[name][0].append(key)
        self.required = tuple((name.replace("[x]", ""), tuple(keys), m) for name, (keys, m) in by_name.items())
        self.required_keys = frozenset(keys[0] for _, keys, _ in self.required if len(keys) == 1)
        self.required_choices = tuple(r for r in self.required if len(r[1]) != 1)
        self.sliced = tuple(r for r in self.rules.values() if any(s.min > 0 or s.max is not None for s in r.slices))
        self.memo = None if self.is_resource else set()  # a changed node forgets what passed before
        self.memo_tries = self.memo_misses = 0


class BaseCompiler:
    """Turns the base structure model into Nodes, one per (type, path), cached."""

    def __init__(self, model: StructureModel, checks: dict, compile_invariant: Callable[[Constraint, str], Invariant | None]):
        self.model = model
        self.checks = checks
        self.compile_invariant = compile_invariant
        self._nodes: dict[tuple[str, str], Node] = {}

    def node(self, type_name: str, path: str | None = None) -> Node:
        path = path or type_name
        key = (type_name, path)
        node = self._nodes.get(key)
        if node is not None:
            return node
        node = Node(type_name, path)
        self._nodes[key] = node  # before filling: recursive types (Extension.extension, item.item)
        td = self.model.types[type_name]
        node.is_resource = td.is_resource and path == type_name
        element = td.elements.get(path)
        if element is not None:
            node.invariants = self._invariants(element.constraints, type_name)
        for key_, child in self.model.children(type_name, path).items():
            node.rules[key_] = self._rule(type_name, child)
        node.recompute_required()
        return node

    def _rule(self, type_name: str, child) -> Rule:
        el = child.element
        name = el.name
        expr_name = f"{name[:-3]}.ofType({child.type_code})" if child.choice else name
        code = child.type_code
        kind = self.model.json_kind(code)
        if code == "Resource" or code == "DomainResource":
            kind = "resource"
        rule = Rule(child.key, name, expr_name, el.min, el.max, code, kind)
        rule.binding = el.binding
        if kind == "object":
            child_type, child_path = (code, code) if child.choice else self.model.resolve_path(type_name, el)
            rule.node = self.node(child_type, child_path)
            own = {i.key for i in rule.node.invariants}
            # invariants written on the element itself (not inherited from its datatype)
            if child_type != type_name:
                rule.invariants = tuple(i for i in self._invariants(el.constraints, type_name) if i.key not in own)
        elif kind != "resource":
            rule.check = self.checks[code]
        if code == "Reference":
            targets = {p for t in el.types if t.code == "Reference" for p in t.target_profiles}
            rule.target_types = None if not targets or "Resource" in targets else frozenset(targets)
        return rule

    def _invariants(self, constraints, source: str) -> tuple[Invariant, ...]:
        out = []
        for c in constraints:
            inv = self.compile_invariant(c, source)
            if inv is not None:
                out.append(inv)
        return tuple(out)


def matches_pattern(value, pattern) -> bool:
    """FHIR pattern semantics: everything in the pattern is present in the value."""
    if type(pattern) is dict:
        return type(value) is dict and all(k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if type(pattern) is list:
        return type(value) is list and all(any(matches_pattern(v, p) for v in value) for p in pattern)
    return value == pattern
