"""HL7 v2 parsing, field access, batch splitting and ACKs on messages shaped like English trusts' feeds."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fhir_bridge.errors import InputError
from fhir_bridge.formats.hl7v2 import (
    build_ack,
    control_id,
    field,
    message_type,
    parse_message,
    repetitions,
    segments,
    split_batch,
)

NOW = datetime(2024, 3, 5, 14, 30, 15)

PID = (
    "PID|1||9434765919^^^NHS^NH~RX123456^^^RAT^MR~P998877^^^RAT^PI||SMITH^Anne^Marie^^Ms||"
    "19800214|F|||12 Acacia Avenue^^London^^E1 1AA^GBR^H||020 7946 0000^PRN^PH|||||||||A||||||||"
)


def adt(event: str, control: str, extra: str = "") -> str:
    segs = [
        f"MSH|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305142000||ADT^{event}^ADT_A05|{control}|P|2.4|||AL|NE|GBR|8859/1",
        f"EVN|{event}|20240305141955|||C123^JONES^Peter",
        PID,
        "PD1|||Kingsland Medical Centre^^F84003|G1234567^PATEL^Ravi",
        "PV1|1|N",
    ]
    return "\r".join(segs + ([extra] if extra else []))


A28, A31, A08 = adt("A28", "MSG0001"), adt("A31", "MSG0002"), adt("A08", "MSG0003")
A40 = "\r".join([
    "MSH|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305150000||ADT^A40^ADT_A39|MSG0004|P|2.4",
    "EVN|A40|20240305145959",
    PID,
    "MRG|RX654321^^^RAT^MR~9434765870^^^NHS^NH",
])

# One OBX per DIALOG item rating and per help-wanted answer (SNOMED item codes, project "more help" codes)
DIALOG_ITEMS = [("1037651000000100", "mental health", 4), ("1037661000000102", "physical health", 5),
                ("1037701000000108", "friendships", 3), ("1037711000000105", "partner/family", 6)]


def oru(control: str = "ORU0001") -> str:
    segs = [
        f"MSH|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305160000||ORU^R01^ORU_R01|{control}|P|2.4",
        PID,
        "PV1|1|O|CMHT-HACKNEY",
        "OBR|1|DLG-2024-0042||DIALOG^DIALOG assessment^L|||20240305153000|||||||||C123^JONES^Peter",
    ]
    n = 0
    for code, name, rating in DIALOG_ITEMS:
        n += 1
        segs.append(f"OBX|{n}|NM|{code}^{name} satisfaction^SCT||{rating}|score^^L|||||F|||20240305153000")
        n += 1
        segs.append(f"OBX|{n}|CE|help-{code}^More help wanted: {name}^L||Y^Yes^HL70136||||||F|||20240305153000")
    return "\r".join(segs)


def test_adt_person_events_parse_with_nhs_number_and_local_ids() -> None:
    for text, event in ((A28, "A28"), (A31, "A31"), (A08, "A08")):
        msg = parse_message(text)
        assert message_type(msg) == ("ADT", event)
        assert field(msg, "PID-3.1") == "9434765919"
        assert field(msg, "PID-3.4") == "NHS" and field(msg, "PID-3.5") == "NH"
        assert field(msg, "PID-3[2].1") == "RX123456" and field(msg, "PID-3[2].5") == "MR"
        assert field(msg, "PID-3[3].5") == "PI"
        assert field(msg, "PID-5.1") == "SMITH" and field(msg, "PID-5.2") == "Anne"
        assert field(msg, "PID-7") == "19800214" and field(msg, "PID-8") == "F"
        assert field(msg, "PID-11.5") == "E1 1AA"
        assert field(msg, "PID-22") == "A"  # ethnic category
        assert field(msg, "PD1-3.3") == "F84003"  # GP practice ODS code


def test_repetitions_iterate_every_identifier() -> None:
    msg = parse_message(A28)
    ids = [(r.get(1), r.get(4), r.get(5)) for r in repetitions(msg, "PID-3")]
    assert ids == [("9434765919", "NHS", "NH"), ("RX123456", "RAT", "MR"), ("P998877", "RAT", "PI")]
    assert [str(r) for r in repetitions(msg, "PID-7")] == ["19800214"]
    assert list(repetitions(msg, "PID-2")) == [] and list(repetitions(msg, "PID-99")) == []


def test_a40_merge_carries_mrg() -> None:
    msg = parse_message(A40)
    assert message_type(msg) == ("ADT", "A40")
    mrg = segments(msg, "MRG")[0]
    assert [(r.get(1), r.get(5)) for r in repetitions(mrg, "MRG-1")] == [("RX654321", "MR"), ("9434765870", "NH")]
    assert field(mrg, "MRG-1[2].4") == "NHS"


def test_oru_has_one_obx_per_dialog_item_and_help_answer() -> None:
    msg = parse_message(oru())
    assert message_type(msg) == ("ORU", "R01") and control_id(msg) == "ORU0001"
    obx = segments(msg, "OBX")
    assert len(obx) == 2 * len(DIALOG_ITEMS)
    ratings = {field(o, "OBX-3.1"): field(o, "OBX-5") for o in obx if field(o, "OBX-2") == "NM"}
    assert ratings == {code: str(rating) for code, _, rating in DIALOG_ITEMS}
    assert field(obx[0], "OBX-3.3") == "SCT" and field(obx[0], "OBX-14") == "20240305153000"
    assert field(obx[1], "OBX-5.1") == "Y" and field(obx[1], "OBX-5.3") == "HL70136"
    assert field(msg, "OBR-16.2") == "JONES"


def test_field_paths_on_msh_use_standard_numbering() -> None:
    msg = parse_message(A28)
    assert field(msg, "MSH-1") == "|" and field(msg, "MSH-2") == "^~\\&"
    assert field(msg, "MSH-3") == "RIO" and field(msg, "MSH-9") == "ADT^A28^ADT_A05"
    assert field(msg, "MSH-9.3") == "ADT_A05" and field(msg, "MSH-12") == "2.4"


def test_absent_fields_components_and_segments_are_empty() -> None:
    msg = parse_message(A28)
    assert field(msg, "PID-2") == "" and field(msg, "PID-40") == "" and field(msg, "PID-7.2") == ""
    assert field(msg, "PID-3[9].1") == "" and field(msg, "OBX-5") == "" and segments(msg, "OBX") == []
    assert field(msg, "PID-3.4.2") == ""


def test_subcomponents_and_escapes() -> None:
    msg = parse_message(
        "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.4\r"
        "PID|||9434765919^^^NHS&2.16.840.1.113883.2.1.4.1&ISO^NH\r"
        "NTE|1||Feels better \\T\\ sleeps \\F\\ eats\\E\\ well"
    )
    assert field(msg, "PID-3.4") == "NHS&2.16.840.1.113883.2.1.4.1&ISO"  # not a leaf: as sent
    assert field(msg, "PID-3.4.1") == "NHS" and field(msg, "PID-3.4.3") == "ISO"
    assert field(msg, "NTE-3") == "Feels better & sleeps | eats\\ well"


@pytest.mark.parametrize("path", ["PID", "PID-0", "PID-3.0", "pid-3", "PID-3[0]", "PID-3..1"])
def test_bad_paths_are_programming_errors(path: str) -> None:
    with pytest.raises(ValueError):
        field(parse_message(A28), path)


def test_field_on_a_segment_of_another_type_is_refused() -> None:
    with pytest.raises(ValueError):
        field(segments(parse_message(A40), "MRG")[0], "PID-3")


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segment_separators_are_normalised(sep: str) -> None:
    msg = parse_message(oru().replace("\r", sep).encode())
    assert len(segments(msg, "OBX")) == 8 and field(msg, "PID-3.1") == "9434765919"


def test_cp1252_bytes_and_mllp_framing_leftovers() -> None:
    text = A28.replace("SMITH", "BRONTË").encode("cp1252")
    msg = parse_message(b"\x0b" + text + b"\x1c\r")
    assert field(msg, "PID-5.1") == "BRONTË"


@pytest.mark.parametrize("text", ["", "   ", "\r\n\r\n", b""])
def test_empty_message(text: str | bytes) -> None:
    with pytest.raises(InputError, match="empty"):
        parse_message(text)


def test_no_msh() -> None:
    with pytest.raises(InputError, match="no MSH segment"):
        parse_message("PID|1||9434765919^^^NHS^NH\rPV1|1|O")
    with pytest.raises(InputError, match="does not start with MSH"):
        parse_message("garbage line\r" + A28)


@pytest.mark.parametrize("msh", [
    "MSH|^~\\|A|B",          # three encoding characters
    "MSH|^~^&|A|B",          # repeated
    "MSH|^~\\A|A|B",         # a letter
    "MSHA^~\\&A|B",          # letter as field separator
    "MSH|",                  # too short
    "MSH|^~ &|A|B",          # a space
])
def test_bad_encoding_characters(msh: str) -> None:
    with pytest.raises(InputError) as err:
        parse_message(msh + "\rPID|1")
    assert "encoding characters" in err.value.message
    assert err.value.location == "MSH-2"


def test_garbage_segment_is_refused_with_its_position() -> None:
    with pytest.raises(InputError) as err:
        parse_message(A28 + "\r\x00\x01\x02binary")
    assert err.value.location == "segment 6"


def test_split_batch_with_fhs_bhs_wrappers_and_mixed_line_endings() -> None:
    data = "\r\n".join([
        "FHS|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305",
        "BHS|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305",
        A28.replace("\r", "\n"),
        A40,
        oru(),
        "BTS|3",
        "FTS|1",
        "",
    ]).encode()
    parts = list(split_batch(data))
    assert [i for i, _ in parts] == [1, 2, 3]
    assert [message_type(parse_message(t)) for _, t in parts] == [("ADT", "A28"), ("ADT", "A40"), ("ORU", "R01")]
    assert parts[0][1] == A28  # segments joined by CR, wrappers gone


def test_split_back_to_back_messages_without_wrappers() -> None:
    data = (A28 + "\n" + A31 + "\r\n\r\n" + A08 + "\r").encode()
    assert [control_id(parse_message(t)) for _, t in split_batch(data)] == ["MSG0001", "MSG0002", "MSG0003"]


def test_split_single_message_and_mllp_capture() -> None:
    assert list(split_batch(A28.encode())) == [(1, A28)]
    captured = b"\x0b" + A28.encode() + b"\x1c\r\x0b" + A31.encode() + b"\x1c\r"
    assert [t for _, t in split_batch(captured)] == [A28, A31]


def test_split_keeps_leading_garbage_as_its_own_bad_message() -> None:
    parts = list(split_batch(b"this is not hl7\n" + A28.encode()))
    assert len(parts) == 2
    with pytest.raises(InputError):
        parse_message(parts[0][1])
    assert control_id(parse_message(parts[1][1])) == "MSG0001"


def test_split_empty_file() -> None:
    assert list(split_batch(b"")) == [] and list(split_batch(b"\r\n\n")) == []


class _Reads:
    """A binary file that counts how much has been read of it."""

    def __init__(self, data: bytes):
        self.data, self.offset = data, 0

    def read(self, size: int) -> bytes:
        chunk = self.data[self.offset:self.offset + size]
        self.offset += len(chunk)
        return chunk


def test_a_feed_is_split_the_same_read_a_chunk_at_a_time(monkeypatch) -> None:
    """Every cut of the file between chunks (inside a CR LF, a segment, the framing, a byte-order
    mark) gives the messages the whole file gives."""
    data = (b"\xef\xbb\xbfFHS|^~\\&|RIO\r\n" + b"\x0b" + A28.encode() + b"\x1c\r\n" + b"not hl7\r\n"
            + A40.replace("\r", "\r\n").encode() + b"\r\n\xef\xbb\xbf" + oru().encode() + b"\nBTS|3")
    whole = list(split_batch(data))
    assert [t for _, t in whole][:2] == [A28, "not hl7"] and whole[-1] == (4, oru())
    for size in (1, 2, 3, 5, 64):
        monkeypatch.setattr("fhir_bridge.formats.hl7v2._CHUNK_BYTES", size)
        assert list(split_batch(_Reads(data))) == whole, size


def test_a_large_feed_is_read_as_its_messages_are_taken(monkeypatch) -> None:
    monkeypatch.setattr("fhir_bridge.formats.hl7v2._CHUNK_BYTES", 4096)
    feed = _Reads("\r".join(oru(f"M{i}") for i in range(2000)).encode())  # about 2.5 MB
    messages = split_batch(feed)
    assert control_id(parse_message(next(messages)[1])) == "M0"
    assert feed.offset <= 2 * 4096  # not the whole file first
    assert sum(1 for _ in messages) == 1999


def test_each_message_of_a_feed_is_decoded_on_its_own() -> None:
    """One Windows-1252 message (a trust's older interface) in a UTF-8 feed: both names read right."""
    utf8 = A28.replace("SMITH^Anne", "BRONTË^Zoë").encode("utf-8")
    cp1252 = A31.replace("SMITH^Anne", "RENÉE^Chloé").encode("cp1252")
    first, second = [parse_message(t) for _, t in split_batch(utf8 + b"\r\n" + cp1252)]
    assert field(first, "PID-5.1") == "BRONTË" and field(first, "PID-5.2") == "Zoë"
    assert field(second, "PID-5.1") == "RENÉE" and field(second, "PID-5.2") == "Chloé"


def ack_segments(ack: str) -> dict[str, list[str]]:
    assert "\n" not in ack
    return {line[:3]: line.split("|") for line in ack.split("\r")}


def test_ack_aa_swaps_applications_and_echoes_the_control_id() -> None:
    ack = build_ack(parse_message(oru("ORU0042")), "AA", "", now=NOW)
    seg = ack_segments(ack)
    msh = seg["MSH"]
    assert msh[2:6] == ["FHIRBRIDGE", "NELFT", "RIO", "RAT"]
    assert msh[6] == "20240305143015" and msh[8] == "ACK^R01^ACK"
    assert msh[9] == "ACKORU0042" and msh[10:12] == ["P", "2.4"]
    assert seg["MSA"] == ["MSA", "AA", "ORU0042", ""]
    assert "ERR" not in seg
    assert control_id(parse_message(ack)) == "ACKORU0042"  # the ACK is itself valid HL7


def test_ack_ae_has_err_with_escaped_reason() -> None:
    ack = build_ack(parse_message(A28), "AE", "PID-3: NHS number 9434765918 fails mod 11 | check^digit",
                    now=NOW, error_code="102")
    seg = ack_segments(ack)
    assert seg["MSA"][1:3] == ["AE", "MSG0001"]
    assert seg["ERR"][3] == "102^Data type error^HL70357" and seg["ERR"][4] == "E"
    parsed = parse_message(ack)
    assert field(parsed, "MSA-3") == "PID-3: NHS number 9434765918 fails mod 11 | check^digit"
    assert field(parsed, "ERR-8") == field(parsed, "MSA-3")
    assert field(parsed, "ERR-1.4.1") == "102"  # v2.4 layout too
    assert field(parsed, "MSH-9") == "ACK^A28^ACK"


def test_ack_ar_for_raw_text_that_did_not_parse_still_echoes_the_control_id() -> None:
    broken = (A28 + "\r\x00garbage").encode()
    with pytest.raises(InputError):
        parse_message(broken)
    seg = ack_segments(build_ack(broken, "AR", "segment 6 has no valid segment id", now=NOW))
    assert seg["MSA"][1:3] == ["AR", "MSG0001"]
    assert seg["MSH"][2:6] == ["FHIRBRIDGE", "NELFT", "RIO", "RAT"] and seg["MSH"][8] == "ACK^A28^ACK"
    assert "ERR" in seg


def test_ack_ar_without_any_header() -> None:
    seg = ack_segments(build_ack(b"\x00\x01 not hl7", "AR", "no MSH segment", now=NOW))
    assert seg["MSA"] == ["MSA", "AR", "", "no MSH segment"]
    assert seg["MSH"][8] == "ACK" and seg["MSH"][9] == "ACK"
    assert build_ack(None, "AR", "x", now=NOW).startswith("MSH|^~\\&|")


def test_ack_time_zone_and_explicit_control_id() -> None:
    now = datetime(2024, 7, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    seg = ack_segments(build_ack(parse_message(A31), "AA", "", now=now, ack_control_id="X1"))
    assert seg["MSH"][6] == "20240701090000+0100" and seg["MSH"][9] == "X1"


def test_byte_order_mark_is_ignored() -> None:
    assert control_id(parse_message("\ufeff" + A28)) == "MSG0001"
    assert control_id(parse_message(b"\xef\xbb\xbf" + A28.encode())) == "MSG0001"


def test_ack_keeps_escapes_in_the_sender_header_as_sent() -> None:
    msg = parse_message(A28.replace("|RIO|RAT|", "|RIO\\T\\CO|RAT^X^L|", 1))
    seg = ack_segments(build_ack(msg, "AA", "", now=NOW))
    assert seg["MSH"][4:6] == ["RIO\\T\\CO", "RAT^X^L"]
    assert field(parse_message(build_ack(msg, "AA", "", now=NOW)), "MSH-5") == "RIO&CO"


def test_garbage_between_messages_is_its_own_text_and_costs_no_message():
    first, second = oru("G1"), oru("G2")
    data = (first + "\r\n" + "\x00\x01 not hl7 \xff" + "\r\n" + second).encode("latin-1")
    texts = [t for _, t in split_batch(data)]
    assert len(texts) == 3
    assert control_id(parse_message(texts[0])) == "G1" and control_id(parse_message(texts[2])) == "G2"
    with pytest.raises(InputError):
        parse_message(texts[1])


def test_garbage_inside_a_message_keeps_it_whole_for_quarantine():
    segments = oru("G3").split("\r")
    data = "\r".join(segments[:2] + ["#### torn line ####"] + segments[2:]).encode()
    [(_, text)] = list(split_batch(data))
    assert "#### torn line ####" in text and text.count("OBX") == oru("G3").count("OBX")
