"""FHIR R4 XML <-> the JSON-shaped dicts the rest of fhir-bridge works on.

Follows http://hl7.org/fhir/R4/xml.html and json.html. Everything type-dependent (which
elements exist, which repeat, which are XML attributes, which JSON type a primitive takes)
comes from the StructureModel, so this module holds the mechanics only:

- primitives are `value` attributes; Element.id and Extension.url are attributes;
- a primitive's id/extensions go to the JSON `_name` property (`null`-padded for arrays);
- contained / entry / parameter resources are wrapped in an element named by their type;
- Narrative.div is XHTML in XML and a serialized `<div xmlns="...xhtml">` string in JSON;
- output follows the element order of the definitions, `resourceType` first in JSON,
  then XML attributes (id, url), then elements.

Decimals: a FHIR decimal becomes an `int` when written without fraction or exponent, a
`float` when `repr(float(text)) == text` (so "4.5", "0.25", "1.0" stay floats, as orjson
would give), and otherwise a `decimal.Decimal` ("4.50", "0.010", "3.14159265358979323846"),
so the precision a sender wrote survives the trip. codec.dumps_json / codec.json_default
serialize Decimal as a bare JSON number.
"""
from __future__ import annotations

import math
import re
from copy import deepcopy
from decimal import Decimal
from weakref import WeakKeyDictionary

from lxml import etree

from fhir_bridge.errors import InputError
from fhir_bridge.fhir.model import StructureModel
from fhir_bridge.formats.xml import parse_untrusted

__all__ = ["FHIR_NS", "XHTML_NS", "xml_to_resource", "element_to_resource", "resource_to_xml", "decimal_from_text"]

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_FHIR = "{" + FHIR_NS + "}"
_DIV = "{" + XHTML_NS + "}div"
_EXTENSION = _FHIR + "extension"
_XSI_PREFIX = "{http://www.w3.org/2001/XMLSchema-instance}"  # xsi:schemaLocation is harmless
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'  # lxml's own uses single quotes

_INTEGER = re.compile(r"-?[0-9]+\Z")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")


def decimal_from_text(text: str) -> int | float | Decimal:
    """The project's one rule for FHIR decimals (see the module docstring)."""
    if _INTEGER.match(text):
        number = int(text)
        return number if str(number) == text else Decimal(text)  # "-0", "007" keep their form
    as_float = float(text)
    return as_float if repr(as_float) == text else Decimal(text)


# ---------------------------------------------------------------- layouts: the model, precomputed

# How a child's content is coded.
PRIMITIVE, OBJECT, RESOURCE, XHTML = "primitive", "object", "resource", "xhtml"


class _Slot:
    """One JSON key under a node, with everything both directions need to know about it."""

    __slots__ = ("key", "tag", "repeats", "attribute", "coding", "kind", "rank", "target", "layout")

    def __init__(self, key: str, tag: str, repeats: bool, attribute: bool, coding: str, kind: str,
                 rank: int, target: tuple[str, str] | None):
        self.key, self.tag, self.repeats, self.attribute = key, tag, repeats, attribute
        self.coding, self.kind, self.rank, self.target = coding, kind, rank, target
        self.layout: _Layout | None = None  # of `target`, filled on first use


class _Layout:
    """The children of one (type, path), indexed by JSON key, by XML tag and by attribute name."""

    __slots__ = ("by_key", "by_tag", "attributes")

    def __init__(self, slots: list[_Slot]):
        self.by_key = {slot.key: slot for slot in slots}
        self.by_tag = {slot.tag: slot for slot in slots if not slot.attribute}
        self.attributes = {slot.key: slot for slot in slots if slot.attribute}


_LAYOUTS: WeakKeyDictionary[StructureModel, dict[tuple[str, str], _Layout]] = WeakKeyDictionary()


def _layout(model: StructureModel, type_name: str, path: str) -> _Layout:
    per_model = _LAYOUTS.get(model)
    if per_model is None:
        per_model = _LAYOUTS[model] = {}
    found = per_model.get((type_name, path))
    if found is None:
        found = per_model[(type_name, path)] = _build_layout(model, type_name, path)
    return found


