"""JSON Patch (RFC 6902): the operations, and the two kinds of failure FHIR distinguishes."""
from __future__ import annotations

import pytest

from fhir_bridge.errors import InputError, Unprocessable
from fhir_bridge.fhir.json_patch import apply_patch

DOC = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Ann"]}], "active": True}


def test_operations_apply_in_order_without_touching_the_input():
    patch = [
        {"op": "test", "path": "/active", "value": True},
        {"op": "replace", "path": "/active", "value": False},
        {"op": "add", "path": "/name/0/given/-", "value": "Marie"},
        {"op": "add", "path": "/name/0/given/0", "value": "Dr"},
        {"op": "copy", "from": "/name/0/family", "path": "/name/0/text"},
        {"op": "move", "from": "/name/0/text", "path": "/name/0/suffix"},
        {"op": "remove", "path": "/name/0/given/0"},
        {"op": "replace", "path": "/name/0/given/1", "value": "Maria"},
    ]
    out = apply_patch(DOC, patch)
    assert out["active"] is False
    assert out["name"][0] == {"family": "Smith", "given": ["Ann", "Maria"], "suffix": "Smith"}
    assert DOC["active"] is True and DOC["name"][0]["given"] == ["Ann"]


def test_pointer_escapes():
    out = apply_patch({"a/b": {"~c": 1}}, [{"op": "replace", "path": "/a~1b/~0c", "value": 2}])
    assert out == {"a/b": {"~c": 2}}


@pytest.mark.parametrize("patch", [{"op": "add"}, [{"op": "frobnicate", "path": "/a"}], [{"op": "add", "path": "a", "value": 1}],
                                   [{"op": "add", "path": "/a"}], ["not an object"]])
def test_malformed_patch_is_a_bad_request(patch):
    with pytest.raises(InputError):
        apply_patch(DOC, patch)


@pytest.mark.parametrize("patch", [[{"op": "test", "path": "/active", "value": False}],
                                   [{"op": "remove", "path": "/birthDate"}],
                                   [{"op": "replace", "path": "/name/5", "value": {}}],
                                   [{"op": "add", "path": "/name/0/given/7", "value": "x"}],
                                   [{"op": "move", "from": "/name", "path": "/name/0/x"}],
                                   [{"op": "remove", "path": ""}]])
def test_patch_that_does_not_apply_is_unprocessable(patch):
    with pytest.raises(Unprocessable):
        apply_patch(DOC, patch)
