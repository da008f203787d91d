"""The source adapters by name, each imported only when asked for: an import's worker processes
build the one adapter they map with, and a RiO worker need not load the HL7 adapter (the MLLP
listener, the store) to do it."""
from __future__ import annotations

from importlib import import_module
from typing import Callable

from fhir_bridge.errors import InputError

__all__ = ["SOURCE_NAMES", "adapter_factory"]

# source name -> (module, class, whether the adapter takes the bridge: one that points records at
# what the run stored, RiO assessments, or stores what a record asks, HL7 merges)
_ADAPTERS = {
    "dialog-app": ("fhir_bridge.pipelines.source_dialog_app", "DialogAppSource", False),
    "hl7": ("fhir_bridge.pipelines.source_hl7", "Hl7Source", True),
    "rio": ("fhir_bridge.pipelines.source_rio", "RioSource", True),
    "vcse": ("fhir_bridge.pipelines.source_vcse", "VcseSource", False),
}
SOURCE_NAMES = tuple(sorted(_ADAPTERS))


def adapter_factory(source: str) -> Callable:
    """`source`'s adapter factory: (mapping engine, organisation ODS code, bridge or None) -> adapter.
    Without a bridge (an import's worker process) an adapter can only map."""
    if source not in _ADAPTERS:
        raise InputError(f"unknown source {source!r}: one of {', '.join(SOURCE_NAMES)}")
    module, name, takes_bridge = _ADAPTERS[source]
    adapter = getattr(import_module(module), name)
    return adapter if takes_bridge else (lambda engine, organization, bridge: adapter(engine, organization))
