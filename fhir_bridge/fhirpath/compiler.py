"""Syntax tree -> nested Python closures.

Each node becomes a function `run(focus: list, env: Env) -> list`. All decisions that do not
depend on the data (which operator, which function, arity, type specifiers, constants) are
taken here, once, so that evaluation is just a chain of small calls on plain lists and dicts.
Subtrees of literals are evaluated here too, and subtrees that do not read the focus are
remembered per evaluation where they would run more than once (see analysis.py).
"""
from __future__ import annotations

import itertools
from typing import Callable

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import nodes as n
from fhir_bridge.fhirpath import operators as ops
from fhir_bridge.fhirpath.analysis import Analysis, iterates
from fhir_bridge.fhirpath.functions import EXPR, FUNCTIONS, TYPE, VALUE, Env, Function, typed_choice
from fhir_bridge.fhirpath.lexer import syntax_error
from fhir_bridge.fhirpath.model import CHOICE_NAMES, choice_type, type_predicate
from fhir_bridge.fhirpath.operators import EMPTY, FALSE, TRUE, singleton, to_bool
from fhir_bridge.fhirpath.values import Typed

Run = Callable[[list, Env], list]

_FIXED_CONSTANTS = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}
_CONSTANT_PREFIXES = {
    "vs-": "http://hl7.org/fhir/ValueSet/",
    "ext-": "http://hl7.org/fhir/StructureDefinition/",
}


_TERMS = (n.Literal, n.EmptyLiteral, n.Constant, n.Variable)  # already as cheap as a constant
_SLOTS = itertools.count()  # keys of remembered subtrees in Env.memo, unique in the process


def compile_tree(node: n.Node, source: str) -> Run:
    return _Compiler(source, Analysis(node)).compile(node)