def _build_layout(model: StructureModel, type_name: str, path: str) -> _Layout:
    children = model.children(type_name, path)
    slots = []
    for index, (key, child) in enumerate(children.items()):
        el, code = child.element, child.type_code
        coding = RESOURCE if code == "Resource" else XHTML if code == "xhtml" else \
            OBJECT if model.json_kind(code) == "object" else PRIMITIVE
        target = None
        if coding == OBJECT:
            target = (code, code) if child.choice else model.resolve_path(type_name, el)
        rank = index - len(children) if el.xml_attribute else index  # attributes first in JSON
        tag = _DIV if coding == XHTML else _FHIR + key
        slots.append(_Slot(key, tag, el.repeats, el.xml_attribute, coding, model.json_kind(code), rank, target))
    return _Layout(slots)


def _nested(model: StructureModel, slot: _Slot) -> _Layout:
    if slot.layout is None:
        slot.layout = _layout(model, *slot.target)
    return slot.layout


def _line(el: etree._Element) -> str | None:
    return f"line {el.sourceline}" if el.sourceline else None


def _fail(message: str, expr: str, el: etree._Element | None = None) -> InputError:
    where = _line(el) if el is not None else None
    text = f"{expr}: {message}" + (f" ({where})" if where else "")
    return InputError(text, expression=expr, location=where)


# ---------------------------------------------------------------- XML -> JSON


