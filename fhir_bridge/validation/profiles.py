"""Applies a StructureDefinition's differential to the base nodes (copy-on-write).

Supported in differentials (what the project's profiles use, checked at load so an unsupported
construct fails loudly with the file and element): min, max, fixed[x], pattern[x], binding,
constraint, type (restricting a choice, a Reference's targets, an extension slice's profile),
slicing by `value`/`pattern` discriminators on a child path, and elements inside slices.
"""
from __future__ import annotations

from typing import Callable

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.fhir.model import Binding, Constraint
from fhir_bridge.validation.nodes import MISSING, BaseCompiler, Invariant, Node, Rule, matches_pattern

IGNORED_KEYS = {"id", "path", "short", "definition", "comment", "requirements", "alias", "mustSupport",
                "isSummary", "isModifier", "isModifierReason", "mapping", "label", "meaningWhenMissing",
                "extension", "sliceIsConstraining", "orderMeaning", "example", "base"}


class ProfileCompiler:
    def __init__(self, base: BaseCompiler, compile_invariant: Callable[[Constraint, str], Invariant | None],
                 resolve_profile: Callable[[str], Node | None]):
        self.base = base
        self.compile_invariant = compile_invariant
        self.resolve_profile = resolve_profile  # extension profiles used by slices

    def compile(self, sd: dict, where: str) -> Node:
        type_name = sd["type"]
        if type_name not in self.base.model.types:
            raise ConfigurationError(f"{where}: unknown type {type_name}")
        owner = object()  # marks the nodes this compilation has copied and may edit
        root = self.base.node(type_name).clone(owner)
        pending_slices: list[tuple[Rule, list[dict]]] = []
        for element in sd.get("differential", {}).get("element", []):
            self._apply(root, type_name, element, owner, sd["url"], where, pending_slices)
        for rule, discriminators in pending_slices:
            self._finish_slice(rule, discriminators, where)
        _recompute(root, owner, set())
        return root

    # -- walking the element id ------------------------------------------------------------------
    def _apply(self, root: Node, type_name: str, element: dict, owner, url: str, where: str, pending) -> None:
        element_id = element.get("id") or element.get("path")
        parts = element_id.split(".")
        if parts[0] != type_name:
            raise ConfigurationError(f"{where}: element {element_id} is not in {type_name}")
        unknown = set(element) - IGNORED_KEYS - {"min", "max", "binding", "constraint", "type", "slicing", "sliceName"}
        unknown = {k for k in unknown if not (k.startswith("fixed") or k.startswith("pattern"))}
        if unknown:
            raise ConfigurationError(f"{where}: {element_id} uses {sorted(unknown)}, which the validator does not support")
        if len(parts) == 1:
            self._set_root(root, element, url, where)
            return
        node, targets = root, None
        for i, part in enumerate(parts[1:]):
            name, _, slice_name = part.partition(":")
            if targets is not None:
                node = self._descend(targets, owner, element_id, where)
            targets = self._rules_for(node, name, slice_name, owner, element_id, where)
            if slice_name and not (name.endswith("[x]") and slice_name.startswith(name[:-3])):
                rule = targets[0]
                targets = [self._slice(rule, slice_name, owner, where, element_id)]
        self._set(targets, element, node, url, where, element_id, pending)

    def _rules_for(self, node: Node, name: str, slice_name: str, owner, element_id: str, where: str) -> list[Rule]:
        if name.endswith("[x]") and slice_name.startswith(name[:-3]):  # value[x]:valueQuantity
            keys = [slice_name]
        elif name.endswith("[x]"):
            keys = [k for k, r in node.rules.items() if r.name == name]
        else:
            keys = [name] if name in node.rules else []
        if not keys or any(k not in node.rules for k in keys):
            raise ConfigurationError(f"{where}: {element_id}: no element {name!r} in {node.path}")
        return [self._own_rule(node, k, owner) for k in keys]

    def _own_rule(self, node: Node, key: str, owner) -> Rule:
        rule = node.rules[key]
        if rule.owner is not owner:
            rule = rule.clone()
            rule.owner = owner
            node.rules[key] = rule
        return rule

    def _descend(self, targets: list[Rule], owner, element_id: str, where: str) -> Node:
        rule = targets[0]
        if rule.profile_node is not None:
            raise ConfigurationError(f"{where}: {element_id}: constrain the extension in its own definition")
        if rule.node is None:
            raise ConfigurationError(f"{where}: {element_id}: {rule.key} has no children")
        if rule.node.owner is not owner:
            rule.node = rule.node.clone(owner)
        return rule.node

    def _slice(self, rule: Rule, slice_name: str, owner, where: str, element_id: str) -> Rule:
        for s in rule.slices:
            if s.slice_name == slice_name:
                return s
        if not rule.repeats:
            raise ConfigurationError(f"{where}: {element_id}: slicing a single element")
        s = rule.clone()
        s.owner = owner
        s.slices, s.slice_name, s.min, s.max, s.repeats = (), slice_name, 0, rule.max, rule.repeats
        if s.node is not None:
            s.node = s.node.clone(owner)
        rule.slices = rule.slices + (s,)
        return s

    # -- applying one element ----------------------------------------------------------------------
    def _set_root(self, root: Node, element: dict, url: str, where: str) -> None:
        root.invariants = root.invariants + self._invariants(element, url)

    def _set(self, rules: list[Rule], element: dict, parent: Node, url: str, where: str, element_id: str, pending) -> None:
        for rule in rules:
            if "min" in element:
                rule.min = element["min"]
            if "max" in element:
                # JSON keeps the base spec's array form whatever a profile's max: only the count changes
                rule.max = None if element["max"] == "*" else int(element["max"])
                if rule.max == 0 and rule.slice_name is None:
                    _disallow(parent, rule, f"{rule.expr_name} is not allowed by {url}")
            for key, value in element.items():
                if key.startswith("fixed"):
                    rule.fixed = value
                elif key.startswith("pattern"):
                    rule.pattern = value
            if "binding" in element and element["binding"].get("valueSet"):
                b = element["binding"]
                rule.binding = Binding(b["strength"], b["valueSet"].split("|")[0])
            rule.invariants = rule.invariants + self._invariants(element, url)
        if "type" in element:
            self._restrict_types(rules, element["type"], parent, url, where, element_id)
        if "slicing" in element:
            discriminators = element["slicing"].get("discriminator", [])
            for d in discriminators:
                if d.get("type") not in ("value", "pattern"):
                    raise ConfigurationError(f"{where}: {element_id}: discriminator type {d.get('type')} is not supported")
            pending.append((rules[0], discriminators))

    def _restrict_types(self, rules: list[Rule], types: list[dict], parent: Node, url: str, where: str, element_id: str) -> None:
        allowed = {t["code"] for t in types}
        first = rules[0]
        if first.name.endswith("[x]") and first.slice_name is None and len(rules) > 1:
            for rule in rules:
                if rule.type_code not in allowed:
                    _disallow(parent, rule, f"{rule.type_code} is not allowed by {url}: "
                                            f"{first.name} must be {' or '.join(sorted(allowed))}")
        for rule in rules:
            for t in types:
                if t["code"] != rule.type_code:
                    continue
                if t.get("profile") and rule.is_extension:
                    node = self.resolve_profile(t["profile"][0])
                    if node is None:
                        raise ConfigurationError(f"{where}: {element_id}: unknown extension profile {t['profile'][0]}")
                    rule.profile_node = node
                    rule.node = node
                if t.get("targetProfile"):
                    rule.target_types = frozenset(p.rsplit("/", 1)[-1] for p in t["targetProfile"])

    def _invariants(self, element: dict, url: str) -> tuple[Invariant, ...]:
        out = []
        for c in element.get("constraint", []):
            inv = self.compile_invariant(
                Constraint(c["key"], c.get("severity", "error"), c.get("human", ""), c["expression"]), url)
            if inv is not None:
                out.append(inv)
        return tuple(out)

    # -- slices ----------------------------------------------------------------------------------
    def _finish_slice(self, rule: Rule, discriminators: list[dict], where: str) -> None:
        for s in rule.slices:
            wanted = []
            for d in discriminators:
                path = d["path"]
                if path == "url" and s.profile_node is not None:
                    wanted.append((("url",), self._extension_url(s)))
                    continue
                value = self._value_at(s, path)
                if value is MISSING:
                    raise ConfigurationError(f"{where}: slice {s.slice_name} sets no fixed or pattern value at {path}")
                wanted.append((() if path == "$this" else tuple(path.split(".")), value))
            s.matcher = _matcher(wanted)
            s.selector = _selector(rule.expr_name, wanted)

    def _extension_url(self, s: Rule) -> str:
        url_rule = s.profile_node.rules.get("url")
        return url_rule.fixed if url_rule is not None and url_rule.fixed is not MISSING else ""

    def _value_at(self, s: Rule, path: str):
        if path == "$this":
            return s.fixed if s.fixed is not MISSING else s.pattern
        node = s.node
        parts = path.split(".")
        for i, part in enumerate(parts):
            r = node.rules.get(part) if node else None
            if r is None:
                return MISSING
            if i == len(parts) - 1:
                return r.fixed if r.fixed is not MISSING else r.pattern
            node = r.node
        return MISSING


