"""The CSV reader against the quirks and faults of real extracts, written as real bytes."""
from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from fhir_bridge.errors import InputError
from fhir_bridge.formats.csv_reader import CsvRow, read_csv, read_csv_folder_or_zip

CLIENTS = "client_id,family_name,given_name,postcode\n"


def rows(data: bytes | Path, **kw) -> list[CsvRow]:
    return list(read_csv(data, **kw))


def test_plain_utf8_rows_carry_line_values_and_raw() -> None:
    got = rows(b"client_id,given_name\nRIO1,Anne\nRIO2,Bob\n")
    assert got == [
        CsvRow(2, {"client_id": "RIO1", "given_name": "Anne"}, "RIO1,Anne"),
        CsvRow(3, {"client_id": "RIO2", "given_name": "Bob"}, "RIO2,Bob"),
    ]


def test_utf8_bom_does_not_reach_the_first_header() -> None:
    got = rows(b"\xef\xbb\xbfclient_id,note\r\nRIO1,Zo\xc3\xab\r\n")
    assert got[0].values == {"client_id": "RIO1", "note": "Zoë"}


def test_bom_removed_when_the_caller_says_utf8() -> None:
    assert list(rows(b"\xef\xbb\xbfa,b\n1,2\n", encoding="utf-8")[0].values) == ["a", "b"]


def test_windows_1252_pound_and_e_acute() -> None:
    data = "client_id,note,fee\r\nRIO1,Café visit,£12\r\n".encode("cp1252")
    assert data.count(b"\xa3") == 1 and b"\xe9" in data  # really single-byte cp1252
    assert rows(data)[0].values == {"client_id": "RIO1", "note": "Café visit", "fee": "£12"}


def test_cp1252_detected_from_the_first_chunk_even_when_the_odd_byte_is_late() -> None:
    data = CLIENTS.encode() + b"RIO1,Smith,Anne,E1 1AA\n" * 100 + "RIO2,Beyoncé,B,E2 2BB\n".encode("cp1252")
    assert rows(data)[-1].values["family_name"] == "Beyoncé"


def test_a_cp1252_line_past_the_first_chunk_of_a_utf8_file_is_flagged_and_reading_goes_on() -> None:
    good = "client_id,name\n" + "RIO1,Zoë\n" * 20000  # > 64 KiB, valid UTF-8 in the first chunk
    data = good.encode() + "RIO2,café\n".encode("cp1252") + "RIO3,Zoë\n".encode()
    got = rows(data)
    flagged = [r for r in got if r.problem]
    assert [(r.line, "mixes encodings" in r.problem) for r in flagged] == [(20002, True)]
    assert "caf" in flagged[0].raw and got[-1].values == {"client_id": "RIO3", "name": "Zoë"}


def test_neither_utf8_nor_cp1252_is_refused() -> None:
    with pytest.raises(InputError, match="neither UTF-8 nor Windows-1252"):
        rows(b"a,b\n\x81\x8d\x8f,\x90\n")


def test_crlf_lf_and_cr_line_endings() -> None:
    for newline in ("\r\n", "\n", "\r"):
        data = newline.join(["a,b", "1,2", "3,4", ""]).encode()
        got = rows(data)
        assert [r.values for r in got] == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
        assert [r.line for r in got] == [2, 3]


def test_quoted_newlines_inside_fields_with_crlf_keep_physical_line_numbers() -> None:
    data = b'id,action\r\n1,"call GP\r\nbook review"\r\n2,"one"\r\n3,"a\r\nb\r\nc"\r\n4,x\r\n'
    got = rows(data)
    assert [r.line for r in got] == [2, 4, 5, 8]
    assert got[0].values["action"] == "call GP\r\nbook review"
    assert got[0].raw == '1,"call GP\r\nbook review"'
    assert got[2].values["action"] == "a\r\nb\r\nc"


