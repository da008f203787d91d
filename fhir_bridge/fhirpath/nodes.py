"""Syntax tree of a FHIRPath expression: what the parser builds and the compiler consumes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any  # str, bool, int, Decimal, Temporal or Quantity; never a collection


@dataclass(frozen=True, slots=True)
class EmptyLiteral(Node):
    pass


@dataclass(frozen=True, slots=True)
class Variable(Node):
    name: str  # "this", "index" or "total"


@dataclass(frozen=True, slots=True)
class Constant(Node):
    name: str  # %name, without the percent sign


@dataclass(frozen=True, slots=True)
class Member(Node):
    target: Node | None  # None: the head of a path, applied to the focus
    name: str


@dataclass(frozen=True, slots=True)
class Call(Node):
    target: Node | None  # None: a function called without a dot, on the focus
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Index(Node):
    target: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class TypeTest(Node):
    op: str  # "is" or "as"
    operand: Node
    type_name: str  # possibly qualified: "FHIR.Patient", "System.String"
