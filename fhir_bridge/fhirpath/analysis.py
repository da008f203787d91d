"""What a subexpression depends on, found once at compile time so that evaluation can skip work.

* A subtree built only from literals and operators (`'a' | 'b' | 'c'`) is the same every time:
  the compiler evaluates it once.
* A subtree that reads neither the focus nor `$this`/`$index`/`$total` (`%resource.item.where(...)`)
  gives the same result all through one evaluation: the compiler remembers it per evaluation when
  it occurs twice (a mean's numerator and denominator) or sits inside a loop (a where() criterion).
* An invariant that reads its focus only through a few member names, and holds on `{}`, holds on
  any object without those members: the validator need not run it there (absence_guard).
* An expression that reads nothing but its focus (no %resource, no resolve(), no clock) gives the
  same result on equal content wherever it sits: the validator may remember a verdict by content
  (reads_only_focus).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Callable

from fhir_bridge.fhirpath import nodes as n
from fhir_bridge.fhirpath.functions import EXPR, FUNCTIONS, TYPE, VALUE, Env
from fhir_bridge.fhirpath.model import CHOICE_NAMES
from fhir_bridge.fhirpath.operators import EMPTY

FOCUS, THIS, INDEX, TOTAL = "focus", "this", "index", "total"
OPAQUE = "opaque"  # never bound: a subtree that reads it is evaluated as often as written
NONE: frozenset = frozenset()

# Functions whose EXPR arguments run per input item: what each binds for its argument.
_ITERATING = {name: frozenset({FOCUS, THIS, INDEX}) for name in ("where", "select", "all", "exists", "repeat", "trace")}
_ITERATING["aggregate"] = frozenset({FOCUS, THIS, INDEX, TOTAL})
# iif() runs its arguments once, on the function's input.
_BINDS = {**_ITERATING, "iif": frozenset({FOCUS})}

# Literal values that may be folded: a date or time without a zone compares in local time,
# which may change while the process runs.
_FOLDABLE_LITERALS = (str, bool, int, Decimal)
_FIXED_CONSTANT_NAMES = ("ucum", "sct", "loinc")
_FIXED_CONSTANT_PREFIXES = ("vs-", "ext-")


def iterates(name: str) -> bool:
    """True when the function evaluates its EXPR arguments once per input item."""
    return name in _ITERATING


def _on_this(deps: frozenset) -> frozenset:
    # VALUE arguments and indexes are evaluated with $this as their focus.
    return deps - {FOCUS} | {THIS} if FOCUS in deps else deps


class Analysis:
    """Dependencies and shapes of the subtrees of one syntax tree, computed once each."""

    def __init__(self, root: n.Node):
        self._deps: dict[int, frozenset] = {}
        self._shapes: dict[int, tuple] = {}
        self.counts: dict[tuple, int] = {}  # shape -> occurrences in the tree
        self._visit(root)

    def deps(self, node: n.Node) -> frozenset:
        """The evaluation state the subtree reads: a subset of focus, this, index, total."""
        return self._deps[id(node)]

    def shape(self, node: n.Node) -> tuple:
        """The subtree without source positions: equal shapes compute equal results."""
        return self._shapes[id(node)]

    def _visit(self, node: n.Node) -> None:
        t = type(node)
        if t is n.Literal:
            deps, shape = NONE, ("Literal", type(node.value), node.value)
        elif t is n.EmptyLiteral:
            deps, shape = NONE, ("Empty",)
        elif t is n.Constant:
            deps, shape = NONE, ("Constant", node.name)
        elif t is n.Variable:
            deps, shape = frozenset({node.name}), ("Variable", node.name)
        elif t is n.Member:
            if node.target is None:
                deps, shape = frozenset({FOCUS}), ("Member", None, node.name)
            else:
                self._visit(node.target)
                deps, shape = self.deps(node.target), ("Member", self.shape(node.target), node.name)
        elif t is n.Index:
            self._visit(node.target)
            self._visit(node.index)
            deps = self.deps(node.target) | _on_this(self.deps(node.index))
            shape = ("Index", self.shape(node.target), self.shape(node.index))
        elif t is n.Call:
            deps, shape = self._call(node)
        elif t is n.Unary:
            self._visit(node.operand)
            deps, shape = self.deps(node.operand), ("Unary", node.op, self.shape(node.operand))
        elif t is n.TypeTest:
            self._visit(node.operand)
            deps, shape = self.deps(node.operand), ("TypeTest", node.op, node.type_name, self.shape(node.operand))
        elif t is n.Binary:
            self._visit(node.left)
            self._visit(node.right)
            deps = self.deps(node.left) | self.deps(node.right)
            shape = ("Binary", node.op, self.shape(node.left), self.shape(node.right))
        else:  # a node this analysis does not know: depends on everything, never shared
            deps, shape = frozenset({OPAQUE}), ("Opaque", id(node))
        self._deps[id(node)] = deps
        self._shapes[id(node)] = shape
        self.counts[shape] = self.counts.get(shape, 0) + 1

    def _call(self, node: n.Call) -> tuple[frozenset, tuple]:
        if node.target is None:
            deps, target_shape = frozenset({FOCUS}), None
        else:
            self._visit(node.target)
            deps, target_shape = self.deps(node.target), self.shape(node.target)
        spec = FUNCTIONS.get(node.name)
        params = spec.params if spec is not None else ()
        arg_shapes = []
        for i, arg in enumerate(node.args):
            kind = params[i] if i < len(params) else None
            if kind == TYPE:
                arg_shapes.append(("Type", _type_shape(arg)))  # a type name, read at compile time
                continue
            self._visit(arg)
            arg_shapes.append(self.shape(arg))
            if kind == VALUE:
                deps = deps | _on_this(self.deps(arg))
            elif kind == EXPR and node.name in _BINDS:
                deps = deps | (self.deps(arg) - _BINDS[node.name])
            else:  # an argument evaluated some other way: assume the worst
                deps = deps | self.deps(arg) | {OPAQUE}
        if node.name == "trace":  # it logs: as often as written
            deps = deps | {OPAQUE}
        return deps, ("Call", target_shape, node.name, tuple(arg_shapes))

    def foldable(self, node: n.Node) -> bool:
        """Literals and operators only (no functions, no data, no variables): the same result always."""
        t = type(node)
        if t is n.Literal:
            return type(node.value) in _FOLDABLE_LITERALS
        if t is n.EmptyLiteral:
            return True
        if t is n.Constant:
            return node.name in _FIXED_CONSTANT_NAMES or node.name.startswith(_FIXED_CONSTANT_PREFIXES)
        if t is n.Unary or t is n.TypeTest:
            return self.foldable(node.operand)
        if t is n.Binary:
            return self.foldable(node.left) and self.foldable(node.right)
        return False


# Functions whose result depends on more than their input: the resource around it, a hook, the clock.
_BEYOND_FOCUS = frozenset({"resolve", "memberOf", "conformsTo", "now", "today", "timeOfDay"})


def reads_only_focus(node: n.Node) -> bool:
    """True when the expression reads nothing but its focus: no %resource, %rootResource, %context
    or other variable (the fixed %ucum, %sct, %loinc, %vs-, %ext- aside), no function that looks
    beyond its input (resolve(), memberOf(), the clock). A syntax node this does not know: False."""
    t = type(node)
    if t is n.Literal or t is n.EmptyLiteral or t is n.Variable:
        return True
    if t is n.Constant:
        return node.name in _FIXED_CONSTANT_NAMES or node.name.startswith(_FIXED_CONSTANT_PREFIXES)
    if t is n.Member:
        return node.target is None or reads_only_focus(node.target)
    if t is n.Index:
        return reads_only_focus(node.target) and reads_only_focus(node.index)
    if t is n.Unary or t is n.TypeTest:
        return reads_only_focus(node.operand)
    if t is n.Binary:
        return reads_only_focus(node.left) and reads_only_focus(node.right)
    if t is n.Call:
        return (node.name not in _BEYOND_FOCUS and (node.target is None or reads_only_focus(node.target))
                and all(reads_only_focus(arg) for arg in node.args))
    return False


def _type_shape(node: n.Node):
    if type(node) is n.Member:
        return (node.name, None if node.target is None else _type_shape(node.target))
    return ("Opaque", id(node))


# ---------------------------------------------------------------------------------------------
# Invariants that cannot fail on an object lacking some keys

_CLOCK_OR_LOG = frozenset({"now", "today", "timeOfDay", "trace"})  # a probe must not stand in for these
_DECIDING = {"and": False, "or": True, "implies": False}  # a left side that settles the operator


class _Touched(Exception):
    """The probe read something outside the focus."""


class _ProbeEnv(Env):
    """An Env whose resource, root, %context and variables may not be read."""

    __slots__ = ()

    def __init__(self, focus: list):  # noqa: D107 - the base __init__ would set the guarded slots
        self.this = focus
        self.index = None
        self.total = EMPTY
        self.memo = None

    def _touched(self):
        raise _Touched()

    resource = property(_touched)
    root = property(_touched)
    context = property(_touched)
    variables = property(_touched)


def _probe(run: Callable) -> list | None:
    """The result on an empty object, or None when it reads more than the focus (or fails)."""
    focus = [{}]
    try:
        return run(focus, _ProbeEnv(focus))
    except Exception:  # noqa: BLE001 - whatever the reason, no shortcut
        return None


def absence_guard(tree: n.Node, run: Callable, compile_tree: Callable) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(keys, prefixes) such that the expression holds on any object that has none of the keys
    and no key starting with a prefix (choice elements: `value` reads `valueCoding`; they are
    among the keys too), or None.

    Sound because the expression reads its focus only through those member names (checked on
    the tree), so on such an object it runs exactly as on `{}`, which the probe evaluates; a
    left side of and/or/implies that settles the result on `{}` leaves the right side unread."""
    try:
        keys = _focus_keys(tree, True, True, compile_tree)
    except (_Opaque, RecursionError):
        return None
    result = _probe(run)
    if result is None or len(result) > 1 or (result and result[0] is False):
        return None
    # a choice name is looked up as a key first: present, no need to scan for `valueCoding`
    return tuple(sorted(keys)), tuple(sorted(k for k in keys if k in CHOICE_NAMES))


