"""Data quality rules, as MHSDS checks them: each field's validity (its XSD type and named checks)
and completeness, NHS number against its status, and bad data never making an invalid file: a
required value that is wrong leaves its record out with the reason; an optional one is blanked
and counted."""
from __future__ import annotations

import orjson
import pytest

from fhir_bridge.submission.values import CHECKS, TRANSFORMS, CheckContext, Period, ValueProblem
from tests.submission.builders import care_plan, contact, dialog, patient, referral
from tests.submission.conftest import PERIOD, reasons, submit, tables


def quality(result) -> dict:
    return orjson.loads(result.report_json.read_bytes())


def field(result, table: str, name: str) -> dict:
    return quality(result)["tables"][table]["fields"][name]


def one_person(store_of, out, **patient_fields):
    bridge = store_of([patient("p", client="1", **patient_fields), referral("r", "p", received="2026-01-01")])
    result = submit(bridge, out)
    [row] = tables(result)["MHS001MPI"]
    return result, row


@pytest.mark.parametrize("nhs, status, sent_number, sent_status, finding", [
    ("9990000018", "01", "9990000018", "01", None),
    ("999 000 0018", "01", "9990000018", "01", None),                     # spaces are not part of it
    ("9990000019", "01", "", "01", "status 01 (number present) without a valid number"),   # check digit
    ("1111111111", "02", "", "02", "status 02 (number present) without a valid number"),   # one digit
    ("9990000018", None, "9990000018", "", "number without a status"),
    ("9990000018", "07", "9990000018", "07", "number with status 07 (not present)"),
    ("9990000018", "08", "9990000018", "", "number without a status"),    # 08 is not valid in MHSDS
])
def test_nhs_number_and_its_status(store_of, out, nhs, status, sent_number, sent_status, finding):
    result, row = one_person(store_of, out, nhs=nhs, status=status)
    assert (row["NHSNumber"], row["NHSNumberStatus"]) == (sent_number, sent_status)
    assert quality(result)["nhsNumberConsistency"] == ({finding: 1} if finding else {})
    assert field(result, "MHS001MPI", "NHSNumber")["invalid"] == (0 if sent_number else 1)


@pytest.mark.parametrize("postcode, sent", [("e1 4ns", "E1 4NS"), ("SW1A1AA", "SW1A 1AA"), ("EC1V  2UF", "EC1V 2UF"),
                                            ("NOT KNOWN", ""), ("12345", "")])
def test_postcode(store_of, out, postcode, sent):
    result, row = one_person(store_of, out, postcode=postcode)
    assert row["Postcode"] == sent
    assert field(result, "MHS001MPI", "Postcode")["invalid"] == (0 if sent else 1)


@pytest.mark.parametrize("gender, sent", [("male", "1"), ("female", "2"), ("other", "9"), ("unknown", "X"), (None, "")])
def test_gender_codes(store_of, out, gender, sent):
    result, row = one_person(store_of, out, gender=gender)
    assert row["Gender"] == sent
    assert field(result, "MHS001MPI", "Gender")["completeness"] == (1.0 if sent else 0.0)


@pytest.mark.parametrize("ethnic, sent", [("A", "A"), ("z", "Z"), ("99", "99"), ("Q", ""), ("I", ""), (None, "")])
def test_ethnic_category_codes(store_of, out, ethnic, sent):
    result, row = one_person(store_of, out, ethnic=ethnic)
    assert row["EthnicCategory"] == sent
    assert field(result, "MHS001MPI", "EthnicCategory")["invalid"] == (1 if ethnic and not sent else 0)


def test_a_partial_birth_date_is_invalid_and_not_sent(store_of, out):
    result, row = one_person(store_of, out, birth="1980-04")
    assert row["PersonBirthDate"] == "" and field(result, "MHS001MPI", "PersonBirthDate")["invalid"] == 1


def test_pers_score_in_range():
    check = CHECKS["dialog-score"]
    plain, with_code = CheckContext(PERIOD, None), CheckContext(PERIOD, "8")
    assert [check(v, plain) for v in ("1", "4", "7")] == [None, None, None]
    assert all(check(v, plain) for v in ("0", "8", "9", "", "4.5", "seven"))
    assert check("8", with_code) is None and check("9", with_code)


