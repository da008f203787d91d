"""Bytes <-> FHIR resource dicts, JSON or XML, for the API edge, the CLI and the file readers.

The body decides the format (first non-whitespace byte `{` or `<`); a Content-Type, when given,
must agree with it. Decimals follow xml_codec.decimal_from_text on both paths: orjson parses
(fast), and only a document holding a decimal a float cannot reproduce ("4.50", "0.010",
"1e-7") is parsed again by the stdlib with that rule, so JSON in -> JSON out keeps precision.
Anything that may hold a Decimal must be written with dumps_json (or `default=json_default`).
"""
from __future__ import annotations

import json
import re
from decimal import Decimal

import orjson

from fhir_bridge.errors import InputError, UnsupportedFormat
from fhir_bridge.fhir.model import StructureModel
from fhir_bridge.fhir.xml_codec import decimal_from_text, xml_to_resource

__all__ = ["parse_resource_bytes", "dumps_json", "json_default", "loads_json", "media_format", "json_copy"]

_UTF8_BOM = b"\xef\xbb\xbf"
_LEADING_SPACE = re.compile(rb"\s*")
# A JSON number with a fraction or exponent, in value position. It may also match inside a
# string ("a:1.50,"): that only costs the slower exact parse, never a wrong result. (Consuming
# the leading delimiter is twice as fast as a lookbehind; the trailing one stays a lookahead
# so `[4.5,4.50]` yields both numbers.)
_FRACTIONAL_NUMBER = re.compile(
    rb"[:,\[]\s*(-?[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))\s*(?=[,}\]])"
)
# Bytes that may end a number's integer and fraction digits, and bytes that may come before a number.
_NUMBER_DIGITS = frozenset(b"0123456789.")
_BEFORE_NUMBER = frozenset(b":,[")
_XML_ENCODING = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"}


def media_format(content_type: str | None) -> str | None:
    """'json' | 'xml' for a Content-Type (None when absent); UnsupportedFormat otherwise."""
    if not content_type:
        return None
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", params, re.I)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise UnsupportedFormat(f"FHIR bodies are UTF-8, not {charset.group(1)}")
    if media in _JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in _XML_TYPES or media.endswith("+xml"):
        return "xml"
    raise UnsupportedFormat(f"unsupported content type {media}: send FHIR JSON or XML")


def parse_resource_bytes(data: bytes, model: StructureModel, content_type: str | None = None) -> dict:
    """Decode one FHIR resource from JSON or XML bytes; InputError with a readable reason."""
    declared = media_format(content_type)
    body = data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data
    _check_utf8(body)
    start = _LEADING_SPACE.match(body).end()
    first = body[start:start + 1]
    found = {b"{": "json", b"<": "xml"}.get(first)
    if found is None:
        raise InputError(_not_a_resource(first))
    if declared is not None and declared != found:
        raise InputError(f"the body is {found.upper()} but the Content-Type says {declared.upper()}")
    if found == "xml":
        _check_xml_encoding(body)
        return xml_to_resource(body, model)
    return _check_resource(loads_json(body), model)


def loads_json(body: bytes) -> object:
    """orjson, unless a decimal needs exact treatment (see the module docstring)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                         location=f"line {exc.lineno}") from exc
    if not _as_written(value, body) and _has_inexact_float(body):
        value = json.loads(body, parse_float=decimal_from_text)
    return value


def dumps_json(resource: object, pretty: bool = False) -> bytes:
    """orjson bytes; Decimals are written as the number they hold ("4.50" stays 4.50)."""
    return orjson.dumps(resource, default=json_default, option=orjson.OPT_INDENT_2 if pretty else 0)


def json_copy(value):
    """A deep copy of a JSON tree (dicts, lists and immutable leaves: str, numbers, Decimal, bool,
    None): what copy.deepcopy does for a resource, about five times faster (no memo, no dispatch)."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    return value


def json_default(value: object) -> orjson.Fragment:
    """`default=` hook for orjson.dumps anywhere a resource may hold a Decimal."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _as_written(value: object, body: bytes) -> bool:
    """A cheap proof that no number in the body needs the exact parse, for bodies orjson wrote (the
    store's; 2.5 times as fast as the scan for numbers): orjson writes the value back byte for
    byte, so every number is its float's shortest form; and none is below 1e-4, the only floats
    whose orjson form differs from repr's ("0.00001" / "1e-05", "1e-7" / "1e-07")."""
    return orjson.dumps(value) == body and b"0.0000" not in body and not _small_exponent(body)


def _small_exponent(body: bytes) -> bool:
    """A number with a negative exponent ("1.5e-7"), not the "e-" of a string such as a UUID."""
    at = body.find(b"e-")
    while at != -1:
        start = at
        while start > 0 and body[start - 1] in _NUMBER_DIGITS:
            start -= 1
        if start < at and start > 0:
            before = body[start - 1]
            if before == 0x2D and start > 1:  # a minus sign
                before = body[start - 2]
            if before in _BEFORE_NUMBER:
                return True
        at = body.find(b"e-", at + 2)
    return False


def _has_inexact_float(body: bytes) -> bool:
    for match in _FRACTIONAL_NUMBER.finditer(body):
        token = match.group(1).decode("ascii")
        if repr(float(token)) != token:
            return True
    return False


def _check_utf8(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"the body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from exc


def _check_xml_encoding(body: bytes) -> None:
    declared = _XML_ENCODING.match(body, _LEADING_SPACE.match(body).end())
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise InputError(f"FHIR XML must be UTF-8, the document declares {declared.group(1).decode()}")


def _not_a_resource(first: bytes) -> str:
    if not first:
        return "the body is empty"
    if first == b"[":
        return "a JSON array is not a FHIR resource: expected a JSON object"
    return "the body is neither a JSON object nor an XML document"


def _check_resource(value: object, model: StructureModel) -> dict:
    if not isinstance(value, dict):
        raise InputError("a FHIR resource must be a JSON object")
    type_name = value.get("resourceType")
    if not isinstance(type_name, str):
        raise InputError("not a FHIR resource: resourceType is missing", expression="resourceType")
    if type_name not in model.resource_types:
        raise InputError(f"unknown resource type {type_name}", expression="resourceType")
    return value
