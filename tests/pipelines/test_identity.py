"""Identity linking against a real store: NHS number, exact demographics, review, new; and the
merge of demographics by source trust."""
from __future__ import annotations

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.pipelines.identity import (NHS_SYSTEM, IdentityResolver, Link, element_sources, new_patient_id,
                                            source_of)
from tests.postgres import BACKENDS, throwaway_database_url

TRUST = ("pds", "rio", "hl7", "vcse", "dialog-app")


def patient(pid: str | None = None, *, nhs: str | None = None, family="Okafor", given="Ada", born="1980-04-02",
            postcode="E1 4NS", **more) -> dict:
    p = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "birthDate": born,
         "address": [{"postalCode": postcode}], **more}
    if pid:
        p["id"] = pid
    if nhs:
        p["identifier"] = [{"system": NHS_SYSTEM, "value": nhs}]
    return p


@pytest.fixture(params=BACKENDS)
def bridge(request, tmp_path, validator):
    """A real store on SQLite and, when configured, PostgreSQL (the matching SQL differs by dialect)."""
    for url in throwaway_database_url(request.param, tmp_path / "identity.db"):
        b = Bridge(Settings(data_dir=tmp_path, database_url=url), validator=validator)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def resolver(bridge):
    return IdentityResolver(bridge.repository, TRUST)


def store(bridge, *patients):
    with bridge.repository.unit_of_work() as uow:
        for p in patients:
            uow.create(p)


def test_nhs_number_links_whatever_the_other_details(bridge, resolver):
    store(bridge, patient("a", nhs="9434765919"))
    link = resolver.resolve(patient(nhs="943 476 5919", family="Okafor-Smith", postcode="N1 1AA"))
    assert (link.action, link.patient_id) == ("nhs-number", "a")


def test_exact_details_link_without_an_nhs_number(bridge, resolver):
    store(bridge, patient("a", nhs="9434765919"), patient("b", family="Other"))
    link = resolver.resolve(patient(family=" OKAFOR ", given="ada", postcode="e14ns"))
    assert (link.action, link.patient_id) == ("demographics", "a")


def test_same_details_but_another_nhs_number_is_a_review(bridge, resolver):
    store(bridge, patient("a", nhs="9434765919"))
    link = resolver.resolve(patient(nhs="9434765870"))
    assert link.action == "review" and link.candidates == ("a",) and "another NHS number" in link.reason


def test_weaker_match_is_a_review_never_a_link(bridge, resolver):
    store(bridge, patient("a"))
    link = resolver.resolve(patient(given="Adaeze"))
    assert link.action == "review" and link.candidates == ("a",) and link.patient_id is None


def test_two_exact_matches_is_a_review(bridge, resolver):
    store(bridge, patient("a"), patient("b"))
    link = resolver.resolve(patient())
    assert link.action == "review" and set(link.candidates) == {"a", "b"}


def test_too_few_details_without_nhs_number_is_a_review(bridge, resolver):
    link = resolver.resolve({"resourceType": "Patient", "id": "x", "name": [{"family": "Okafor", "given": ["Ada"]}]})
    assert link.action == "review" and "too few details" in link.reason


def test_nobody_like_them_is_a_new_patient(bridge, resolver):
    store(bridge, patient("a"))
    assert resolver.resolve(patient("vcse-7", family="Brown", born="1990-01-01")) == Link("new", "vcse-7")
    with_nhs = resolver.resolve(patient(nhs="9434765870", family="Brown"))
    assert (with_nhs.action, with_nhs.patient_id) == ("new", new_patient_id("9434765870"))


def test_deleted_patients_are_not_matched(bridge, resolver):
    store(bridge, patient("a"))
    with bridge.repository.unit_of_work() as uow:
        uow.delete("Patient", "a")
    assert resolver.resolve(patient("n")).action == "new"


def test_merge_unites_identifiers_and_the_more_trusted_source_wins(resolver):
    existing = patient("a", nhs="9434765919", gender="female", meta={"source": "https://fhir-bridge.example.org/source/rio"})
    local = {"system": "https://vcse.example.org/client", "value": "C-17"}
    incoming = patient(gender="male", identifier=[local], telecom=[{"system": "phone", "value": "07700 900123"}])
    merged = resolver.merge(existing, incoming, "vcse")
    assert merged.patient["gender"] == "female"                      # rio outranks vcse
    assert merged.patient["telecom"] == incoming["telecom"]          # new information is added
    assert local in merged.patient["identifier"] and len(merged.patient["identifier"]) == 2
    [d] = merged.disagreements
    assert (d.element, d.kept, d.other, d.kept_from, d.other_from) == ("gender", "female", "male", "rio", "vcse")
    assert source_of(merged.patient) == "rio"

    trusted = resolver.merge(existing, incoming, "pds")
    assert trusted.patient["gender"] == "male" and source_of(trusted.patient) == "pds"
    assert trusted.disagreements[0].kept_from == "pds"


def test_only_two_sources_saying_different_things_is_a_disagreement(resolver):
    """Not the same name written differently (its `use`, letter case, spaces), nor a source
    updating what it said itself (a new postcode from the same feed): those were most of the
    report's lines."""
    rio = {"source": "https://fhir-bridge.example.org/source/rio"}
    existing = patient("a", nhs="9434765919", meta=rio, postcode="E8 4WW")
    existing["name"] = [{"use": "official", "family": "Nguyen", "given": ["Lan"]}]
    written_otherwise = patient(family="NGUYEN ", given="Lan", postcode="E8 4WW")
    assert not resolver.merge(existing, written_otherwise, "hl7").disagreements
    moved = resolver.merge(existing, patient(family="Nguyen", given="Lan", postcode="E8 3XY"), "rio")
    assert not moved.disagreements and moved.patient["address"] == [{"postalCode": "E8 3XY"}]
    other = resolver.merge(existing, patient(family="Nguyen", given="Lan", postcode="N1 1AA"), "vcse")
    assert [d.element for d in other.disagreements] == ["address"]


