"""Walks a FHIR JSON resource against compiled nodes and collects issues. Never raises on input.

The hot path of the whole project: every write and every import goes through here, so it works
on plain dicts, keeps per-element work to a dictionary lookup and a type test, and only builds
messages when something is wrong.
"""
from __future__ import annotations

import re
from typing import Callable

from orjson import dumps

from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.terminology import Terminology
from fhir_bridge.validation.nodes import MISSING, Invariant, Node, Rule, matches_pattern

PROJECT_NAMESPACE = "https://fhir-bridge.example.org/"
# Per node: the contents remembered as clean, and the longest remembered (a large element is
# seldom met twice); at most 2 MB a node, a few hundred KB over a whole RiO import. Every
# MEMO_TRIAL lookups a memo that answered fewer than a quarter of them (identifiers, timestamps:
# a new value each time) is dropped for good: it only cost a dumps(). Every lookup is counted,
# hits too: in a DIALOG response's walk that is a few dozen increments.
MEMO_SIZE = 4096
MEMO_CONTENT_BYTES = 512
MEMO_TRIAL = 2048
TERMINOLOGY_MEMO_SIZE = 50_000  # value-set passes and reference types remembered: bounded, as in primitives.py
REFERENCE_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


class Context:
    __slots__ = ("issues", "resource", "root", "unevaluated", "beyond")

    def __init__(self, root: dict):
        self.issues: list[Issue] = []
        self.resource = root
        self.root = root
        self.unevaluated: set[str] = set()
        # counts verdicts that read more than their element (an invariant on %resource, one not
        # evaluated): an element whose walk saw one is not remembered as clean by its content
        self.beyond = 0

    def add(self, severity: str, code: str, message: str, expression: str | None) -> None:
        self.issues.append(Issue(severity, code, message, expression))


