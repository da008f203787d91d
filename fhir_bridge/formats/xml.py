"""Parse XML that came from outside, safely.

XML from clients, files and partner systems is untrusted. libxml2 can be told to fetch external
DTDs and entities (XXE: file and network reads) and to expand nested entities without limit
(billion laughs), so every parse here goes through one explicitly configured parser, and a
document that declares a DOCTYPE at all is refused: FHIR XML and the submission formats have
no use for one. Size limits are the caller's concern (the API and the file readers know them).
"""
from __future__ import annotations

import re
import threading

from lxml import etree

from fhir_bridge.errors import InputError

__all__ = ["parse_untrusted", "hardened_parser", "DOCTYPE_REFUSED"]

DOCTYPE_REFUSED = "XML with a DOCTYPE is refused"

# What may precede the root element: whitespace, the XML declaration, comments, PIs.
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.S)
_UTF8_BOM = b"\xef\xbb\xbf"
_TRAILING_POSITION = re.compile(r", line \d+, column \d+$")  # libxml2 repeats it in msg

_local = threading.local()  # lxml parser objects must not be shared between threads


def hardened_parser() -> etree.XMLParser:
    """A parser that never resolves entities, loads a DTD or touches the network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,  # keep libxml2's depth and text-size limits
        remove_comments=True,
        remove_pis=True,
    )


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = hardened_parser()
    return parser


def _declares_doctype(data: bytes) -> bool:
    """Look for `<!DOCTYPE` in the prolog before libxml2 reads a byte of it.

    Only the prolog is scanned, so `<!DOCTYPE` quoted in a CDATA section is no false alarm.
    Documents in encodings this byte scan cannot read (UTF-16) are caught after parsing.
    """
    pos = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    while (match := _PROLOG_ITEM.match(data, pos)) is not None:
        pos = match.end()
    return data.startswith(b"<!DOCTYPE", pos)


def parse_untrusted(data: bytes) -> etree._Element:
    """Parse untrusted XML bytes to the root element; InputError if refused or malformed."""
    if _declares_doctype(data):
        raise InputError(DOCTYPE_REFUSED)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or 1
        reason = _TRAILING_POSITION.sub("", exc.msg or "not well-formed")
        raise InputError(f"malformed XML at line {line}: {reason}", location=f"line {line}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise InputError(DOCTYPE_REFUSED)
    return root
