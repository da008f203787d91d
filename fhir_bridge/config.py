"""One Settings object, read from the environment (prefix FHIR_BRIDGE_) once and passed in."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _path(env: dict, name: str, default: Path) -> Path:
    value = env.get(f"FHIR_BRIDGE_{name}")
    return Path(value) if value else default


def _int(env: dict, name: str, default: int) -> int:
    value = env.get(f"FHIR_BRIDGE_{name}")
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    profiles_dir: Path = REPO_ROOT / "profiles"
    terminology_dir: Path = REPO_ROOT / "terminology"
    examples_dir: Path = REPO_ROOT / "examples"
    mappings_dir: Path = REPO_ROOT / "mappings"
    # No published minimum number of answered items makes a DIALOG mean valid (domain.md):
    # a setting, and every mean reports how many items it rests on.
    min_answered_sqol: int = 1
    min_answered_treatment: int = 1
    report_best_practice: bool = False  # FHIR best-practice invariants (dom-6 narrative) as hints
    database_url: str | None = None     # None: the embedded SQLite file under data_dir
    data_dir: Path = REPO_ROOT / "var"
    # The server's public FHIR base (https://bridge.trust.nhs.uk/fhir): absolute references to it
    # are indexed as local Type/id references. None: only relative references are local.
    base_url: str | None = None
    # When sources disagree about a person's demographics, the earlier in this order wins
    # (identity linking reports the disagreement either way).
    source_trust: tuple[str, ...] = ("pds", "rio", "hl7", "vcse", "dialog-app")

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            profiles_dir=_path(env, "PROFILES_DIR", REPO_ROOT / "profiles"),
            terminology_dir=_path(env, "TERMINOLOGY_DIR", REPO_ROOT / "terminology"),
            examples_dir=_path(env, "EXAMPLES_DIR", REPO_ROOT / "examples"),
            mappings_dir=_path(env, "MAPPINGS_DIR", REPO_ROOT / "mappings"),
            min_answered_sqol=_int(env, "MIN_ANSWERED_SQOL", 1),
            min_answered_treatment=_int(env, "MIN_ANSWERED_TREATMENT", 1),
            report_best_practice=env.get("FHIR_BRIDGE_REPORT_BEST_PRACTICE", "").lower() in ("1", "true", "yes"),
            database_url=env.get("FHIR_BRIDGE_DATABASE_URL") or None,
            data_dir=_path(env, "DATA_DIR", REPO_ROOT / "var"),
            base_url=(env.get("FHIR_BRIDGE_BASE_URL") or "").rstrip("/") or None,
            source_trust=tuple(s.strip() for s in env["FHIR_BRIDGE_SOURCE_TRUST"].split(",") if s.strip())
            if env.get("FHIR_BRIDGE_SOURCE_TRUST") else cls.source_trust,
        )