class _Opaque(Exception):
    """The focus is read as a whole (or the expression depends on the clock)."""


def _focus_keys(node: n.Node, member_reads_focus: bool, this_is_focus: bool, compile_tree: Callable) -> set[str]:
    """Member names read from the focus. `member_reads_focus`: a path head reads the focus (not
    an item of a where()); `this_is_focus`: `$this` is the focus (not rebound)."""
    t = type(node)
    keys = lambda child, mf=member_reads_focus, tf=this_is_focus: _focus_keys(child, mf, tf, compile_tree)  # noqa: E731
    if t is n.Literal or t is n.EmptyLiteral or t is n.Constant:
        return set()  # %resource, %context...: the probe refuses to read them
    if t is n.Variable:
        if node.name == "this" and this_is_focus:
            raise _Opaque()
        return set()
    if t is n.Member:
        if node.target is not None:
            return keys(node.target)
        if not member_reads_focus:
            return set()
        if node.name[:1].isupper():  # a type filter on the focus itself
            raise _Opaque()
        return {node.name}
    if t is n.Index:
        return keys(node.target) | keys(node.index, this_is_focus, this_is_focus)
    if t is n.Unary or t is n.TypeTest:
        return keys(node.operand)
    if t is n.Binary:
        left = keys(node.left)
        if node.op in _DECIDING and member_reads_focus:
            settled = _probe(compile_tree(node.left, ""))
            if settled is not None and len(settled) == 1 and settled[0] is _DECIDING[node.op]:
                return left
        return left | keys(node.right)
    if t is n.Call:
        if node.name in _CLOCK_OR_LOG or node.name not in FUNCTIONS:
            raise _Opaque()
        if node.target is None:
            if member_reads_focus:
                raise _Opaque()  # a function of the focus as a whole: exists(), hasValue()...
            found: set[str] = set()
        else:
            found = keys(node.target)
        params = FUNCTIONS[node.name].params
        for kind, arg in zip(params, node.args):
            if kind == VALUE:
                found |= keys(arg, this_is_focus, this_is_focus)
            elif kind == EXPR and node.name in _ITERATING:
                found |= keys(arg, False, False)
            elif kind == EXPR and node.name == "iif":
                found |= keys(arg, False, this_is_focus)
            elif kind != TYPE:
                raise _Opaque()
        return found
    raise _Opaque()
