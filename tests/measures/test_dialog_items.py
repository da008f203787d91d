import copy

import pytest

from fhir_bridge.errors import ConfigurationError, InputError
from fhir_bridge.measures import build_dialog_definition, load_dialog_definition, score_dialog
from fhir_bridge.measures.dialog_items import DIALOG_RATING_SYSTEM

MHSDS_ORDER = ["mental-health", "physical-health", "job-situation", "accommodation", "leisure-activities",
               "friendships", "partner-family", "personal-safety", "medication", "practical-help", "meetings"]


def _rating_item(questionnaire, domain_code):
    return next(i for i in questionnaire["item"]
                if any(c.get("code") == domain_code and c["system"].endswith("/dialog-domain") for c in i.get("code", [])))


def test_domains_come_in_mhsds_order_with_their_parts(definition):
    assert [d.code for d in definition.domains] == MHSDS_ORDER
    assert [d.part for d in definition.domains] == ["sqol"] * 8 + ["treatment"] * 3
    assert [d.in_change_measures for d in definition.domains] == [True] * 8 + [False] * 3


def test_qmul_numbering_swaps_friendships_and_partner_family(definition):
    friendships, partner = definition.domain("friendships"), definition.domain("partner-family")
    assert (friendships.mhsds_item, friendships.qmul_item) == (6, 7)
    assert (partner.mhsds_item, partner.qmul_item) == (7, 6)
    assert friendships.snomed == "1037701000000108"
    assert partner.snomed == "1037711000000105"


def test_ratings_by_domain_reads_positions_in_the_named_order(definition):
    values = list(range(1, 12))
    mhsds = definition.ratings_by_domain(values, "mhsds")
    qmul = definition.ratings_by_domain(values, "qmul")
    assert mhsds["friendships"] == 6 and mhsds["partner-family"] == 7
    assert qmul["friendships"] == 7 and qmul["partner-family"] == 6
    assert {k: v for k, v in mhsds.items() if k not in ("friendships", "partner-family")} == \
           {k: v for k, v in qmul.items() if k not in ("friendships", "partner-family")}


def test_ratings_by_domain_refuses_a_short_row_or_an_unknown_order(definition):
    with pytest.raises(InputError):
        definition.ratings_by_domain([4] * 10, "mhsds")
    with pytest.raises(ValueError):
        definition.ratings_by_domain([4] * 11, "snomed")


def test_loading_is_cached_per_folder(conformance):
    assert load_dialog_definition(*conformance) is load_dialog_definition(*map(str, conformance))


def test_items_are_found_by_code_not_by_linkid(sources):
    questionnaire, codesystem = sources
    for number, item in enumerate(questionnaire["item"], start=1):
        item["linkId"] = f"q{number}"  # a form that numbers its questions
    renamed = build_dialog_definition(questionnaire, codesystem)
    link = renamed.rating_item_for(renamed.domain("medication")).link_id
    qr = {"resourceType": "QuestionnaireResponse",
          "item": [{"linkId": link, "answer": [{"valueCoding": {"system": DIALOG_RATING_SYSTEM, "code": "6"}}]}]}
    assert score_dialog(qr, renamed).ratings == {**{d.code: None for d in renamed.domains}, "medication": 6}


def test_a_snomed_code_that_disagrees_with_the_codesystem_fails_loading(sources):
    questionnaire, codesystem = sources
    # The classic mapping slip: friendships' question carries partner/family's concept.
    snomed = next(c for c in _rating_item(questionnaire, "friendships")["code"] if c["system"] == "http://snomed.info/sct")
    snomed["code"] = "1037711000000105"
    with pytest.raises(ConfigurationError, match="friendships"):
        build_dialog_definition(questionnaire, codesystem)


def test_a_corrupted_sctid_in_the_codesystem_fails_loading(sources):
    questionnaire, codesystem = sources
    prop = next(p for p in codesystem["concept"][1]["property"] if p["code"] == "snomed-item")
    prop["valueCode"] = "1037661000000100"  # spreadsheet truncation
    with pytest.raises(ConfigurationError, match="Verhoeff"):
        build_dialog_definition(questionnaire, codesystem)


def test_duplicated_item_numbers_fail_loading(sources):
    questionnaire, codesystem = sources
    prop = next(p for p in codesystem["concept"][6]["property"] if p["code"] == "qmul-item")
    prop["valueInteger"] = 7  # friendships is already qmul 7
    with pytest.raises(ConfigurationError, match="qmul-item"):
        build_dialog_definition(questionnaire, codesystem)


def test_a_domain_without_a_rating_question_fails_loading(sources):
    questionnaire, codesystem = sources
    questionnaire["item"].remove(_rating_item(questionnaire, "meetings"))
    with pytest.raises(ConfigurationError, match="missing \\['meetings'\\]"):
        build_dialog_definition(questionnaire, codesystem)


def test_an_ordinal_that_disagrees_with_its_code_fails_loading(sources):
    questionnaire, codesystem = sources
    option = _rating_item(questionnaire, "accommodation")["answerOption"][2]
    for holder in (option, option["valueCoding"]):
        for ext in holder.get("extension", []):
            ext["valueDecimal"] = 5
    with pytest.raises(ConfigurationError, match="accommodation"):
        build_dialog_definition(questionnaire, codesystem)


def test_a_different_questionnaire_is_refused(sources):
    questionnaire, codesystem = sources
    other = copy.deepcopy(questionnaire)
    other["url"] = "https://example.org/Questionnaire/phq9"
    with pytest.raises(ConfigurationError, match="phq9"):
        build_dialog_definition(other, codesystem)


def test_a_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigurationError, match="Questionnaire-dialog.json|CodeSystem-dialog-domain.json"):
        load_dialog_definition(tmp_path, tmp_path)