def test_trailing_spaces_in_headers_and_values_are_stripped() -> None:
    got = rows(b"client_id ,  given_name  \nRIO1  ,  Anne \n")
    assert got[0].values == {"client_id": "RIO1", "given_name": "Anne"}


def test_blank_lines_and_rows_of_empty_cells_are_skipped() -> None:
    got = rows(b"\n\na,b\n\n1,2\n   \n,\n , \n3,4\n\n")
    assert [(r.line, r.values) for r in got] == [(5, {"a": "1", "b": "2"}), (9, {"a": "3", "b": "4"})]


def test_duplicate_headers_are_named() -> None:
    with pytest.raises(InputError, match="duplicate column headers: 'Date', 'Rank'") as err:
        rows(b"Rank,Date,Rank ,Name, Date\n1,2,3,4,5\n")
    assert err.value.location == "<bytes>:1"


def test_ragged_rows_are_flagged_and_reading_goes_on() -> None:
    got = rows(b"a,b,c\n1,2,3\n1,2\n1,2,3,4\n7,8,9\n")
    assert [r.problem for r in got] == [None, "expected 3 fields, found 2", "expected 3 fields, found 4", None]
    assert got[1].values == {"a": "1", "b": "2"} and got[2].raw == "1,2,3,4"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_sniffed_from_the_header(delimiter: str) -> None:
    data = delimiter.join(["Client Name", "Date Start", "Mental Health Rank"]) + "\n"
    data += delimiter.join(['"Smith, Anne"', "01/02/2024", "5"]) + "\n"
    assert rows(data.encode())[0].values == {
        "Client Name": "Smith, Anne", "Date Start": "01/02/2024", "Mental Health Rank": "5"}


def test_semicolon_file_with_commas_in_values() -> None:
    got = rows("Name;Note\r\nSmith;a, b, c\r\n".encode("cp1252"))
    assert got[0].values == {"Name": "Smith", "Note": "a, b, c"}


def test_sniffing_ignores_delimiters_inside_quoted_headers() -> None:
    assert list(rows(b'"a;b";c;d\n1;2;3\n')[0].values) == ["a;b", "c", "d"]


def test_explicit_delimiter_overrides_sniffing() -> None:
    assert rows(b"a;b,c\n1;2,3\n", delimiter=";")[0].values == {"a": "1", "b,c": "2,3"}


def test_a_binary_line_in_the_data_is_flagged_and_the_rest_of_the_file_read() -> None:
    """A bad row never stops the batch: the garbage is quarantined, the rows after it import."""
    got = rows(b"a,b\n1,2\n3,\x00\x00\x004\n5,6\n")
    assert [(r.line, r.problem and "binary" in r.problem) for r in got] == [(2, None), (3, True), (4, None)]
    assert got[1].values == {} and "\\x00" in got[1].raw  # kept readable for the quarantine
    assert got[2].values == {"a": "5", "b": "6"}


def test_binary_content_in_the_header_refuses_the_file() -> None:
    with pytest.raises(InputError, match="binary") as err:
        rows(b"a,\x00b\n1,2\n")
    assert err.value.location == "<bytes>:1"


def test_binary_garbage_refused() -> None:
    garbage = bytes(range(256)) * 4  # what a zip or xlsx renamed .csv looks like
    with pytest.raises(InputError):
        rows(garbage)
    with pytest.raises(InputError, match="binary"):
        rows(b"PK\x03\x04\x14\x00\x06\x00\x08\x00")


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\r\n  \n"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(InputError, match="empty file"):
        rows(data)


def test_header_only_file_has_no_rows() -> None:
    assert rows(b"a,b\r\n") == []


def test_unclosed_quote_is_an_input_error_not_a_traceback() -> None:
    data = b'a,b\n1,"never closed\n' + b"x" * 200_000 + b"\n"
    with pytest.raises(InputError, match="unreadable CSV"):
        rows(data)


