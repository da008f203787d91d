"""Pratt parser: FHIRPath text -> syntax tree (fhir_bridge.fhirpath.nodes)."""
from __future__ import annotations

from fhir_bridge.fhirpath import nodes as n
from fhir_bridge.fhirpath.lexer import Token, syntax_error, tokenize
from fhir_bridge.fhirpath.values import Quantity, calendar_unit, parse_date_time, parse_number, parse_time

# Binding power of each infix operator, loosest first, per the FHIRPath precedence table.
_INFIX = {
    "implies": 1,
    "or": 2, "xor": 2,
    "and": 3,
    "in": 4, "contains": 4,
    "=": 5, "~": 5, "!=": 5, "!~": 5,
    "<": 6, ">": 6, "<=": 6, ">=": 6,
    "|": 7,
    "is": 8, "as": 8,
    "+": 9, "-": 9, "&": 9,
    "*": 10, "/": 10, "div": 10, "mod": 10,
}
_UNARY = 11  # unary +/- binds tighter than any infix operator, looser than `.` and `[]`
_WORD_OPERATORS = frozenset(op for op in _INFIX if op.isalpha())
# Keywords that the grammar still accepts as identifiers (e.g. the functions as() and is()).
_KEYWORD_IDENTIFIERS = frozenset({"as", "is", "in", "contains"})


def parse(source: str) -> n.Node:
    return _Parser(source).parse()


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0

    # -- token helpers ------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_op(self, text: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == text

    def expect_op(self, text: str) -> Token:
        if not self.at_op(text):
            raise self.error(f"expected {text!r}")
        return self.advance()

    def error(self, message: str, tok: Token | None = None):
        tok = tok or self.tok
        found = "end of expression" if tok.kind == "eof" else repr(tok.text)
        return syntax_error(self.source, tok.pos, f"{message}, found {found}")

    # -- grammar ------------------------------------------------------------------------------

    def parse(self) -> n.Node:
        if self.tok.kind == "eof":
            raise self.error("empty expression")
        node = self.expression(0)
        if self.tok.kind != "eof":
            raise self.error("expected an operator or the end of the expression")
        return node

    def infix_operator(self) -> str | None:
        tok = self.tok
        if tok.kind == "op" and tok.text in _INFIX:
            return tok.text
        if tok.kind == "ident" and tok.text in _WORD_OPERATORS:
            return tok.text
        return None

    def expression(self, min_power: int) -> n.Node:
        left = self.unary()
        while (op := self.infix_operator()) is not None and _INFIX[op] > min_power:
            tok = self.advance()
            if op in ("is", "as"):
                left = n.TypeTest(tok.pos, op, left, self.type_specifier())
            else:
                left = n.Binary(tok.pos, op, left, self.expression(_INFIX[op]))
        return left

    def unary(self) -> n.Node:
        if self.at_op("+") or self.at_op("-"):
            tok = self.advance()
            return n.Unary(tok.pos, tok.text, self.expression(_UNARY))
        return self.postfix(self.term())

    def postfix(self, node: n.Node) -> n.Node:
        while True:
            if self.at_op("."):
                self.advance()
                tok = self.advance()
                if tok.kind not in ("ident", "delimited"):
                    raise self.error("expected a name after '.'", tok)
                if self.at_op("(") and tok.kind == "ident":
                    node = n.Call(tok.pos, node, tok.text, self.arguments())
                else:
                    node = n.Member(tok.pos, node, tok.text)
            elif self.at_op("["):
                tok = self.advance()
                index = self.expression(0)
                self.expect_op("]")
                node = n.Index(tok.pos, node, index)
            else:
                return node

    def arguments(self) -> tuple[n.Node, ...]:
        self.expect_op("(")
        args: list[n.Node] = []
        if not self.at_op(")"):
            args.append(self.expression(0))
            while self.at_op(","):
                self.advance()
                args.append(self.expression(0))
        self.expect_op(")")
        return tuple(args)

    def type_specifier(self) -> str:
        names = [self.identifier()]
        while self.at_op(".") and self.tokens[self.i + 1].kind in ("ident", "delimited"):
            self.advance()
            names.append(self.identifier())
        return ".".join(names)

    def identifier(self) -> str:
        tok = self.tok
        reserved = tok.text in _WORD_OPERATORS and tok.text not in _KEYWORD_IDENTIFIERS
        if tok.kind == "delimited" or (tok.kind == "ident" and not reserved):
            self.advance()
            return tok.text
        raise self.error("expected a name")

    def term(self) -> n.Node:
        tok = self.tok
        kind = tok.kind
        if kind == "number":
            return self.number()
        if kind == "string":
            self.advance()
            return n.Literal(tok.pos, tok.text)
        if kind in ("date", "datetime"):
            self.advance()
            value = parse_date_time(tok.text[1:])
            if value is None:
                raise self.error("invalid date/time literal", tok)
            return n.Literal(tok.pos, value)
        if kind == "time":
            self.advance()
            value = parse_time(tok.text[1:])
            if value is None:
                raise self.error("invalid time literal", tok)
            return n.Literal(tok.pos, value)
        if kind == "special":
            self.advance()
            return n.Variable(tok.pos, tok.text[1:])
        if kind == "const":
            self.advance()
            name_tok = self.advance()
            if name_tok.kind not in ("ident", "delimited", "string"):
                raise self.error("expected a name after '%'", name_tok)
            return n.Constant(tok.pos, name_tok.text)
        if kind == "op":
            return self.bracketed()
        if kind == "ident" and tok.text in ("true", "false"):
            self.advance()
            return n.Literal(tok.pos, tok.text == "true")
        if kind == "delimited" or kind == "ident":
            name = self.identifier()
            if self.at_op("(") and kind == "ident":
                return n.Call(tok.pos, None, name, self.arguments())
            return n.Member(tok.pos, None, name)
        raise self.error("expected an expression")

    def bracketed(self) -> n.Node:
        tok = self.tok
        if self.at_op("("):
            self.advance()
            node = self.expression(0)
            self.expect_op(")")
            return node
        if self.at_op("{"):
            self.advance()
            self.expect_op("}")
            return n.EmptyLiteral(tok.pos)
        raise self.error("expected an expression")

    def number(self) -> n.Node:
        tok = self.advance()
        value = parse_number(tok.text)
        unit = self.tok
        if unit.kind == "string":
            self.advance()
            return n.Literal(tok.pos, Quantity(value, unit.text))
        if unit.kind == "ident" and calendar_unit(unit.text):
            self.advance()
            return n.Literal(tok.pos, Quantity(value, calendar_unit(unit.text)))
        return n.Literal(tok.pos, value)
