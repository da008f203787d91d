"""Tokenizer for FHIRPath (N1, as used by FHIR R4).

One compiled regular expression with named groups does the whole job: expressions are
tokenized once per compile, so clarity matters more than speed here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fhir_bridge.errors import FhirPathError

_TIME = r"\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_TZ = r"(?:Z|[+-]\d{2}:\d{2})"
_DATE = r"\d{4}(?:-\d{2}(?:-\d{2})?)?"

# Order matters: longer alternatives first (datetime before date, `<=` before `<`).
_TOKEN = re.compile(
    rf"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@{_DATE}T(?:{_TIME})?{_TZ}?)
  | (?P<date>@{_DATE})
  | (?P<time>@T{_TIME})
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<delimited>`(?:[^`\\]|\\.)*`)
  | (?P<special>\$(?:this|index|total)\b)
  | (?P<const>%)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>.,()\[\]{{}}])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # one of the group names above, or "eof"
    text: str  # for string/delimited: the unescaped content
    pos: int   # 0-based offset in the source


def syntax_error(source: str, pos: int, message: str) -> FhirPathError:
    # Not `expression=`: that field names the offending element of a resource, not the rule.
    return FhirPathError(f"invalid FHIRPath at position {pos}: {message} in {source!r}")


def _unescape(body: str) -> str:
    def one(m: re.Match) -> str:
        esc = m.group(1)
        if len(esc) == 5:
            return chr(int(esc[1:], 16))
        # Unknown escapes keep their backslash: invariants write regexes like '\s' or '\.'
        # inside strings and mean the regex escape, not a lone letter.
        return _ESCAPES.get(esc, "\\" + esc)

    return _ESCAPE.sub(one, body)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, end = 0, len(source)
    while pos < end:
        m = _TOKEN.match(source, pos)
        if m is None:
            raise syntax_error(source, pos, f"unexpected character {source[pos]!r}")
        kind, text = m.lastgroup, m.group()
        if kind in ("string", "delimited"):
            text = _unescape(text[1:-1])
        if kind != "ws":
            tokens.append(Token(kind, text, pos))
        pos = m.end()
    tokens.append(Token("eof", "", end))
    return tokens
