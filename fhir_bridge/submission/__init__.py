"""MHSDS-style submissions, as data: the XSD (xsd), the FHIR -> MHSDS mapping (mapping, paths,
values), rows from resources (rows), which DIALOG entries go (dialogs), one person's rows with the
period rules (assembly), the files (files) and the data quality report (quality). No store access:
pipelines/submission_mhsds.py feeds it what the store holds."""
from fhir_bridge.submission.assembly import Assembler, PersonRecords, PersonRows
from fhir_bridge.submission.dialogs import PURPOSES, DialogPolicy, StoredDialog
from fhir_bridge.submission.files import TableFiles, read_table, validate_xml, write_xml
from fhir_bridge.submission.mapping import SubmissionMapping, load_submission_mapping
from fhir_bridge.submission.quality import Quality
from fhir_bridge.submission.rows import LeftOut, Row, RowMaker
from fhir_bridge.submission.values import Period
from fhir_bridge.submission.xsd import SubmissionSchema, load_schema

__all__ = ["Assembler", "PersonRecords", "PersonRows", "PURPOSES", "DialogPolicy", "StoredDialog", "TableFiles",
           "read_table", "validate_xml", "write_xml", "SubmissionMapping", "load_submission_mapping", "Quality",
           "LeftOut", "Row", "RowMaker", "Period", "SubmissionSchema", "load_schema"]
