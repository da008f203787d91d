"""FHIR Parameters for operations: `Params` reads the inputs, `parameters()` builds the output.

Operation inputs come from the query string (GET) or a Parameters resource (POST, JSON or XML);
a missing or malformed input is a 400 whose message names the parameter.
"""
from __future__ import annotations

from fastapi import Request

from fhir_bridge.api import context as ctx
from fhir_bridge.errors import InputError

__all__ = ["Params", "parameters", "read_params"]

CONTROL_PARAMS = {"_format", "_pretty"}


class Params:
    """Operation inputs by name: strings from a query string, typed values (value[x] contents or
    resources) from a Parameters resource."""

    def __init__(self, values: dict[str, list[object]]):
        self._values = values

    @classmethod
    def from_query(cls, request: Request) -> "Params":
        values: dict[str, list[object]] = {}
        for name, value in request.query_params.multi_items():
            if name not in CONTROL_PARAMS:
                values.setdefault(name, []).append(value)
        return cls(values)

    @classmethod
    def from_parameters(cls, parameters: dict) -> "Params":
        entries = parameters.get("parameter", [])
        if type(entries) is not list:
            raise InputError("Parameters.parameter must be a list", expression="Parameters.parameter")
        values: dict[str, list[object]] = {}
        for i, entry in enumerate(entries):
            if type(entry) is not dict or type(entry.get("name")) is not str:
                raise InputError(f"Parameters.parameter[{i}] has no name", expression=f"Parameters.parameter[{i}]")
            value = entry.get("resource")
            if value is None:
                value = next((v for k, v in entry.items() if k.startswith("value")), None)
            if value is not None:  # parameters made of parts are not inputs of any operation here
                values.setdefault(entry["name"], []).append(value)
        return cls(values)

    def over(self, fallback: "Params") -> "Params":
        """These values, and the fallback's for names these lack (a POST body over its query string)."""
        return Params({**fallback._values, **self._values})

    def all(self, name: str) -> list[object]:
        return self._values.get(name, [])

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self._one(name, required)
        if value is None:
            return None
        if type(value) is not str or not value.strip():
            raise InputError(f"Parameter '{name}' must be a non-empty string")
        return value.strip()

    def flag(self, name: str) -> bool:
        value = self._one(name, False)
        if value is None or type(value) is bool:
            return bool(value)
        if value in ("true", "false"):
            return value == "true"
        raise InputError(f"Parameter '{name}' must be true or false, not {value!r}")

    def count(self, name: str) -> int | None:
        value = self._one(name, False)
        if value is None:
            return None
        if type(value) is int and value >= 0:
            return value
        if type(value) is str and value.isdigit():
            return int(value)
        raise InputError(f"Parameter '{name}' must be a whole number >= 0, not {value!r}")

    def resource(self, name: str, *, required: bool = False) -> dict | None:
        value = self._one(name, required)
        if value is not None and (type(value) is not dict or "resourceType" not in value):
            raise InputError(f"Parameter '{name}' must be a resource")
        return value

    def coding(self, name: str) -> dict | None:
        value = self.element(name)
        if value is not None and type(value.get("code")) is not str:
            raise InputError(f"Parameter '{name}' must be a Coding with a code")
        return value

    def element(self, name: str) -> dict | None:
        """A complex-typed value (Coding, CodeableConcept); only a Parameters body can carry one."""
        value = self._one(name, False)
        if value is not None and type(value) is not dict:
            raise InputError(f"Parameter '{name}' must be a complex value, sent in a Parameters resource")
        return value

    def names(self) -> list[str]:
        return list(self._values)

    def _one(self, name: str, required: bool) -> object | None:
        values = self.all(name)
        if not values:
            if required:
                raise InputError(f"Parameter '{name}' is required")
            return None
        if len(values) > 1:
            raise InputError(f"Parameter '{name}' may be given once only")
        return values[0]


async def read_params(request: Request) -> Params:
    """GET: the query string. POST: a Parameters body over the query string (or the query alone)."""
    query = Params.from_query(request)
    if request.method == "GET":
        return query
    data = await ctx.read_body(request)
    if not data.strip():
        return query
    body = ctx.parse_resource(request, data)
    if body.get("resourceType") != "Parameters":
        raise InputError(f"This operation takes a Parameters resource, not a {body.get('resourceType')!r}")
    return Params.from_parameters(body).over(query)


def parameters(*pairs: tuple[str, dict] | None) -> dict:
    """A Parameters resource from (name, {"valueX": ...}) pairs; None pairs are left out."""
    return {"resourceType": "Parameters",
            "parameter": [{"name": name, **value} for name, value in filter(None, pairs)]}
