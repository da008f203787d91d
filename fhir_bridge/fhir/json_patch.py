"""JSON Patch (RFC 6902) on plain dicts: add, remove, replace, move, copy, test.

A malformed patch document is an InputError (400); a patch that does not apply to this resource
(a failed `test`, a path that is not there) is Unprocessable (422), as FHIR asks.
"""
from __future__ import annotations


from fhir_bridge.errors import InputError, Unprocessable
from fhir_bridge.fhir.codec import json_copy

OPS = {"add", "remove", "replace", "move", "copy", "test"}


def apply_patch(document: dict, patch: object) -> dict:
    if type(patch) is not list:
        raise InputError("A JSON Patch must be a JSON array of operations")
    result = json_copy(document)
    for index, op in enumerate(patch):
        result = _apply(result, op, index)
    if type(result) is not dict:
        raise Unprocessable("The patch would replace the resource with something that is not an object")
    return result


def _pointer(path: object, index: int) -> list[str]:
    if type(path) is not str or (path and not path.startswith("/")):
        raise InputError(f"operation {index}: 'path' must be a JSON Pointer such as /status")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _apply(doc, op: object, index: int):
    if type(op) is not dict or op.get("op") not in OPS:
        raise InputError(f"operation {index}: 'op' must be one of {sorted(OPS)}")
    kind = op["op"]
    path = _pointer(op.get("path"), index)
    if kind in ("add", "replace", "test") and "value" not in op:
        raise InputError(f"operation {index} ({kind}) needs a 'value'")
    if kind == "test":
        if _get(doc, path, index) != op["value"]:
            raise Unprocessable(f"operation {index}: test failed at {op['path']}")
        return doc
    if kind == "remove":
        return _remove(doc, path, index)
    if kind == "replace":
        _get(doc, path, index)  # must exist
        return _add(_remove(doc, path, index), path, json_copy(op["value"]), index)
    if kind == "add":
        return _add(doc, path, json_copy(op["value"]), index)
    source = _pointer(op.get("from"), index)
    value = json_copy(_get(doc, source, index))
    if kind == "move":
        if path[: len(source)] == source and path != source:
            raise Unprocessable(f"operation {index}: cannot move a value into itself")
        doc = _remove(doc, source, index)
    return _add(doc, path, value, index)


def _parent(doc, path: list[str], index: int):
    target = doc
    for part in path[:-1]:
        target = _step(target, part, index)
    return target


def _step(target, part: str, index: int):
    try:
        if type(target) is list:
            return target[int(part)]
        return target[part]
    except (KeyError, ValueError, IndexError, TypeError):
        raise Unprocessable(f"operation {index}: path segment {part!r} does not exist") from None


def _get(doc, path: list[str], index: int):
    target = doc
    for part in path:
        target = _step(target, part, index)
    return target


def _add(doc, path: list[str], value, index: int):
    if not path:
        return value
    parent, last = _parent(doc, path, index), path[-1]
    if type(parent) is list:
        position = len(parent) if last == "-" else _list_index(last, len(parent) + 1, index)
        parent.insert(position, value)
    elif type(parent) is dict:
        parent[last] = value
    else:
        raise Unprocessable(f"operation {index}: cannot add under a {type(parent).__name__}")
    return doc


def _remove(doc, path: list[str], index: int):
    if not path:
        raise Unprocessable(f"operation {index}: cannot remove the whole resource")
    parent, last = _parent(doc, path, index), path[-1]
    if type(parent) is list:
        del parent[_list_index(last, len(parent), index)]
    elif type(parent) is dict and last in parent:
        del parent[last]
    else:
        raise Unprocessable(f"operation {index}: nothing to remove at /{'/'.join(path)}")
    return doc


def _list_index(part: str, limit: int, index: int) -> int:
    if not part.isdigit() or int(part) >= limit:
        raise Unprocessable(f"operation {index}: {part!r} is not a valid array index here")
    return int(part)
