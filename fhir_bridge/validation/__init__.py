"""Profile validation: FHIR R4 base + profiles/ StructureDefinitions + Questionnaire checks."""
from fhir_bridge.validation.validator import ValidationResult, Validator

__all__ = ["ValidationResult", "Validator"]
