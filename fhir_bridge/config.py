"""One Settings object, read from the environment (prefix FHIR_BRIDGE_) once and passed in."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _path(env: dict, name: str, default: Path) -> Path:
    value = env.get(f"FHIR_BRIDGE_{name}")
    return Path(value) if value else default


def _int(env: dict, name: str, default: int) -> int:
    value = env.get(f"FHIR_BRIDGE_{name}")
    return int(value) if value else default


def _choice(env: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (env.get(f"FHIR_BRIDGE_{name}") or "").strip().lower() or default
    if value not in allowed:
        raise ValueError(f"FHIR_BRIDGE_{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _port(env: dict, name: str) -> int | None:
    value = (env.get(f"FHIR_BRIDGE_{name}") or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"FHIR_BRIDGE_{name} must be a TCP port (1-65535), not {value!r}")
    return int(value)


def _purposes(env: dict) -> tuple[str, ...]:
    value = env.get("FHIR_BRIDGE_MHSDS_DIALOG_PURPOSES") or "prom"
    purposes = tuple(p.strip() for p in value.split(",") if p.strip())
    if not purposes or any(p not in ("prom", "care-planning") for p in purposes):
        raise ValueError(f"FHIR_BRIDGE_MHSDS_DIALOG_PURPOSES lists prom and/or care-planning, not {value!r}")
    return purposes


def _not_answered_code(env: dict) -> str | None:
    value = (env.get("FHIR_BRIDGE_MHSDS_NOT_ANSWERED_CODE") or "").strip()
    if value and not (value.isdigit() and len(value) <= 3):
        raise ValueError(f"FHIR_BRIDGE_MHSDS_NOT_ANSWERED_CODE is a PersScore (up to 3 digits, e.g. 8), not {value!r}")
    return value or None


def default_import_workers() -> int:
    """Worker processes a file import maps and validates in: one core stays with the process that
    links and stores (the busier half), the others map, up to 4; none on a single core."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


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
    # The EPR's MLLP endpoint (host:port) that `fhir-bridge export hl7` sends ORU^R01 messages to
    # when no --to/--out is given; None: none configured.
    mllp_peer: str | None = None
    # DIALOG+ discusses up to three domains a session, time permitting (domain.md); some services allow more.
    dialog_plus_max_domains: int = 3
    # Recording burden (seed 000: check when the last DIALOG was done): a PROM-purpose DIALOG within
    # this many days of another for the same person is a possible duplicate, tagged with a warning
    # ("warn") or refused with 422 ("reject").
    prom_min_interval_days: int = 28
    prom_duplicates: str = "warn"
    # Outcome reports: within one provider the exit DIALOG of one service may serve as the entry
    # DIALOG of the next (seed 000); off: every service's episode needs its own entry DIALOG.
    report_exit_as_entry: bool = True
    # MHSDS submission: which DIALOG entries are submitted (seed 000: a care-planning entry is not a
    # new PROM); a PROM at the same timepoint within this many days of one already submitted for
    # the person, or tagged a possible duplicate when written, is left out (0: no duplicate check);
    # whose DIALOGs (any partner's, or the provider's own); an item answered 8 (not applicable) is
    # left out, or sent with this code as its PersScore.
    mhsds_dialog_purposes: tuple[str, ...] = ("prom",)
    mhsds_duplicate_days: int = 28
    mhsds_dialog_recorders: str = "any"
    mhsds_not_answered_code: str | None = None

    # `serve` also starts the MLLP listener (same process, same store) when a port is set; every
    # message it takes is imported as the feed's organisation (ODS code).
    mllp_port: int | None = None
    mllp_host: str = "127.0.0.1"
    mllp_organization: str | None = None
    # `fhir-bridge import`: processes that map and validate records while the importing process
    # links people and stores (0: all in one process). Used once an input passes 2,000 records.
    import_workers: int = field(default_factory=default_import_workers)

    @property
    def min_answered(self) -> dict[str, int]:
        """The DIALOG means' minimum answered items, as score_dialog takes them."""
        return {"sqol": self.min_answered_sqol, "treatment": self.min_answered_treatment}

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
            mllp_port=_port(env, "MLLP_PORT"),
            mllp_host=(env.get("FHIR_BRIDGE_MLLP_HOST") or "").strip() or "127.0.0.1",
            mllp_organization=(env.get("FHIR_BRIDGE_MLLP_ORGANIZATION") or "").strip() or None,
            source_trust=tuple(s.strip() for s in env["FHIR_BRIDGE_SOURCE_TRUST"].split(",") if s.strip())
            if env.get("FHIR_BRIDGE_SOURCE_TRUST") else cls.source_trust,
            mllp_peer=(env.get("FHIR_BRIDGE_MLLP_PEER") or "").strip() or None,
            dialog_plus_max_domains=_int(env, "DIALOG_PLUS_MAX_DOMAINS", 3),
            prom_min_interval_days=_int(env, "PROM_MIN_INTERVAL_DAYS", 28),
            prom_duplicates=_choice(env, "PROM_DUPLICATES", ("warn", "reject"), "warn"),
            report_exit_as_entry=env.get("FHIR_BRIDGE_REPORT_EXIT_AS_ENTRY", "on").lower() not in ("0", "false", "no", "off"),
            mhsds_dialog_purposes=_purposes(env),
            mhsds_duplicate_days=_int(env, "MHSDS_DUPLICATE_DAYS", 28),
            mhsds_dialog_recorders=_choice(env, "MHSDS_DIALOG_RECORDERS", ("any", "provider"), "any"),
            mhsds_not_answered_code=_not_answered_code(env),
            import_workers=_int(env, "IMPORT_WORKERS", default_import_workers()),
        )
