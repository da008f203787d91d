"""Outputs: what leaves the store for partners (store -> outputs, the last step of the one-way flow).

Today: DIALOG responses as HL7 v2.4 ORU^R01 messages for the trust EPR, built from a declarative
outbound mapping (mappings/hl7-out/), validated with hl7apy, written to a file or sent over MLLP.
"""
from fhir_bridge.outputs.dialog_oru import RECORD, dialog_oru_record, hl7_timestamp, recorder_of
from fhir_bridge.outputs.hl7_mapping import OutboundMapping, RecordShape, load_outbound_mapping

__all__ = ["RECORD", "OutboundMapping", "RecordShape", "dialog_oru_record", "hl7_timestamp", "load_outbound_mapping",
           "recorder_of"]