class _Reader:
    def __init__(self, model: StructureModel):
        self.model = model
        self.extension = _layout(model, "Extension", "Extension")

    def resource(self, el: etree._Element, expr: str | None) -> dict:
        tag = el.tag
        if not isinstance(tag, str) or not tag.startswith(_FHIR):
            raise InputError(f"not a FHIR XML document: <{etree.QName(el).localname}> is not in the namespace "
                             f"{FHIR_NS}", expression=expr, location=_line(el))
        type_name = tag[len(_FHIR):]
        if type_name not in self.model.resource_types:
            raise InputError(f"unknown resource type {type_name}", expression=expr, location=_line(el))
        return self.object(el, _layout(self.model, type_name, type_name), expr or type_name,
                           {"resourceType": type_name})

    def object(self, el: etree._Element, layout: _Layout, expr: str, out: dict) -> dict:
        for name, raw in el.items():
            slot = layout.attributes.get(name)
            if slot is not None:
                out[slot.key] = raw  # Element.id and Extension.url are plain strings
            elif not name.startswith(_XSI_PREFIX):
                raise _fail(f"unknown attribute {name}", expr, el)
        _no_text(el.text, expr, el)
        groups, in_order = self._group(el, layout, expr)
        if not in_order:  # legal JSON either way; sorted so output never depends on sender order
            groups = {slot: groups[slot] for slot in sorted(groups, key=lambda slot: slot.rank)}
        for slot, subs in groups.items():
            if slot.coding == PRIMITIVE:
                self._primitives(slot, subs, expr, out)
            elif slot.repeats:
                out[slot.key] = [self._complex(slot, sub, f"{expr}.{slot.key}[{i}]") for i, sub in enumerate(subs)]
            else:
                out[slot.key] = self._complex(slot, subs[0], f"{expr}.{slot.key}")
        return out

    def _group(self, el: etree._Element, layout: _Layout, expr: str) -> tuple[dict[_Slot, list], bool]:
        """Child elements by slot in document order, and whether that is definition order.

        Unknown elements and a second occurrence of a singleton are refused. (The hot loop of
        the reader: tail checks are inlined.)
        """
        groups: dict[_Slot, list[etree._Element]] = {}
        by_tag = layout.by_tag
        last_rank, in_order = -1 << 30, True
        for sub in el:
            slot = by_tag.get(sub.tag)
            if slot is None:
                if not isinstance(sub.tag, str):  # a comment or PI in a tree parsed elsewhere
                    continue
                raise self._unknown(sub, layout, expr)
            tail = sub.tail
            if tail is not None and not tail.isspace():
                _no_text(tail, expr, el)
            found = groups.get(slot)
            if found is None:
                groups[slot] = [sub]
                in_order = in_order and slot.rank > last_rank
                last_rank = slot.rank
            elif slot.repeats:
                found.append(sub)
            else:
                raise _fail("appears more than once but is not a list (max 1)", f"{expr}.{slot.key}", sub)
        return groups, in_order

    @staticmethod
    def _unknown(sub: etree._Element, layout: _Layout, expr: str) -> InputError:
        tag = sub.tag
        if tag.startswith(_FHIR):
            name = tag[len(_FHIR):]
            slot = layout.by_key.get(name)
            if slot is not None and slot.coding == XHTML:
                return _fail(f"must be in the XHTML namespace {XHTML_NS}", f"{expr}.{name}", sub)
            return _fail("unknown element", f"{expr}.{name}", sub)
        return _fail(f"unknown element {tag}", expr, sub)

    def _complex(self, slot: _Slot, sub: etree._Element, expr: str) -> object:
        if slot.coding == OBJECT:
            return self.object(sub, _nested(self.model, slot), expr, {})
        if slot.coding == RESOURCE:
            return self._contained(sub, expr)
        return _div_to_text(sub)

    def _contained(self, sub: etree._Element, expr: str) -> dict:
        if sub.items():
            raise _fail("a resource wrapper takes no attributes", expr, sub)
        _no_text(sub.text, expr, sub)
        inner = [node for node in sub if isinstance(node.tag, str)]
        if len(inner) != 1:
            raise _fail(f"must hold exactly one resource, found {len(inner)}", expr, sub)
        _no_text(inner[0].tail, expr, sub)
        return self.resource(inner[0], expr)

    def _primitives(self, slot: _Slot, subs: list[etree._Element], expr: str, out: dict) -> None:
        key = slot.key
        if not slot.repeats:
            value, extra = self._primitive(subs[0], slot.kind, expr, key)
            if value is not None:
                out[key] = value
            if extra is not None:
                out["_" + key] = extra
            return
        pairs = [self._primitive(sub, slot.kind, expr, f"{key}[{i}]") for i, sub in enumerate(subs)]
        if any(value is not None for value, _ in pairs):
            out[key] = [value for value, _ in pairs]
        if any(extra is not None for _, extra in pairs):
            out["_" + key] = [extra for _, extra in pairs]  # aligned with `key`; `null` fills the gaps

    def _primitive(self, el: etree._Element, kind: str, parent: str, label: str) -> tuple[object, dict | None]:
        attributes = el.items()
        if len(attributes) == 1 and attributes[0][0] == "value" and not len(el) and el.text is None:
            raw = attributes[0][1]  # the common case: <linkId value="1"/>
            return (raw if kind == "string" else _json_value(raw, kind, f"{parent}.{label}", el)), None
        return self._primitive_in_full(el, kind, f"{parent}.{label}")

    def _primitive_in_full(self, el: etree._Element, kind: str, expr: str) -> tuple[object, dict | None]:
        value = None
        extra: dict = {}
        for name, raw in el.items():
            if name == "value":
                value = _json_value(raw, kind, expr, el)
            elif name == "id":
                extra["id"] = raw
            elif not name.startswith(_XSI_PREFIX):
                raise _fail(f"unknown attribute {name}", expr, el)
        _no_text(el.text, expr, el)
        extensions = []
        for sub in el:
            if not isinstance(sub.tag, str):
                continue
            if sub.tag != _EXTENSION:
                raise _fail("unknown element", f"{expr}.{etree.QName(sub).localname}", sub)
            _no_text(sub.tail, expr, el)
            extensions.append(self.object(sub, self.extension, f"{expr}.extension[{len(extensions)}]", {}))
        if extensions:
            extra["extension"] = extensions
        if value is None and not extra:
            raise _fail("has neither a value nor extensions", expr, el)
        return value, extra or None


def _no_text(text: str | None, expr: str, el: etree._Element) -> None:
    if text is not None and not text.isspace():
        raise _fail(f"text content is not allowed here: {text.strip()[:40]!r}", expr, el)


def _json_value(raw: str, kind: str, expr: str, el: etree._Element) -> object:
    if kind == "string":
        return raw
    if kind == "boolean":
        if raw == "true":
            return True
        if raw == "false":
            return False
        raise _fail(f"{raw!r} is not a boolean (true or false)", expr, el)
    if kind == "integer":
        if _INTEGER.match(raw):
            return int(raw)
        raise _fail(f"{raw!r} is not an integer", expr, el)
    if _DECIMAL.match(raw):
        return decimal_from_text(raw)
    raise _fail(f"{raw!r} is not a decimal", expr, el)


