"""Codecs for source formats that know nothing of FHIR: XML, CSV, HL7 v2."""
