"""The hardened XML parser: hostile documents are refused and never read files or the network."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from fhir_bridge.errors import InputError
from fhir_bridge.formats.xml import DOCTYPE_REFUSED, hardened_parser, parse_untrusted

SECRET = "SECRET-MARKER-7f3a"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""


class Tripwire(etree.Resolver):
    """lxml asks its resolvers before libxml2 loads any external DTD or entity."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def resolve(self, url, pubid, context):
        self.calls.append(url)
        return self.resolve_string(f'<!ENTITY e "{SECRET}">', context)


@pytest.fixture()
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture()
def external_dtd(tmp_path: Path) -> Path:
    path = tmp_path / "evil.dtd"
    path.write_text(f'<!ENTITY e "{SECRET}">')
    return path


def xxe(secret_file: Path) -> bytes:
    return f'<!DOCTYPE x [<!ENTITY e SYSTEM "{secret_file.as_uri()}">]><x>&e;</x>'.encode()


def external(external_dtd: Path) -> bytes:
    return f'<!DOCTYPE x SYSTEM "{external_dtd.as_uri()}"><x>&e;</x>'.encode()


def test_parses_plain_xml_and_drops_comments_and_pis():
    root = parse_untrusted(b'<?xml version="1.0"?>\n<a><!-- note --><?pi x?><b c="1">t</b></a>')
    assert root.tag == "a"
    assert [child.tag for child in root] == ["b"]
    assert root[0].get("c") == "1"


def test_utf8_bom_is_accepted():
    assert parse_untrusted(b"\xef\xbb\xbf<a/>").tag == "a"


def test_xxe_is_refused(secret_file):
    with pytest.raises(InputError, match=DOCTYPE_REFUSED) as info:
        parse_untrusted(xxe(secret_file))
    assert SECRET not in str(info.value)


def test_billion_laughs_is_refused():
    with pytest.raises(InputError, match=DOCTYPE_REFUSED):
        parse_untrusted(BILLION_LAUGHS)


def test_external_dtd_is_refused(external_dtd):
    with pytest.raises(InputError, match=DOCTYPE_REFUSED):
        parse_untrusted(external(external_dtd))


def test_doctype_after_declaration_and_comment_is_refused():
    with pytest.raises(InputError, match=DOCTYPE_REFUSED):
        parse_untrusted(b'<?xml version="1.0"?>\n<!-- hi -->\n<!DOCTYPE a>\n<a/>')


def test_doctype_in_utf16_is_refused_after_parsing():
    """The byte scan cannot read UTF-16; the check on the parsed document still refuses it."""
    data = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'.encode("utf-16")
    with pytest.raises(InputError, match=DOCTYPE_REFUSED):
        parse_untrusted(data)


def test_doctype_text_inside_cdata_is_not_a_doctype():
    root = parse_untrusted(b"<a><![CDATA[<!DOCTYPE a>]]></a>")
    assert root.text == "<!DOCTYPE a>"


def test_tripwire_fires_on_a_permissive_parser(external_dtd):
    """Control for the tests below: the tripwire does see loads when a parser makes them."""
    parser = etree.XMLParser(load_dtd=True)
    wire = Tripwire()
    parser.resolvers.add(wire)
    etree.fromstring(external(external_dtd), parser)
    assert wire.calls


@pytest.mark.parametrize("case", ["xxe", "external", "laughs"])
def test_hardened_parser_alone_reads_no_file_and_expands_nothing(case, secret_file, external_dtd):
    """Second line of defence: even without the DOCTYPE refusal nothing is fetched or expanded."""
    data = {"xxe": lambda: xxe(secret_file), "external": lambda: external(external_dtd),
            "laughs": lambda: BILLION_LAUGHS}[case]()
    parser = hardened_parser()
    wire = Tripwire()
    parser.resolvers.add(wire)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:  # recent libxml2 stops billion laughs at its amplification limit
        root = None
    assert wire.calls == []
    if root is not None:
        assert SECRET not in etree.tostring(root, encoding="unicode")
        assert len(etree.tostring(root)) < 200  # the entity references stay unexpanded


def test_malformed_xml_names_the_line():
    with pytest.raises(InputError) as info:
        parse_untrusted(b"<a>\n  <b>\n</a>")
    assert "line 3" in info.value.message
    assert info.value.message.startswith("malformed XML at line 3")
    assert info.value.location == "line 3"


@pytest.mark.parametrize("data", [b"", b"   ", b"not xml", b"<a><b></a>", b"<a>&undefined;</a>"])
def test_malformed_inputs_are_input_errors(data):
    with pytest.raises(InputError, match="malformed XML at line"):
        parse_untrusted(data)


def test_excessive_depth_is_refused():
    depth = 300  # libxml2 stops at 256 levels unless huge_tree is set
    with pytest.raises(InputError, match="malformed XML"):
        parse_untrusted(b"<a>" * depth + b"</a>" * depth)