def test_reads_paths_and_unseekable_streams(tmp_path: Path) -> None:
    data = "a,b\r\n£,é\r\n".encode("cp1252")
    file = tmp_path / "x.csv"
    file.write_bytes(data)

    class Unseekable(io.RawIOBase):  # stdin-like: no seek, short reads
        def __init__(self) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            chunk = self._data.read(min(3, len(buffer)))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    expected = [{"a": "£", "b": "é"}]
    assert [r.values for r in rows(file)] == expected
    assert [r.values for r in read_csv(Unseekable())] == expected  # type: ignore[arg-type]


def test_error_location_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "clients.csv"
    file.write_bytes(b"a,a\n")
    with pytest.raises(InputError) as err:
        rows(file)
    assert err.value.location == f"{file}:1"


def test_streaming_memory_does_not_grow_with_file_size() -> None:
    def peak(n: int) -> int:
        stream = io.BytesIO()
        stream.write(CLIENTS.encode())
        for i in range(n):
            stream.write(f"RIO{i},Smith,Anne,E1 1AA\r\n".encode())
        stream.seek(0)
        tracemalloc.start()
        count = sum(1 for _ in read_csv(stream))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == n
        return top

    small, large = peak(2_000), peak(50_000)
    assert large < small * 2 + 256 * 1024


# Folders and zips


def test_folder_yields_csv_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "clients.csv").write_bytes(b"a\n1\n")
    (tmp_path / "b" / "referrals.CSV").write_bytes(b"r\n2\n")
    (tmp_path / "README.txt").write_bytes(b"not data")
    (tmp_path / ".hidden.csv").write_bytes(b"x")
    assert list(read_csv_folder_or_zip(tmp_path)) == [("b/referrals.CSV", b"r\n2\n"), ("clients.csv", b"a\n1\n")]
    # lazy: files on disk come as paths that read_csv streams, nothing read in advance
    lazy = list(read_csv_folder_or_zip(tmp_path, lazy=True))
    assert lazy == [("b/referrals.CSV", tmp_path / "b" / "referrals.CSV"), ("clients.csv", tmp_path / "clients.csv")]
    assert [row.values for row in read_csv(lazy[1][1])] == [{"a": "1"}]


def test_zip_yields_members(tmp_path: Path) -> None:
    archive = tmp_path / "extract.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("extract/clients.csv", b"a\n1\n")
        z.writestr("__MACOSX/extract/._clients.csv", b"junk")
        z.writestr("extract/notes.txt", b"n")
    assert list(read_csv_folder_or_zip(archive)) == [("extract/clients.csv", b"a\n1\n")]


@pytest.mark.parametrize("evil", ["../evil.csv", "extract/../../evil.csv", "/etc/evil.csv", "C:/evil.csv"])
def test_zip_slip_member_refused(tmp_path: Path, evil: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("good.csv", b"a\n1\n")
        z.writestr(evil, b"a\n1\n")
    with pytest.raises(InputError, match="unsafe path refused"):
        list(read_csv_folder_or_zip(archive))
    assert not (tmp_path.parent / "evil.csv").exists()


def test_zip_member_over_the_size_limit_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.csv", b"a\n" + b"1\n" * 100_000)  # compresses to almost nothing
    with pytest.raises(InputError, match="larger than"):
        list(read_csv_folder_or_zip(archive, max_member_bytes=10_000))
    with pytest.raises(InputError, match="add up to more"):
        list(read_csv_folder_or_zip(archive, max_total_bytes=10_000))


def test_single_file_and_missing_path(tmp_path: Path) -> None:
    file = tmp_path / "one.csv"
    file.write_bytes(b"a\n1\n")
    assert list(read_csv_folder_or_zip(file)) == [("one.csv", b"a\n1\n")]
    with pytest.raises(InputError, match="no such file"):
        list(read_csv_folder_or_zip(tmp_path / "nope"))