class _Compiler:
    def __init__(self, source: str, analysis: Analysis):
        self.source = source
        self.analysis = analysis
        # id(closure) -> (closure, the constant it returns); holding the closure keeps its id
        # from being reused while compiling, when the parent that held it is folded away
        self._folded: dict[int, tuple[Run, list]] = {}
        self.slots: dict[tuple, int] = {}  # shape of a remembered subtree -> its key in Env.memo
        self.in_loop = False     # compiling an argument evaluated once per item
        self.remembering = False  # compiling inside a remembered subtree: it runs once anyway

    def error(self, node: n.Node, message: str) -> FhirPathError:
        return syntax_error(self.source, node.pos, message)

    def compile(self, node: n.Node) -> Run:
        build = getattr(self, "_" + type(node).__name__)
        if type(node) in _TERMS:
            return build(node)
        a = self.analysis
        if a.foldable(node):
            return self._fold(build(node))
        if not self.remembering and not a.deps(node) and (self.in_loop or a.counts[a.shape(node)] > 1):
            self.remembering = True
            try:
                # one slot per shape: the copies of a subexpression share one result
                slot = self.slots.setdefault(a.shape(node), next(_SLOTS))
                return _remembered(build(node), slot)
            finally:
                self.remembering = False
        return build(node)

    def _fold(self, run: Run) -> Run:
        try:
            result = run(EMPTY, Env(EMPTY, None, None, {}))
        except Exception:  # noqa: BLE001 - left to fail at evaluation, as it would unfolded
            return run
        folded = lambda focus, env: result  # noqa: E731
        self._folded[id(folded)] = (folded, result)
        return folded

    def _literal(self, arg: Run | None) -> Run | list | None:
        constant = self.constant(arg) if arg is not None else None
        return arg if constant is None else constant

    def constant(self, run: Run) -> list | None:
        """The list a closure always returns, if it is a folded literal subtree."""
        entry = self._folded.get(id(run))
        return entry[1] if entry is not None and entry[0] is run else None

    def _loop_body(self, node: n.Node) -> Run:
        saved = self.in_loop, self.remembering
        self.in_loop, self.remembering = True, False
        try:
            return self.compile(node)
        finally:
            self.in_loop, self.remembering = saved

    # -- terms --------------------------------------------------------------------------------

    def _Literal(self, node: n.Literal) -> Run:
        result = [node.value]
        return lambda focus, env: result

    def _EmptyLiteral(self, node: n.EmptyLiteral) -> Run:
        return lambda focus, env: EMPTY

    def _Variable(self, node: n.Variable) -> Run:
        if node.name == "this":
            return lambda focus, env: env.this
        if node.name == "index":
            return lambda focus, env: EMPTY if env.index is None else [env.index]
        return lambda focus, env: env.total

    def _Constant(self, node: n.Constant) -> Run:
        name = node.name
        fixed = _FIXED_CONSTANTS.get(name)
        for prefix, base in _CONSTANT_PREFIXES.items():
            if name.startswith(prefix):
                fixed = base + name[len(prefix):]
        if fixed is not None:
            result = [fixed]
            return lambda focus, env: result
        if name == "resource":
            return lambda focus, env: EMPTY if env.resource is None else [env.resource]
        if name == "rootResource":
            return lambda focus, env: EMPTY if env.root is None else [env.root]
        if name == "context":
            return lambda focus, env: env.context
        return lambda focus, env: _variable(env, name)

    def _Member(self, node: n.Member) -> Run:
        if node.target is None and node.name[:1].isupper():
            # `Patient.name` on a Patient: a leading type name filters the focus by type.
            matches = type_predicate(node.name)
            return lambda focus, env: [item for item in focus if matches(item)]
        step = _navigator(node.name)
        if node.target is None:
            return step
        target = self.compile(node.target)
        return lambda focus, env: step(target(focus, env), env)

    def _Index(self, node: n.Index) -> Run:
        target, index = self.compile(node.target), self.compile(node.index)

        def run(focus, env):
            coll = target(focus, env)
            i = singleton(index(env.this, env), "indexer")
            if i is None:
                return EMPTY
            if type(i) is not int:
                raise FhirPathError(f"an index must be an integer, got {ops.describe(i)}")
            return [coll[i]] if 0 <= i < len(coll) else EMPTY
        return run

    # -- functions ----------------------------------------------------------------------------

    def _Call(self, node: n.Call) -> Run:
        spec = self.function(node)
        loops = iterates(node.name)
        args = [self._loop_body(arg) if loops and kind == EXPR else self.argument(kind, arg)
                for kind, arg in zip(spec.params, node.args)]
        args += [None] * (len(spec.params) - len(args))
        # a literal argument (`startsWith('#')`) is passed as its value, not evaluated per call
        args = [self._literal(arg) if kind == VALUE else arg for kind, arg in zip(spec.params, args)]
        plain = [kind == VALUE and arg is not None and type(arg) is not list for kind, arg in zip(spec.params, args)]
        impl = spec.impl
        target = self.compile(node.target) if node.target is not None else None
        if not any(plain):
            # Nothing to evaluate up front: the common case (exists(), where(...), ofType(T)).
            return _call(impl, target, args)
        pairs = list(zip(plain, args))

        def run(focus, env):
            coll = target(focus, env) if target is not None else focus
            # Plain arguments are evaluated against $this, not against the function's input.
            return impl(coll, env, *[arg(env.this, env) if evaluate else arg for evaluate, arg in pairs])
        return run

    def function(self, node: n.Call) -> Function:
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            raise self.error(node, f"unknown function {node.name}()")
        if not spec.required <= len(node.args) <= len(spec.params):
            expected = (str(spec.required) if spec.required == len(spec.params)
                        else f"{spec.required} to {len(spec.params)}")
            raise self.error(node, f"{node.name}() takes {expected} argument(s), got {len(node.args)}")
        return spec

    def argument(self, kind: str, node: n.Node):
        if kind == TYPE:
            return type_predicate(self.type_name(node))
        return self.compile(node)

    def type_name(self, node: n.Node) -> str:
        if isinstance(node, n.Member):
            if node.target is None:
                return node.name
            return f"{self.type_name(node.target)}.{node.name}"
        raise self.error(node, "expected a type name")

    # -- operators ----------------------------------------------------------------------------

    def _Unary(self, node: n.Unary) -> Run:
        operand = self.compile(node.operand)
        if node.op == "+":
            return operand

        def run(focus, env):
            value = singleton(operand(focus, env), "unary -")
            return EMPTY if value is None else [ops.negate(value)]
        return run

    def _TypeTest(self, node: n.TypeTest) -> Run:
        operand = self.compile(node.operand)
        matches = type_predicate(node.type_name)
        if node.op == "as":
            return lambda focus, env: [item for item in operand(focus, env) if matches(item)]

        def run(focus, env):
            item = singleton(operand(focus, env), "is")
            return EMPTY if item is None else (TRUE if matches(item) else FALSE)
        return run

    def _Binary(self, node: n.Binary) -> Run:
        left, right = self.compile(node.left), self.compile(node.right)
        if node.op in _LOGIC:
            return _LOGIC[node.op](left, right)
        if node.op in _MEMBERSHIP:
            element, collection = (left, right) if node.op == "in" else (right, left)
            constant = self.constant(collection)
            if constant is not None:
                return _membership_in_constant(element, constant)
            return _membership(element, collection)
        literal = self.constant(right)
        if node.op in ("=", "!=") and literal is not None and len(literal) == 1:
            equals = _equals_literal(left, literal)
            return equals if node.op == "=" else _negated(equals)
        if node.op in _EQUALITY_AND_MEMBERSHIP:
            return _EQUALITY_AND_MEMBERSHIP[node.op](left, right)
        if node.op in _COMPARISONS:
            return _comparison(_COMPARISONS[node.op], left, right)
        return _arithmetic(node.op, left, right)


