"""The FHIR element paths mapping files name: `a.b[0].c`, filtered by a child's value
(`identifier[system=https://fhir.nhs.uk/Id/nhs-number].value`), nothing more.

Not FHIRPath: a closed, small syntax compiled once into closures, so a bad path fails at load and
reading a million rows costs dict lookups. As in FHIRPath, a step over a list visits every
element, so a path yields every value it reaches (`first` takes the first that is not blank).
A filter's left side is itself a path (`participant[role.coding.code=key-worker]`): an element
matches when any value it reaches equals the text on the right (booleans read `true`/`false`).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Path", "PathError", "compile_path", "first"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


class PathError(ValueError):
    """A path the syntax does not allow; the loader names the file and rule."""


class Path:
    """A compiled path. Calling it yields every value it reaches; `first` walks depth first and
    stops at the first value that is not blank (what a field reads: most paths have one)."""

    __slots__ = ("text", "_steps", "_names")

    def __init__(self, text: str, steps: list[Callable[[Any], list[Any]]], names: tuple[str, ...] | None):
        self.text = text
        self._steps = steps
        self._names = names   # a path of plain names (most are): read with dict lookups alone

    def __call__(self, element: Any) -> Iterator[Any]:
        values = [element]
        for step in self._steps:
            values = [v for value in values for v in step(value)]
            if not values:
                break
        return iter(values)

    def first(self, element: Any) -> Any:
        if self._names is not None:
            return _first_plain(self._names, 0, element)
        return _first(self._steps, 0, element)


def compile_path(text: str) -> Path:
    if not isinstance(text, str) or not text.strip():
        raise PathError("a path is a non-empty text")
    parts = _split(text.strip(), text)
    names = tuple(parts) if all(_NAME.match(part) for part in parts) else None
    return Path(text, [_compile_step(step, text) for step in parts], names)


def first(path: Path, element: Any) -> Any:
    """The first value the path reaches that is not None or blank text; None if there is none."""
    return path.first(element)


def _first(steps: list, position: int, value: Any) -> Any:
    if position == len(steps):
        if value is None or (type(value) is str and not value.strip()):
            return None
        return value
    for child in steps[position](value):
        found = _first(steps, position + 1, child)
        if found is not None:
            return found
    return None


def _first_plain(names: tuple[str, ...], position: int, value: Any) -> Any:
    for at in range(position, len(names)):
        if type(value) is not dict:
            return None
        value = value.get(names[at])
        if type(value) is list:
            for element in value:
                found = _first_plain(names, at + 1, element)
                if found is not None:
                    return found
            return None
        if value is None:
            return None
    if type(value) is str and not value.strip():
        return None
    return value


def _split(text: str, whole: str) -> list[str]:
    """`a.b[x=1.2].c` -> a, b[x=1.2], c: dots inside brackets (URLs) do not split."""
    steps, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise PathError(f"{whole!r}: ']' without '['")
        elif char == "." and depth == 0:
            steps.append(text[start:position])
            start = position + 1
    if depth:
        raise PathError(f"{whole!r}: '[' without ']'")
    steps.append(text[start:])
    return steps


def _compile_step(step: str, whole: str) -> Callable[[Any], list[Any]]:
    name, bracket, rest = step.partition("[")
    if not _NAME.match(name):
        raise PathError(f"{whole!r}: {step!r} is not an element name")
    if not bracket:
        return lambda value: _child(value, name)
    if not rest.endswith("]"):
        raise PathError(f"{whole!r}: {step!r}: text after ']'")
    inside = rest[:-1]
    if inside.isdigit():
        index = int(inside)

        def at(value: Any) -> list[Any]:
            found = value.get(name) if isinstance(value, dict) else None
            if isinstance(found, list):
                return [found[index]] if index < len(found) else []
            return [found] if index == 0 and found is not None else []
        return at
    key, equals, wanted = inside.partition("=")
    if not equals or not key.strip():
        raise PathError(f"{whole!r}: {step!r}: a filter is [n] or [path=value]")
    key_path = compile_path(key.strip())
    wanted = wanted.strip()
    if _NAME.match(key.strip()):   # [system=...], [url=...]: the common case, one lookup per element
        child = key.strip()

        def where_child(value: Any) -> list[Any]:
            found = []
            for element in _child(value, name):
                if type(element) is dict:
                    key_value = element.get(child)
                    if key_value == wanted or (key_value is not None and type(key_value) is not str
                                               and any(_text(v) == wanted for v in key_path(element))):
                        found.append(element)
            return found
        return where_child

    def where(value: Any) -> list[Any]:
        return [element for element in _child(value, name) if any(_text(v) == wanted for v in key_path(element))]
    return where


def _child(value: Any, name: str) -> list[Any]:
    if type(value) is not dict:
        return []
    found = value.get(name)
    if found is None:
        return []
    return found if type(found) is list else [found]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)