def test_care_plan_type_must_be_an_mhsds_type(store_of, out):
    bridge = store_of([patient("p", client="1"), referral("r", "p", received="2026-01-01"),
                       care_plan("pl", "p", plan_type="15", agreed="2026-10-12T11:40:00+01:00", written="2026-10-12T10:00:00Z"),
                       care_plan("no-type", "p", plan_type="", written="2026-10-13T10:00:00Z")])
    result = submit(bridge, out)
    assert result.rows["MHS008CarePlanType"] == 0 and result.rows["MHS009CarePlanAgreement"] == 0
    found = reasons(result)
    assert ("CarePlan/pl", "CarePlanTypeMH is not one of 10, 11, 12, 13, 14") in found
    assert ("CarePlan/no-type", "CarePlanTypeMH is missing") in found


def test_an_agreement_dated_after_the_month_is_not_this_months(store_of, out):
    bridge = store_of([patient("p", client="1"), referral("r", "p", received="2026-01-01"),
                       care_plan("pl", "p", agreed="2026-11-01T09:00:00+00:00", written="2026-10-12T10:00:00Z")])
    result = submit(bridge, out)
    assert result.rows["MHS008CarePlanType"] == 1 and result.rows["MHS009CarePlanAgreement"] == 0
    assert {r for _, r in reasons(result)} == {"CarePlanContentAgreedDate is after the period end 2026-10-31"}
    assert result.measures["peopleWithAgreedCarePlan"] == 0


def test_dates_inside_the_period_checks():
    context = CheckContext(Period.parse("2026-02"), None)
    assert CHECKS["in-period"]("2026-02-28", context) is None
    assert CHECKS["in-period"]("2026-03-01", context) == "is outside the period 2026-02"
    assert CHECKS["in-period"]("2026-01-31T23:59:59", context)
    assert CHECKS["not-after-period-end"]("2025-01-01", context) is None
    assert CHECKS["not-after-period-end"]("2026-03-01", context) == "is after the period end 2026-02-28"


def test_transforms_read_fhir_times_in_uk_local_time():
    assert TRANSFORMS["date"]("2026-03-29T00:30:00Z") == "2026-03-29"          # GMT until 01:00
    assert TRANSFORMS["time"]("2026-03-29T01:30:00Z") == "02:30:00"            # BST from then
    assert TRANSFORMS["timestamp"]("2026-10-11") == "2026-10-11T00:00:00"
    assert TRANSFORMS["time"]("2026-10-11") is None
    with pytest.raises(ValueProblem, match="not a full date"):
        TRANSFORMS["date"]("2026-10")


def test_a_contact_code_not_in_mhsds_form_is_blanked_and_counted(store_of, out):
    bridge = store_of([patient("p", client="1"), referral("r", "p", received="2026-01-01"),
                       contact("c", "p", "r", start="2026-10-02", mechanism="face to face", attendance="5", local="1")])
    result = submit(bridge, out)
    [row] = tables(result)["MHS201CareContact"]
    assert row["ConsMechanismMH"] == "" and row["AttendStatus"] == "5"
    assert field(result, "MHS201CareContact", "ConsMechanismMH")["invalid"] == 1


def test_completeness_and_validity_are_per_field(store_of, out):
    bridge = store_of([patient("a", client="1"), patient("b", client="2", postcode=None, nhs=None, status=None),
                       referral("ra", "a", received="2026-01-01"), referral("rb", "b", received="2026-01-01")])
    result = submit(bridge, out)
    postcode = field(result, "MHS001MPI", "Postcode")
    assert (postcode["complete"], postcode["completeness"], postcode["validity"]) == (1, 0.5, 1.0)
    assert field(result, "MHS001MPI", "LocalPatientId")["completeness"] == 1.0
    assert field(result, "MHS001MPI", "GenderIDCode")["completeness"] == 0.0   # unmapped: never sent


def test_a_dialog_with_nothing_rated_is_left_out(store_of, out):
    bridge = store_of([patient("p", client="1"), referral("r", "p", received="2026-01-01"),
                       dialog("d", "p", authored="2026-10-03T10:00:00+01:00", ratings={"medication": 8, "meetings": 8})])
    result = submit(bridge, out)
    assert ("QuestionnaireResponse/d", "no item rated 1-7 to submit") in reasons(result)
    assert result.measures["dialogsSubmitted"] == 0
