"""The FHIR narrative rules for `xhtml` values (Narrative.div), http://hl7.org/fhir/R4/narrative.html:

- well-formed XML whose root is a `div` in the XHTML namespace;
- txt-1: only the basic HTML formatting elements and attributes (HTML 4.0 chapters 7-11 and 15,
  `a`, `img`, style attributes): no head, body, scripts, forms, frames, iframes, objects, no event
  handler attributes, no `javascript:` links;
- txt-2: some non-whitespace content (text, or an image);
- no HTML entities beyond XML's five: narrative.html asks for Unicode characters instead.

The R4 invariants express txt-1 as `htmlChecks()`, which FHIRPath cannot evaluate: these checks are
what the validator runs instead. The element and attribute lists are the ones the HL7 Java validator
accepts.
"""
from __future__ import annotations

from lxml import etree

__all__ = ["narrative_problem"]

XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ELEMENTS = frozenset({
    "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong", "small", "big",
    "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr", "address", "bdo", "kbd", "sub", "sup",
    "ul", "ol", "li", "dl", "dt", "dd", "pre", "table", "caption", "colgroup", "col", "thead", "tr", "tfoot",
    "tbody", "th", "td", "code", "samp", "img", "map", "area",
})
COMMON_ATTRIBUTES = frozenset({
    "title", "style", "class", "id", "lang", XML_LANG, "dir", "accesskey", "tabindex",
    # tables (HTML 4.0 chapter 11)
    "span", "width", "align", "valign", "char", "charoff", "abbr", "axis", "headers", "scope", "rowspan", "colspan",
})
ELEMENT_ATTRIBUTES = {
    "a": {"href", "name"}, "img": {"src", "alt", "border", "height", "width"}, "blockquote": {"cite"},
    "q": {"cite"}, "ol": {"start", "type"}, "ul": {"type"}, "li": {"value"},
    "table": {"summary", "border", "frame", "rules", "cellspacing", "cellpadding"},
    "area": {"shape", "coords", "href", "alt", "nohref"}, "map": {"name"}, "col": {"span"}, "colgroup": {"span"},
}
URL_ATTRIBUTES = frozenset({"href", "src", "cite"})
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def narrative_problem(text: str) -> str | None:
    """What breaks the narrative rules in an xhtml value, or None when it meets them."""
    try:
        root = etree.fromstring(text.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        return f"narrative is not well-formed XHTML: {exc.msg}"
    if root.tag != f"{{{XHTML_NS}}}div":
        return f"narrative must be a <div> in the XHTML namespace ({XHTML_NS})"
    for element in root.iter():
        if not isinstance(element.tag, str):  # comments and processing instructions
            if isinstance(element, etree._ProcessingInstruction):
                return "narrative (txt-1): processing instructions are not allowed"
            continue
        problem = _element_problem(element)
        if problem:
            return problem
    if not "".join(root.itertext()).strip() and root.find(f".//{{{XHTML_NS}}}img") is None:
        return "narrative (txt-2): the div has no content"
    return None


def _element_problem(element) -> str | None:
    namespace, _, name = element.tag[1:].partition("}") if element.tag.startswith("{") else ("", "", element.tag)
    if namespace != XHTML_NS:
        return f"narrative (txt-1): <{name}> is not an XHTML element"
    if name not in ELEMENTS:
        return f"narrative (txt-1): <{name}> is not allowed in a FHIR narrative"
    allowed = ELEMENT_ATTRIBUTES.get(name, ())
    for attribute, value in element.attrib.items():
        if attribute not in COMMON_ATTRIBUTES and attribute not in allowed:
            return f"narrative (txt-1): attribute {attribute!r} is not allowed on <{name}>"
        if attribute in URL_ATTRIBUTES and value.strip().lower().replace(" ", "").startswith(("javascript:", "vbscript:")):
            return f"narrative (txt-1): <{name} {attribute}> may not run script"
    return None