def _div_to_text(div: etree._Element) -> str:
    """The JSON form: `<div xmlns="http://www.w3.org/1999/xhtml">...</div>`, nothing inherited.

    lxml serializes a sub-element with every namespace declared on its ancestors (the FHIR
    default, xsi, a `h:` prefix), so a div that sees any other namespace is rebuilt first.
    """
    if div.nsmap != {None: XHTML_NS}:
        clean = etree.Element(_DIV, nsmap={None: XHTML_NS})
        _copy_content(div, clean)
        div = clean
    return etree.tostring(div, encoding="unicode", with_tail=False)


def _copy_content(src: etree._Element, dst: etree._Element) -> None:
    dst.text = src.text
    for name, value in src.items():
        dst.set(name, value)
    for node in src:
        if isinstance(node.tag, str):
            copy = etree.SubElement(dst, node.tag)
            _copy_content(node, copy)
            copy.tail = node.tail
        else:  # a comment or PI: only in trees not parsed by parse_untrusted
            dst.append(deepcopy(node))


# ---------------------------------------------------------------- JSON -> XML


class _Writer:
    def __init__(self, model: StructureModel):
        self.model = model
        self.extension = _layout(model, "Extension", "Extension")

    def resource(self, resource: object, parent: etree._Element | None, expr: str | None) -> etree._Element:
        if not isinstance(resource, dict):
            raise InputError(f"{expr or 'resource'}: a resource must be a JSON object", expression=expr)
        type_name = resource.get("resourceType")
        if not isinstance(type_name, str) or type_name not in self.model.resource_types:
            raise InputError(f"unknown resource type {type_name}", expression=expr)
        if parent is None:
            el = etree.Element(_FHIR + type_name, nsmap={None: FHIR_NS})
        else:
            el = etree.SubElement(parent, _FHIR + type_name)
        self.object(el, resource, _layout(self.model, type_name, type_name), expr or type_name, is_resource=True)
        return el

    def object(self, el: etree._Element, node: object, layout: _Layout, expr: str, is_resource: bool = False) -> None:
        if not isinstance(node, dict):
            raise InputError(f"{expr}: expected a JSON object, found {_json_type(node)}", expression=expr)
        for slot in self._slots(node, layout, expr, is_resource):
            key = slot.key
            value, extra = node.get(key), node.get("_" + key)
            if slot.attribute:
                el.set(key, _xml_value(value, "string", f"{expr}.{key}"))
            elif slot.repeats:
                self._repeated(el, slot, value, extra, expr)
            elif isinstance(value, list) or isinstance(extra, list):
                raise InputError(f"{expr}.{key}: is a single element, found a list", expression=f"{expr}.{key}")
            else:
                self._item(el, slot, value, extra, expr, key)

    @staticmethod
    def _slots(node: dict, layout: _Layout, expr: str, is_resource: bool) -> list[_Slot]:
        """The slots `node` fills, in definition order; unknown keys refused."""
        slots: list[_Slot] = []
        for key in node:
            if is_resource and key == "resourceType":
                continue
            companion = key.startswith("_")
            slot = layout.by_key.get(key[1:] if companion else key)
            if slot is None or (companion and (slot.coding != PRIMITIVE or slot.attribute)):
                raise InputError(f"{expr}.{key}: unknown element", expression=f"{expr}.{key}")
            if not companion or slot.key not in node:
                slots.append(slot)
        slots.sort(key=lambda slot: slot.rank)
        return slots

    def _repeated(self, el: etree._Element, slot: _Slot, value: object, extra: object, expr: str) -> None:
        key = slot.key
        for given, label in ((value, key), (extra, "_" + key)):
            if given is not None and not isinstance(given, list):
                raise InputError(f"{expr}.{label}: must be a list", expression=f"{expr}.{label}")
        values, extras = value or [], extra or []
        if values and extras and len(values) != len(extras):
            raise InputError(f"{expr}._{key}: must have as many entries as {key}", expression=f"{expr}._{key}")
        for index in range(max(len(values), len(extras))):
            item = values[index] if values else None
            item_extra = extras[index] if extras else None
            self._item(el, slot, item, item_extra, expr, f"{key}[{index}]")

    def _item(self, el: etree._Element, slot: _Slot, value: object, extra: object, parent: str, label: str) -> None:
        """One element; its FHIRPath (`parent.label`) is only spelled out when it is needed."""
        if slot.coding == PRIMITIVE:
            if extra is None and value is not None:  # the common case: <linkId value="1"/>
                text = _xml_text(value, slot.kind)
                if text is not None:
                    etree.SubElement(el, slot.tag, value=text)
                    return
            self._primitive(etree.SubElement(el, slot.tag), value, extra, slot.kind, f"{parent}.{label}")
            return
        expr = f"{parent}.{label}"
        if slot.coding == XHTML:
            el.append(_text_to_div(value, expr))
        elif value is None:
            raise InputError(f"{expr}: null is not allowed here", expression=expr)
        elif slot.coding == RESOURCE:
            self.resource(value, etree.SubElement(el, slot.tag), expr)
        else:
            self.object(etree.SubElement(el, slot.tag), value, _nested(self.model, slot), expr)

    def _primitive(self, sub: etree._Element, value: object, extra: object, kind: str, expr: str) -> None:
        if extra is not None:
            if not isinstance(extra, dict) or not set(extra) <= {"id", "extension"}:
                raise InputError(f"{expr}: its `_` companion may hold only id and extension", expression=expr)
            if "id" in extra:
                sub.set("id", _xml_value(extra["id"], "string", f"{expr}.id"))
        if value is not None:
            sub.set("value", _xml_value(value, kind, expr))
        extensions = extra.get("extension", []) if extra else []
        if not isinstance(extensions, list):
            raise InputError(f"{expr}.extension: must be a list", expression=f"{expr}.extension")
        for index, extension in enumerate(extensions):
            self.object(etree.SubElement(sub, _EXTENSION), extension, self.extension, f"{expr}.extension[{index}]")
        if value is None and not len(sub) and sub.get("id") is None:
            raise InputError(f"{expr}: has neither a value nor extensions", expression=expr)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _xml_text(value: object, kind: str) -> str | None:
    """A JSON primitive as the text of a `value` attribute; None if its JSON type is wrong."""
    if kind == "string":
        return value if isinstance(value, str) else None
    if isinstance(value, bool):
        return ("true" if value else "false") if kind == "boolean" else None
    if kind == "integer":
        return str(value) if isinstance(value, int) else None
    if kind == "decimal":
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float) and math.isfinite(value):
            return repr(value)  # the shortest text that reads back as the same float
        if isinstance(value, Decimal) and value.is_finite():
            return str(value)  # keeps the written precision: Decimal("4.50") -> "4.50"
    return None


