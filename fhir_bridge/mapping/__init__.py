"""The generic mapping engine: mapping files (mappings/) are data, read by the loader into a closed
rule vocabulary and run by one engine for every source (habit 1 of the architecture guide)."""
from fhir_bridge.mapping.engine import MappingEngine, MappingIssue, MappingResult, resource_id
from fhir_bridge.mapping.loader import load_mapping, load_mappings
from fhir_bridge.mapping.report import MappingReport
from fhir_bridge.mapping.rules import SourceMapping
from fhir_bridge.mapping.transforms import REGISTRY, MappingProblem

__all__ = [
    "REGISTRY",
    "MappingEngine",
    "MappingIssue",
    "MappingProblem",
    "MappingReport",
    "MappingResult",
    "SourceMapping",
    "load_mapping",
    "load_mappings",
    "resource_id",
]