def _call(impl: Callable, target: Run | None, args: list) -> Run:
    """A call whose arguments need no evaluation up front, without *args for the usual arities."""
    if target is None:
        return lambda focus, env: impl(focus, env, *args)
    if not args:
        return lambda focus, env: impl(target(focus, env), env)
    if len(args) == 1:
        a = args[0]
        return lambda focus, env: impl(target(focus, env), env, a)
    if len(args) == 2:
        a, b = args
        return lambda focus, env: impl(target(focus, env), env, a, b)
    return lambda focus, env: impl(target(focus, env), env, *args)


def _remembered(run: Run, slot: int) -> Run:
    """`run` does not read the focus: its result holds for the whole evaluation."""
    def remembered(focus, env):
        memo = env.memo
        if memo is None:
            env.memo = memo = {}
        else:
            result = memo.get(slot)
            if result is not None:
                return result
        result = memo[slot] = run(focus, env)
        return result
    return remembered


def _variable(env: Env, name: str) -> list:
    if name not in env.variables:
        raise FhirPathError(f"undefined variable %{name}")
    value = env.variables[name]
    if value is None:
        return EMPTY
    return value if type(value) is list else [value]


# ---------------------------------------------------------------------------------------------
# Navigation

def _navigator(name: str) -> Run:
    """The closure for `.name`. Objects without the key fall back to the choice keys
    (`value` -> `valueCoding`), but only for names R4 declares as choices."""
    is_choice = name in CHOICE_NAMES

    def run(focus, env):
        if len(focus) == 1:
            item = focus[0]
            if type(item) is dict:
                value = item.get(name)
                if value is not None:
                    if type(value) is not list:
                        return [value]
                    return _listed(value)
                if not is_choice:
                    return EMPTY
        out: list = []
        for item in focus:
            if type(item) is not dict:
                if type(item) is not Typed:
                    continue
                item = item.value
            value = item.get(name)
            if value is None:
                if is_choice:
                    _choice_values(item, name, out)
            elif type(value) is list:
                out.extend(_listed(value))
            else:
                out.append(value)
        return out
    return run


def _listed(value) -> list:
    if type(value) is not list:
        return [value]
    # Arrays of primitives may hold nulls where only an extension (`_given`) has content.
    if value and type(value[0]) is not dict and None in value:
        return [x for x in value if x is not None]
    return value


def _choice_values(item: dict, name: str, out: list) -> None:
    size = len(name)
    for key, value in item.items():
        if len(key) > size and key[size].isupper() and key.startswith(name):
            type_name = choice_type(key[size:])
            if type_name is not None:
                out.append(typed_choice(value, type_name))


# ---------------------------------------------------------------------------------------------
# Boolean logic: three-valued, short-circuiting where the spec's truth tables allow.

def _and(left: Run, right: Run) -> Run:
    def run(focus, env):
        a = left(focus, env)
        # to_bool inlined for the usual single boolean (TRUE/FALSE are shared lists)
        a = a[0] if a is TRUE or a is FALSE else to_bool(a)
        if a is False:
            return FALSE
        b = right(focus, env)
        b = b[0] if b is TRUE or b is FALSE else to_bool(b)
        if b is False:
            return FALSE
        return TRUE if a and b else EMPTY
    return run


def _or(left: Run, right: Run) -> Run:
    def run(focus, env):
        a = left(focus, env)
        a = a[0] if a is TRUE or a is FALSE else to_bool(a)
        if a is True:
            return TRUE
        b = right(focus, env)
        b = b[0] if b is TRUE or b is FALSE else to_bool(b)
        if b is True:
            return TRUE
        return FALSE if a is False and b is False else EMPTY
    return run


def _xor(left: Run, right: Run) -> Run:
    def run(focus, env):
        a = to_bool(left(focus, env))
        b = to_bool(right(focus, env))
        if a is None or b is None:
            return EMPTY
        return TRUE if a is not b else FALSE
    return run


def _implies(left: Run, right: Run) -> Run:
    def run(focus, env):
        a = left(focus, env)
        a = a[0] if a is TRUE or a is FALSE else to_bool(a)
        if a is False:
            return TRUE
        b = right(focus, env)
        b = b[0] if b is TRUE or b is FALSE else to_bool(b)
        if b is True:
            return TRUE
        return FALSE if a is True and b is False else EMPTY
    return run