class Walker:
    def __init__(self, terminology: Terminology, extension_nodes: dict[str, Node],
                 resource_nodes: Callable[[dict], list[Node]], element_node: Node):
        self.terminology = terminology
        self.extension_nodes = extension_nodes  # extension definitions by url
        self.resource_nodes = resource_nodes    # nodes a (nested) resource is validated against
        self.element_node = element_node        # id + extension of a primitive (`_birthDate`)
        # Feeds repeat the same codes and references: what passed once passes again.
        self._in_valueset: set[tuple[str, str | None, str]] = set()  # (value set, system, code) that pass
        self._known_valuesets: dict[str, bool] = {}
        self._reference_types: dict[str, str | None] = {}  # reference -> the resource type it names

    # -- complex elements ----------------------------------------------------------------------
    def walk(self, obj: dict, node: Node, expr: str, ctx: Context) -> None:
        if not obj:
            ctx.add("error", "structure", "Element must have a value or children (empty object)", expr)
            return
        memo = node.memo
        if memo is None:
            self._walk(obj, node, expr, ctx)
            return
        # An element's verdict here depends on its content alone, unless an invariant read beyond
        # it (ctx.beyond): remembered by its JSON, which tells true from 1 and 1 from 1.0.
        try:
            content = dumps(obj)
        except TypeError:  # a value JSON cannot hold as it is (a Decimal ...): the long way
            self._walk(obj, node, expr, ctx)
            return
        node.memo_tries += 1
        if content in memo:
            return
        issues, beyond = len(ctx.issues), ctx.beyond
        self._walk(obj, node, expr, ctx)
        if len(ctx.issues) == issues and ctx.beyond == beyond and len(content) <= MEMO_CONTENT_BYTES \
                and len(memo) < MEMO_SIZE:
            memo.add(content)
        node.memo_misses += 1
        if node.memo_tries >= MEMO_TRIAL:
            if node.memo_misses * 4 > node.memo_tries * 3:
                node.memo = None
            node.memo_tries = node.memo_misses = 0

    def _walk(self, obj: dict, node: Node, expr: str, ctx: Context) -> None:
        rules = node.rules
        for key, value in obj.items():
            rule = rules.get(key)
            if rule is None:
                self._unmatched_key(obj, key, value, node, expr, ctx)
                continue
            if rule.repeats:
                if type(value) is not list:
                    ctx.add("error", "structure", f"{rule.expr_name} must be a JSON array", f"{expr}.{rule.expr_name}")
                    continue
                self._many(rule, value, expr, ctx)
            elif type(value) is list:
                ctx.add("error", "structure", f"{rule.expr_name} must not be a JSON array (max 1)", f"{expr}.{rule.expr_name}")
            elif not rule.fast or rule.check(value) is not None:
                # most keys hold a plain primitive, checked in the condition: a path only for a problem
                self.value(rule, value, f"{expr}.{rule.expr_name}", ctx)
        # one set test when every single-key requirement is met; otherwise all, in order
        for name, keys, minimum in node.required_choices if obj.keys() >= node.required_keys else node.required:
            for k in keys:
                if k in obj:
                    break
            else:
                ctx.add("error", "required", f"{name} is required (minimum {minimum})", f"{expr}.{name}")
        for rule in node.sliced:
            if rule.key not in obj:
                self._slice_counts(rule, [], expr, ctx)
        if node.is_coding:
            self._coding(obj, expr, ctx)
        if node.invariants:
            self._invariants(node.invariants, obj, expr, ctx)

    def _many(self, rule: Rule, values: list, expr: str, ctx: Context) -> None:
        base = f"{expr}.{rule.expr_name}"
        if not values:
            ctx.add("error", "structure", f"{rule.expr_name} must not be an empty array", base)
            return
        if rule.max is not None and len(values) > rule.max:
            ctx.add("error", "structure", f"{rule.expr_name} allows at most {rule.max}, found {len(values)}", base)
        slices = rule.slices
        if not slices:
            if rule.fast:
                check = rule.check
                for i, v in enumerate(values):
                    if check(v) is not None:
                        self.value(rule, v, f"{base}[{i}]", ctx)
                return
            for i, v in enumerate(values):
                self.value(rule, v, f"{base}[{i}]", ctx)
            return
        matched: list[Rule | None] = []
        for i, v in enumerate(values):
            for chosen in slices:
                if chosen.matcher(v):
                    break
            else:
                chosen = None
            matched.append(chosen)
            self.value(chosen or rule, v, f"{base}[{i}]", ctx)
        self._slice_counts(rule, matched, expr, ctx)

    def _slice_counts(self, rule: Rule, matched: list, expr: str, ctx: Context) -> None:
        for s in rule.slices:
            count = matched.count(s)  # Rules compare by identity
            if count < s.min:
                ctx.add("error", "required", f"{rule.expr_name}:{s.slice_name} is required (minimum {s.min}, found {count})",
                        f"{expr}.{s.selector}")
            if s.max is not None and count > s.max:
                ctx.add("error", "structure", f"{rule.expr_name}:{s.slice_name} allows at most {s.max}, found {count}",
                        f"{expr}.{s.selector}")

    def _unmatched_key(self, obj: dict, key: str, value, node: Node, expr: str, ctx: Context) -> None:
        if key == "resourceType" and node.is_resource:
            return
        if key.startswith("_"):
            base = node.rules.get(key[1:])
            if base is not None and base.check is not None:
                self._primitive_element(base, value, expr, ctx)
                return
        if key in node.disallowed:
            message, expr_name, _ = node.disallowed[key]
            ctx.add("error", "structure", message, f"{expr}.{expr_name}")
            return
        ctx.add("error", "structure", f"Unknown element {key!r} in {node.path}", f"{expr}.{key}")

    def _primitive_element(self, rule: Rule, value, expr: str, ctx: Context) -> None:
        """`_birthDate`: the id and extensions of a primitive (an array of them for repeats)."""
        items = value if type(value) is list else [value]
        for i, item in enumerate(items):
            if item is None:
                continue
            where = f"{expr}.{rule.expr_name}" + (f"[{i}]" if type(value) is list else "")
            if type(item) is not dict:
                ctx.add("error", "structure", f"_{rule.key} must hold an object with id/extension", where)
            else:
                self.walk(item, self.element_node, where, ctx)

    # -- one value -----------------------------------------------------------------------------
    def value(self, rule: Rule, value, expr: str, ctx: Context) -> None:
        kind = rule.kind
        if kind == "object":
            if type(value) is not dict:
                ctx.add("error", "structure", f"{rule.expr_name} must be a JSON object ({rule.type_code})", expr)
                return
            node = rule.node
            if rule.is_extension and rule.profile_node is None:
                node = self._extension_node(value, node, expr, ctx)
            self.walk(value, node, expr, ctx)
            if rule.target_types is not None:
                self._reference_target(rule, value, expr, ctx)
            if rule.binding is not None:
                self._binding(rule, value, expr, ctx)
        elif kind == "resource":
            self._nested_resource(value, expr, ctx)
        else:
            problem = rule.check(value)
            if problem is not None:
                code = "structure" if problem.startswith("must be") else "value"
                ctx.add("error", code, f"{rule.expr_name} {problem}" if code == "structure" else problem, expr)
                return
            if rule.plain:
                return
            if rule.binding is not None and rule.type_code == "code":
                self._code_binding(rule, value, expr, ctx)
        if rule.fixed is not MISSING and value != rule.fixed:
            ctx.add("error", "value", f"{rule.expr_name} must be exactly {_show(rule.fixed)}", expr)
        if rule.pattern is not MISSING and not matches_pattern(value, rule.pattern):
            ctx.add("error", "value", f"{rule.expr_name} must match the pattern {_show(rule.pattern)}", expr)
        if rule.invariants:
            if type(value) is not str:
                self._invariants(rule.invariants, value, expr, ctx)
                return
            passed = rule.passed  # as the node memo in walk(), for a string
            if value in passed:
                return
            issues, beyond = len(ctx.issues), ctx.beyond
            self._invariants(rule.invariants, value, expr, ctx)
            if len(ctx.issues) == issues and ctx.beyond == beyond and len(value) <= MEMO_CONTENT_BYTES \
                    and len(passed) < MEMO_SIZE:
                passed.add(value)

    def _extension_node(self, ext: dict, base: Node, expr: str, ctx: Context) -> Node:
        url = ext.get("url")
        node = self.extension_nodes.get(url) if type(url) is str else None
        if node is not None:
            return node
        if type(url) is str and url.startswith(PROJECT_NAMESPACE):
            ctx.add("error", "structure", f"Unknown extension {url}", expr)
        return base

    def _nested_resource(self, value, expr: str, ctx: Context) -> None:
        if type(value) is not dict or type(value.get("resourceType")) is not str:
            ctx.add("error", "structure", "A resource must be a JSON object with a resourceType", expr)
            return
        nodes = self.resource_nodes(value)
        if not nodes:
            ctx.add("error", "structure", f"Unknown resource type {value['resourceType']!r}", expr)
            return
        outer = ctx.resource
        ctx.resource = value
        try:
            for node in nodes:
                self.walk(value, node, expr, ctx)
        finally:
            ctx.resource = outer

    # -- terminology -----------------------------------------------------------------------------
    def _coding(self, coding: dict, expr: str, ctx: Context) -> None:
        """A code that is wrong whatever the binding: unknown in its system, or a corrupt SCTID."""
        system, code = coding.get("system"), coding.get("code")
        if type(system) is not str or type(code) is not str:
            return
        problem = self.terminology.code_problem(system, code)
        if problem is not None:
            ctx.add("error", "code-invalid", problem, expr)

    def _binding(self, rule: Rule, value: dict, expr: str, ctx: Context) -> None:
        binding = rule.binding
        node = rule.node
        if node.is_coding:
            codings = [value]
        elif node.is_codeable_concept:
            codings = value.get("coding") if type(value.get("coding")) is list else []
        else:
            return  # Quantity, string ... bindings are not checked
        term = self.terminology
        known = self._known_valuesets.get(binding.value_set)
        if known is None:
            known = self._known_valuesets[binding.value_set] = term.knows_valueset(binding.value_set)
        if not known:
            return
        passed = self._in_valueset
        messages = []
        for c in codings:
            if type(c) is not dict or type(c.get("code")) is not str:
                continue
            system = c.get("system")
            memo = (binding.value_set, system, c["code"]) if system is None or type(system) is str else None
            if memo is not None and memo in passed:
                return
            if term.code_problem(system, c["code"]) is not None:
                return  # already reported on the Coding itself
            check = term.validate_code(binding.value_set, system, c["code"])
            if check.valid is None or check.valid:
                if memo is not None and len(passed) < TERMINOLOGY_MEMO_SIZE:
                    passed.add(memo)
                return
            messages.append(check.message)
        if not codings and binding.strength != "required":
            return
        message = messages[0] if messages else f"No code from the value set {binding.value_set} (binding is {binding.strength})"
        severity = "error" if binding.strength == "required" else "warning"
        ctx.add(severity, "code-invalid", message, expr)

    def _code_binding(self, rule: Rule, value: str, expr: str, ctx: Context) -> None:
        memo = (rule.binding.value_set, None, value)
        if memo in self._in_valueset:
            return
        check = self.terminology.validate_code(rule.binding.value_set, None, value)
        if check.valid is not False:
            if len(self._in_valueset) < TERMINOLOGY_MEMO_SIZE:
                self._in_valueset.add(memo)
        else:
            severity = "error" if rule.binding.strength == "required" else "warning"
            ctx.add(severity, "code-invalid", check.message, expr)

    def _reference_target(self, rule: Rule, ref: dict, expr: str, ctx: Context) -> None:
        target = ref.get("reference")
        if type(target) is not str or target.startswith("#") or target.startswith("urn:"):
            return
        kinds = self._reference_types
        if target in kinds:
            kind = kinds[target]
        else:
            m = REFERENCE_TYPE.search(target)
            kind = m.group(1) if m else None
            if len(kinds) < TERMINOLOGY_MEMO_SIZE:
                kinds[target] = kind
        if kind is not None and kind not in rule.target_types:
            ctx.add("error", "structure",
                    f"{rule.expr_name} must refer to {' or '.join(sorted(rule.target_types))}, not {kind}", expr)

    # -- invariants ------------------------------------------------------------------------------
    def _invariants(self, invariants: tuple[Invariant, ...], focus, expr: str, ctx: Context) -> None:
        resource, root = ctx.resource, ctx.root
        for inv in invariants:
            if inv.evaluate is None:
                ctx.unevaluated.add(inv.key)
                ctx.beyond += 1  # reported per resource: not to be skipped by a memo
                continue
            if type(focus) is dict:
                if inv.guard is not None and _lacks(focus, inv.guard):
                    continue  # holds: it reads nothing the object has
                if inv.sure is not None and inv.sure(focus):
                    continue  # holds: the ordinary shape, told without FHIRPath
            if not inv.local:
                ctx.beyond += 1
            try:
                holds = inv.evaluate(focus, resource, root)
            except Exception:  # noqa: BLE001
                # data we do not control (a number where a string should be ...) must never
                # crash validation: the structural issue is reported elsewhere
                ctx.unevaluated.add(inv.key)
                ctx.beyond += 1
                continue
            if not holds:
                ctx.add(inv.severity, "invariant", f"Constraint failed: {inv.key}: {inv.human}", expr)


def _lacks(obj: dict, guard: tuple[tuple[str, ...], tuple[str, ...]]) -> bool:
    keys, prefixes = guard
    for key in keys:
        if key in obj:
            return False
    if prefixes:
        for key in obj:
            if key.startswith(prefixes):
                return False
    return True


def _show(value) -> str:
    if type(value) is dict:
        if "coding" in value:
            return ", ".join(_show(c) for c in value["coding"])
        if "code" in value:
            return f"{value.get('system', '')}#{value['code']}"
    return repr(value)