def test_trust_is_judged_per_element_by_the_source_that_said_it(resolver, validator):
    """A telephone number a VCSE partner filled in on a RiO Patient gives way to the HL7 feed's
    (more trusted than the VCSE, less than RiO), though the Patient came from RiO; what RiO said
    still outranks HL7. Merging the same record again changes nothing."""
    rio = patient("a", nhs="9434765919", gender="female", meta={"source": "https://fhir-bridge.example.org/source/rio"})
    vcse_phone, hl7_phone = [{"system": "phone", "value": "07700 900123"}], [{"system": "phone", "value": "020 7946 0000"}]
    with_vcse = resolver.merge(rio, patient(telecom=vcse_phone), "vcse").patient
    assert with_vcse["telecom"] == vcse_phone and source_of(with_vcse) == "rio"
    assert element_sources(with_vcse) == {"telecom": "vcse"}
    merged = resolver.merge(with_vcse, patient(gender="male", telecom=hl7_phone), "hl7")
    assert merged.patient["telecom"] == hl7_phone and merged.patient["gender"] == "female"
    assert {(d.element, d.kept_from, d.other_from) for d in merged.disagreements} == {
        ("telecom", "hl7", "vcse"), ("gender", "rio", "hl7")}
    assert element_sources(merged.patient) == {"telecom": "hl7"} and source_of(merged.patient) == "rio"
    assert resolver.merge(merged.patient, patient(gender="male", telecom=hl7_phone), "hl7").patient == merged.patient
    assert validator.validate({**merged.patient, "meta": {**merged.patient["meta"], "profile": [
        "https://fhir-bridge.example.org/StructureDefinition/bridge-patient"]}}).valid


def test_a_more_trusted_source_becomes_the_patients_and_the_rest_keeps_its_own(resolver):
    rio = patient("a", nhs="9434765919", meta={"source": "https://fhir-bridge.example.org/source/rio"})
    pds = resolver.merge(rio, {"resourceType": "Patient", "name": rio["name"], "birthDate": rio["birthDate"]}, "pds")
    assert source_of(pds.patient) == "pds" and not pds.disagreements
    assert element_sources(pds.patient) == {"address": "rio"}  # pds said nothing of the address
    assert resolver.merge(rio, patient(), "rio").patient["meta"] == {"source": "https://fhir-bridge.example.org/source/rio"}


def test_sources_of_one_rank_saying_the_same_do_not_take_the_record_in_turn(resolver):
    """Two sources missing from the trust order (one rank) importing the same person again and
    again: the Patient stays as it is, not a new version each time with the other's name on it."""
    first = patient("a", nhs="9434765919", meta={"source": "https://fhir-bridge.example.org/source/council-a"})
    second = resolver.merge(first, patient(nhs="9434765919"), "council-b").patient
    assert source_of(second) == "council-a" and not element_sources(second)
    assert resolver.merge(second, patient(nhs="9434765919"), "council-a").patient == second


LOCAL = {"system": "https://vcse.example.org/client", "value": "C-17"}


def test_the_sources_own_id_links_when_demographics_changed(bridge, resolver):
    store(bridge, patient("a", identifier=[LOCAL]))
    moved = patient(postcode="N1 9GU", identifier=[LOCAL])  # the person moved house: no exact match any more
    assert resolver.resolve(moved) == Link("local-identifier", "a")


def test_a_local_id_on_a_patient_with_another_nhs_number_is_a_review(bridge, resolver):
    store(bridge, patient("a", identifier=[LOCAL, {"system": NHS_SYSTEM, "value": "9434765919"}]))
    link = resolver.resolve(patient(nhs="9434765870", identifier=[LOCAL, {"system": NHS_SYSTEM, "value": "9434765870"}]))
    assert link.action == "review" and "another NHS number" in link.reason


def test_identifiers_held_by_two_patients_is_a_review(bridge, resolver):
    other = {"system": "https://rio.example.org/client", "value": "R-9"}
    store(bridge, patient("a", identifier=[LOCAL]), patient("b", family="Brown", identifier=[other]))
    link = resolver.resolve(patient(identifier=[LOCAL, other]))
    assert link.action == "review" and set(link.candidates) == {"a", "b"}


def test_a_batch_not_yet_stored_is_matched_as_the_store_is(bridge, resolver):
    """The run's pending Patients: the same exact and weaker matches as stored ones, found by birth
    date (a different birth date is never a match, however alike the rest)."""
    from fhir_bridge.pipelines.identity import PendingPatients, demographics_of

    pending = PendingPatients()
    for pid, details in (("exact", {}), ("weaker", {"given": "Adaeze"}), ("born-later", {"born": "1980-04-03"}),
                         ("stranger", {"family": "Other", "given": "Bo"})):
        pending.add(patient(pid, **details))
    assert pending.matching(demographics_of(patient())) == ({"exact"}, {"weaker"})
    assert resolver.resolve(patient(), pending) == Link("demographics", "exact")
    assert resolver.resolve(patient(given="Adaeze", postcode="N1 1AA"), pending).candidates == ("exact", "weaker")