_LOGIC = {"and": _and, "or": _or, "xor": _xor, "implies": _implies}


# ---------------------------------------------------------------------------------------------
# Equality and ordering

def _equals(left: Run, right: Run) -> Run:
    def run(focus, env):
        a, b = left(focus, env), right(focus, env)
        if len(a) == 1 and len(b) == 1:
            result = ops.equal(a[0], b[0])
        else:
            result = ops.equal_collections(a, b)
        return EMPTY if result is None else (TRUE if result else FALSE)
    return run


def _equals_literal(left: Run, literal: list) -> Run:
    """`system = 'http://...'`: a string, integer or boolean item is compared with == directly."""
    value = literal[0]
    kind = type(value)
    plain = kind is str or kind is int or kind is bool

    def run(focus, env):
        a = left(focus, env)
        if len(a) == 1:
            item = a[0]
            result = item == value if plain and type(item) is kind else ops.equal(item, value)
        else:
            result = ops.equal_collections(a, literal)
        return EMPTY if result is None else (TRUE if result else FALSE)
    return run


def _not_equals(left: Run, right: Run) -> Run:
    return _negated(_equals(left, right))


def _negated(equals: Run) -> Run:
    def run(focus, env):
        result = equals(focus, env)
        return result if not result else (FALSE if result[0] else TRUE)
    return run


def _equivalent(left: Run, right: Run) -> Run:
    return lambda focus, env: TRUE if ops.equivalent_collections(left(focus, env), right(focus, env)) else FALSE


def _not_equivalent(left: Run, right: Run) -> Run:
    return lambda focus, env: FALSE if ops.equivalent_collections(left(focus, env), right(focus, env)) else TRUE


_COMPARISONS = {
    "<": lambda order: order < 0,
    ">": lambda order: order > 0,
    "<=": lambda order: order <= 0,
    ">=": lambda order: order >= 0,
}


def _comparison(accept: Callable[[int], bool], left: Run, right: Run) -> Run:
    def run(focus, env):
        a = singleton(left(focus, env), "comparison")
        b = singleton(right(focus, env), "comparison")
        if a is None or b is None:
            return EMPTY
        order = ops.compare(a, b)
        return EMPTY if order is None else (TRUE if accept(order) else FALSE)
    return run


# ---------------------------------------------------------------------------------------------
# Collections: union, membership

def _union(left: Run, right: Run) -> Run:
    return lambda focus, env: ops.distinct(left(focus, env) + right(focus, env))


def _membership(element: Run, collection: Run) -> Run:
    def run(focus, env):
        item = singleton(element(focus, env), "in/contains")
        if item is None:
            return EMPTY
        return TRUE if ops.contains_item(collection(focus, env), item) else FALSE
    return run


def _membership_in_constant(element: Run, values: list) -> Run:
    """`linkId in ('a' | 'b' | ...)`: with only strings in the collection, a string item is
    found by a set lookup (string = string is plain equality); other items compare one by one."""
    strings = frozenset(values) if values and all(type(x) is str for x in values) else None
    if strings is None:
        return _membership(element, lambda focus, env: values)

    def run(focus, env):
        item = singleton(element(focus, env), "in/contains")
        if item is None:
            return EMPTY
        if type(item) is str:
            return TRUE if item in strings else FALSE
        return TRUE if ops.contains_item(values, item) else FALSE
    return run


_MEMBERSHIP = ("in", "contains")
_EQUALITY_AND_MEMBERSHIP = {
    "=": _equals,
    "!=": _not_equals,
    "~": _equivalent,
    "!~": _not_equivalent,
    "|": _union,
}


# ---------------------------------------------------------------------------------------------
# Arithmetic and string concatenation

_ARITHMETIC = {
    "+": ops.add,
    "-": ops.subtract,
    "*": ops.multiply,
    "/": ops.divide,
    "div": ops.integer_divide,
    "mod": ops.modulo,
}


def _arithmetic(op: str, left: Run, right: Run) -> Run:
    if op == "&":
        return _concatenate(left, right)
    apply = _ARITHMETIC[op]

    def run(focus, env):
        a = singleton(left(focus, env), op)
        b = singleton(right(focus, env), op)
        if a is None or b is None:
            return EMPTY
        result = apply(a, b)
        return EMPTY if result is None else [result]
    return run


def _concatenate(left: Run, right: Run) -> Run:
    def run(focus, env):
        parts = []
        for side in (left, right):
            value = singleton(side(focus, env), "&")
            if value is not None and type(value) is not str:
                raise FhirPathError(f"& expects strings, got {ops.describe(value)}")
            parts.append(value or "")
        return [parts[0] + parts[1]]
    return run

