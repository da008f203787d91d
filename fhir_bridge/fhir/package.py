"""Loads a folder of FHIR conformance resources (JSON) and indexes them by canonical URL."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fhir_bridge.errors import ConfigurationError

GENERATED = {"r4-core"}  # compact generated base definitions, not FHIR resources


@dataclass
class ConformancePackage:
    """Conformance resources by type and canonical URL (`url` and `url|version` both resolve)."""

    by_type: dict[str, list[dict]] = field(default_factory=dict)
    by_url: dict[str, dict] = field(default_factory=dict)
    source_of: dict[int, Path] = field(default_factory=dict)

    def add(self, resource: dict, source: Path | None = None) -> None:
        rtype = resource.get("resourceType")
        if not rtype:
            raise ConfigurationError(f"{source}: not a FHIR resource (no resourceType)")
        self.by_type.setdefault(rtype, []).append(resource)
        url = resource.get("url")
        if url:
            self.by_url[url] = resource
            if resource.get("version"):
                self.by_url[f"{url}|{resource['version']}"] = resource
        if source is not None:
            self.source_of[id(resource)] = source

    def resolve(self, canonical: str, resource_type: str | None = None) -> dict | None:
        found = self.by_url.get(canonical) or self.by_url.get(canonical.split("|", 1)[0])
        if found is not None and resource_type and found.get("resourceType") != resource_type:
            return None
        return found

    def of_type(self, resource_type: str) -> list[dict]:
        return self.by_type.get(resource_type, [])

    def where_from(self, resource: dict) -> str:
        return str(self.source_of.get(id(resource), "<memory>"))


def load_package(*folders: Path) -> ConformancePackage:
    """Every `*.json` file under the folders, skipping the generated base definitions."""
    package = ConformancePackage()
    for folder in folders:
        if not folder.is_dir():
            raise ConfigurationError(f"conformance folder {folder} does not exist")
        for path in sorted(folder.rglob("*.json")):
            if GENERATED & set(path.relative_to(folder).parts):
                continue
            try:
                resource = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}: not valid JSON: {exc}") from exc
            if not isinstance(resource, dict):
                raise ConfigurationError(f"{path}: not a FHIR resource")
            package.add(resource, path)
    return package
