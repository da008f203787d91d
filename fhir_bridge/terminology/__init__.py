"""Terminology as data: the project's CodeSystems, ValueSets and ConceptMaps (terminology/) and the
code lists of the value sets the FHIR R4 base spec binds (terminology/r4-core/)."""
from fhir_bridge.terminology.service import CodeCheck, Concept, Terminology, Translation

__all__ = ["CodeCheck", "Concept", "Terminology", "Translation"]
