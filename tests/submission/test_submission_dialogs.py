"""Which DIALOG entries are submitted: the settings (purposes, duplicates, recorders, the code for
items answered 8) and their documented defaults."""
from __future__ import annotations

import pytest

from fhir_bridge.config import Settings
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.pipelines.submission_mhsds import policy_from
from fhir_bridge.submission import DialogPolicy
from fhir_bridge.submission.dialogs import ENTRY_FLAG
from tests.submission.builders import DOMAINS, contact, dialog, patient, referral
from tests.submission.conftest import reasons, submit, tables

P = "p"


def month(store_of, *dialogs):
    return store_of([patient(P, client="1"), referral("r", P, received="2026-01-01", local="5"), *dialogs])


def submitted(result) -> int:
    return result.measures["dialogsSubmitted"]


def test_the_defaults_are_prom_entries_any_partners_28_days_and_8_left_out():
    assert policy_from(Settings()) == DialogPolicy(("prom",), "any", 28, None)
    assert policy_from(Settings.from_env({"FHIR_BRIDGE_MHSDS_DIALOG_PURPOSES": "prom,care-planning",
                                          "FHIR_BRIDGE_MHSDS_DIALOG_RECORDERS": "provider",
                                          "FHIR_BRIDGE_MHSDS_DUPLICATE_DAYS": "0",
                                          "FHIR_BRIDGE_MHSDS_NOT_ANSWERED_CODE": "8"})) == \
        DialogPolicy(("prom", "care-planning"), "provider", 0, "8")
    with pytest.raises(ValueError, match="FHIR_BRIDGE_MHSDS_DIALOG_PURPOSES"):
        Settings.from_env({"FHIR_BRIDGE_MHSDS_DIALOG_PURPOSES": "everything"})
    with pytest.raises(ValueError, match="FHIR_BRIDGE_MHSDS_NOT_ANSWERED_CODE"):
        Settings.from_env({"FHIR_BRIDGE_MHSDS_NOT_ANSWERED_CODE": "n/a"})
    with pytest.raises(ConfigurationError, match="FHIR_BRIDGE_MHSDS_DUPLICATE_DAYS"):
        policy_from(Settings(mhsds_duplicate_days=-1))


def test_care_planning_entries_are_left_out_unless_the_setting_takes_them(store_of, out, tmp_path):
    bridge = month(store_of, dialog("plan", P, authored="2026-10-03T10:00:00+01:00", purpose="care-planning",
                                    timepoint="other"))
    result = submit(bridge, out)
    assert submitted(result) == 0
    [(record, reason)] = reasons(result)
    assert record == "QuestionnaireResponse/plan" and reason.startswith("care-planning entry")
    both = submit(bridge, tmp_path / "both", policy=DialogPolicy(purposes=("prom", "care-planning")))
    assert submitted(both) == 1


def test_possible_duplicates_are_left_out_at_the_same_timepoint_within_the_window(store_of, out, tmp_path):
    bridge = month(store_of,
                   dialog("a", P, authored="2026-10-01T10:00:00+01:00", timepoint="review"),
                   dialog("b", P, authored="2026-10-20T10:00:00+01:00", timepoint="review", recorder="X9V2K"),
                   dialog("c", P, authored="2026-10-21T10:00:00+01:00", timepoint="discharge"),
                   dialog("d", P, authored="2026-10-30T10:00:00Z", timepoint="review"))   # 29 days after a
    result = submit(bridge, out)
    assert submitted(result) == 3
    [(record, reason)] = reasons(result)
    assert record == "QuestionnaireResponse/b" and reason.startswith("possible duplicate")
    assert submitted(submit(bridge, tmp_path / "off", policy=DialogPolicy(duplicate_days=0))) == 4
    assert submitted(submit(bridge, tmp_path / "short", policy=DialogPolicy(duplicate_days=7))) == 4


def test_an_entry_tagged_a_possible_duplicate_when_written_is_left_out(store_of, out):
    tag = [{"system": ENTRY_FLAG, "code": "possible-duplicate"}]
    bridge = month(store_of, dialog("t", P, authored="2026-10-03T10:00:00+01:00", tags=tag))
    assert reasons(submit(bridge, out)) == {("QuestionnaireResponse/t", "tagged a possible duplicate when it was recorded")}


def test_the_providers_own_dialogs_only_when_set(store_of, out, tmp_path):
    bridge = month(store_of, dialog("trust", P, authored="2026-10-03T10:00:00+01:00", recorder="RXX"),
                   dialog("vcse", P, authored="2026-10-04T10:00:00+01:00", recorder="X9V2K", timepoint="review"))
    assert submitted(submit(bridge, out)) == 2
    own = submit(bridge, tmp_path / "own", policy=DialogPolicy(recorders="provider"))
    assert submitted(own) == 1
    assert {r for r, _ in reasons(own)} == {"QuestionnaireResponse/vcse"}


def test_a_dialog_not_completed_is_left_out(store_of, out):
    bridge = month(store_of, dialog("draft", P, authored="2026-10-03T10:00:00+01:00", status="in-progress"))
    assert {r for _, r in reasons(submit(bridge, out))} == {"status in-progress: not a completed DIALOG"}


def test_items_answered_8_are_left_out_or_sent_as_the_configured_code(store_of, out, tmp_path):
    ratings = {**{d: 5 for d in DOMAINS[:6]}, "partner-family": 8, "personal-safety": 8}   # 3 not answered at all
    bridge = month(store_of, dialog("d", P, authored="2026-10-03T10:00:00+01:00", ratings=ratings))
    left = submit(bridge, out)
    assert left.rows["MHS606CodedScoreAssessmentRefer"] == 6 and left.measures["itemsNotAnsweredLeftOut"] == 2
    sent = submit(bridge, tmp_path / "sent", policy=DialogPolicy(not_answered_code="8"))
    scores = [r["PersScore"] for r in tables(sent)["MHS606CodedScoreAssessmentRefer"]]
    assert scores == ["5"] * 6 + ["8", "8"] and sent.measures["itemsNotAnsweredLeftOut"] == 0


def test_a_dialog_done_in_a_contact_of_the_file_goes_to_mhs607(store_of, out):
    bridge = month(store_of, contact("c", P, "r", start="2026-10-03T10:00:00+01:00", local="77"),
                   dialog("in-contact", P, authored="2026-10-03T10:30:00+01:00", encounter_id="c"),
                   dialog("contact-not-in-file", P, authored="2026-10-05T10:30:00+01:00", encounter_id="elsewhere",
                          timepoint="review"))
    result = tables(submit(bridge, out))
    assert {r["CareActId"] for r in result["MHS607CodedScoreAssessmentAct"]} == {"77"}
    assert {r["ServiceRequestId"] for r in result["MHS606CodedScoreAssessmentRefer"]} == {"5"}
    assert len(result["MHS607CodedScoreAssessmentAct"]) == len(result["MHS606CodedScoreAssessmentRefer"]) == 11