def _matcher(wanted: list[tuple[tuple[str, ...], object]]) -> Callable[[object], bool]:
    """An item belongs to the slice when every discriminator path holds the slice's value
    (pattern semantics: the value may carry more than the pattern)."""
    def matches(item: object) -> bool:
        for path, value in wanted:
            current = item
            for part in path:
                if type(current) is not dict:
                    return False
                current = current.get(part)
            if not matches_pattern(current, value):
                return False
        return True

    return matches


def _selector(expr_name: str, wanted) -> str:
    """A FHIRPath that selects the slice, used in messages about missing slices."""
    if len(wanted) == 1 and wanted[0][0] == ("url",):
        url = wanted[0][1]
        if expr_name in ("extension", "modifierExtension"):
            return f"{expr_name}('{url}')"
        return f"{expr_name}.where(url = '{url}')"
    conditions = []
    for path, value in wanted:
        target = ".".join(path) or "$this"
        if type(value) is dict and value.get("coding"):
            value = value["coding"][0]
        if type(value) is dict:
            conditions += [f"{target}.coding.{k} = '{v}'" if "coding" in target or path == () else f"{target}.{k} = '{v}'"
                           for k, v in value.items() if type(v) is str]
        else:
            conditions.append(f"{target} = '{value}'")
    return f"{expr_name}.where({' and '.join(conditions)})"


def _disallow(parent: Node, rule: Rule, message: str) -> None:
    parent.disallowed[rule.key] = (message, rule.expr_name, rule.name)
    del parent.rules[rule.key]


def _recompute(node: Node, owner, seen: set[int]) -> None:
    if id(node) in seen or node.owner is not owner:
        return
    seen.add(id(node))
    node.recompute_required()
    for rule in node.rules.values():
        if rule.node is not None and rule.profile_node is None:
            _recompute(rule.node, owner, seen)
        for s in rule.slices:
            if s.node is not None and s.profile_node is None:
                _recompute(s.node, owner, seen)
