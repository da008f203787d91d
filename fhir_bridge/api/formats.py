"""Content negotiation: which FHIR format a request body is in, and which the client wants back.

`_format` wins over Accept (http://hl7.org/fhir/R4/http.html#mime-type). A body in a format we do
not speak is 415; a response format we cannot produce is 406. A DIALOG+ CarePlan can also be read as
an HTML page (`wants_html`).
"""
from __future__ import annotations

from fhir_bridge.errors import NotAcceptable, UnsupportedFormat

JSON, XML = "json", "xml"
MEDIA_TYPES = {JSON: "application/fhir+json", XML: "application/fhir+xml"}
_FORMAT_ALIASES = {
    "json": JSON, "application/json": JSON, "application/fhir+json": JSON, "application/json+fhir": JSON,
    "xml": XML, "text/xml": XML, "application/xml": XML, "application/fhir+xml": XML, "application/xml+fhir": XML,
}


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def body_format(content_type: str | None) -> str:
    """Format of a request body from its Content-Type; JSON when none is given."""
    if not content_type:
        return JSON
    media = _media(content_type)
    fmt = _FORMAT_ALIASES.get(media)
    if fmt is None and media != "application/json-patch+json":
        raise UnsupportedFormat(f"Content-Type {media!r} is not supported: send application/fhir+json or application/fhir+xml")
    charset = [p.split("=", 1)[1].strip().lower() for p in content_type.split(";")[1:] if "charset=" in p.lower()]
    if charset and charset[0].strip('"') not in ("utf-8", "utf8"):
        raise UnsupportedFormat(f"charset {charset[0]!r} is not supported: FHIR bodies are UTF-8")
    return fmt or JSON


HTML_MEDIA = "text/html"
_HTML_ALIASES = {"html", "text/html", "application/xhtml+xml"}


def wants_html(format_param: str | None, accept: str | None) -> bool:
    """Whether a client asks for a human-readable HTML page (offered for DIALOG+ care plans only):
    `_format=html`, or an Accept whose most preferred type we can produce is text/html (a browser)."""
    if format_param:
        return _media(format_param) in _HTML_ALIASES
    best = None
    for part in (accept or "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        quality = next((_quality(p[2:]) for p in params if p.startswith("q=")), 1.0)
        media = media.lower()
        if quality > 0 and (media in _HTML_ALIASES or media in _FORMAT_ALIASES) and (best is None or quality > best[0]):
            best = (quality, media)
    return best is not None and best[1] in _HTML_ALIASES


def _quality(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def response_format(format_param: str | None, accept: str | None) -> str:
    """Format to answer in: `_format`, else the best Accept entry we support, else JSON."""
    if format_param:
        fmt = _FORMAT_ALIASES.get(_media(format_param))
        if fmt is None:
            raise NotAcceptable(f"_format={format_param!r} is not supported: use json or xml")
        return fmt
    if not accept:
        return JSON
    offered = []
    for position, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    quality = float(p[2:])
                except ValueError:
                    quality = 0.0
        offered.append((-quality, position, media.lower()))
    for quality, _, media in sorted(offered):
        if quality == 0:
            continue
        if media in _FORMAT_ALIASES:
            return _FORMAT_ALIASES[media]
        if media in ("*/*", "application/*"):
            return JSON
    raise NotAcceptable(f"None of the accepted types ({accept}) can be produced: use application/fhir+json or application/fhir+xml")