def _xml_value(value: object, kind: str, expr: str) -> str:
    text = _xml_text(value, kind)
    if text is None:
        raise InputError(f"{expr}: expected a {kind}, found {_json_type(value)}", expression=expr)
    return text


def _text_to_div(value: object, expr: str) -> etree._Element:
    if not isinstance(value, str):
        raise InputError(f"{expr}: the narrative must be a string of XHTML", expression=expr)
    try:
        div = parse_untrusted(value.encode("utf-8"))
    except InputError as exc:
        raise InputError(f"{expr}: {exc.message}", expression=expr) from exc
    if div.tag != _DIV:
        raise InputError(f"{expr}: the narrative must be a <div> in the namespace {XHTML_NS}", expression=expr)
    return div


def _indent(el: etree._Element, level: int = 0) -> None:
    """Pretty-print FHIR elements only: whitespace added inside a div would change the narrative."""
    if el.tag == _DIV:
        return
    kids = [node for node in el if isinstance(node.tag, str)]
    if not kids:
        return
    inner = "\n" + "  " * (level + 1)
    el.text = inner
    for node in kids:
        _indent(node, level + 1)
        node.tail = inner
    kids[-1].tail = "\n" + "  " * level


# ---------------------------------------------------------------- public API


def element_to_resource(root: etree._Element, model: StructureModel) -> dict:
    """An already parsed FHIR resource element (e.g. inside a submission document) as JSON."""
    try:
        return _Reader(model).resource(root, None)
    except RecursionError as exc:
        raise InputError("XML nested too deeply") from exc


def xml_to_resource(data: bytes, model: StructureModel) -> dict:
    """Parse a FHIR XML document (untrusted bytes) into its JSON-shaped dict."""
    return element_to_resource(parse_untrusted(data), model)


def resource_to_xml(resource: dict, model: StructureModel, *, pretty: bool = False) -> bytes:
    """Serialize a JSON-shaped resource as a UTF-8 FHIR XML document."""
    try:
        root = _Writer(model).resource(resource, None, None)
    except RecursionError as exc:
        raise InputError("resource nested too deeply") from exc
    if pretty:
        _indent(root)
    return _XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)
