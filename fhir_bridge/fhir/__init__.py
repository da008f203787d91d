"""FHIR plumbing with no domain knowledge: base structure model, codecs, OperationOutcome."""
