"""fhir-bridge: FHIR R4 interoperability adapter for NHS mental health services."""

__version__ = "0.1.0"
