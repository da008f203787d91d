"""Shared fixtures: the repository's own conformance data, loaded once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from fhir_bridge.config import Settings
from fhir_bridge.validation import Validator

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def validator(settings: Settings) -> Validator:
    return Validator.load(settings)


def synthetic_exports(folder: Path, seed: int, *, hl7: int, vcse: int, rio: int) -> dict[str, Path]:
    """`synth` exports of three sources under `folder`, the RiO one also zipped (as a partner
    sends it in one piece): {"hl7": feed file, "vcse": folder, "rio": folder, "rio.zip": zip}."""
    import zipfile

    from fhir_bridge.synth import generate

    generate("hl7", folder / "hl7", count=hl7, seed=seed)
    generate("vcse", folder / "vcse", count=vcse, seed=seed)
    generate("rio", folder / "rio", count=rio, seed=seed)
    with zipfile.ZipFile(folder / "rio.zip", "w") as archive:
        for extract in sorted((folder / "rio").glob("*.csv")):
            archive.write(extract, extract.name)
    return {"hl7": folder / "hl7" / "feed.hl7", "vcse": folder / "vcse", "rio": folder / "rio",
            "rio.zip": folder / "rio.zip"}

