"""The command line. Thin: read input, call the validator / scorer, print, exit with a code.

Exit codes: 0 all good, 1 validation issues (errors) found, 2 unusable input, 3 configuration
error in the project's own files, 70 an internal error. Errors are printed as sentences, never
as tracebacks.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click
import orjson

from fhir_bridge.config import Settings
from fhir_bridge.errors import BridgeError
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.fhir.reading import read_records

if TYPE_CHECKING:
    from fhir_bridge.pipelines.seed import SeedReport

EXIT_OK, EXIT_ISSUES, EXIT_UNUSABLE, EXIT_INTERNAL = 0, 1, 2, 70


class Services:
    """Loaded once per command, on first use (validation rules compile in ~0.1 s)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._validator = None
        self._dialog = None

    @property
    def validator(self):
        if self._validator is None:
            from fhir_bridge.validation import Validator

            self._validator = Validator.load(self.settings)
        return self._validator

    @property
    def dialog(self):
        if self._dialog is None:
            from fhir_bridge.measures import load_dialog_definition

            self._dialog = load_dialog_definition(self.settings.profiles_dir, self.settings.terminology_dir)
        return self._dialog

    def min_answered(self) -> dict[str, int]:
        return {"sqol": self.settings.min_answered_sqol, "treatment": self.settings.min_answered_treatment}


def _run(command: Callable[[], int]) -> None:
    """One place that turns our exceptions into a message and an exit code."""
    try:
        code = command()
    except BridgeError as exc:
        click.echo(f"fhir-bridge: {exc.message}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as a SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except Exception as exc:  # noqa: BLE001 - a bug of ours: say so in a sentence, keep the trace out
        click.echo(f"fhir-bridge: internal error ({type(exc).__name__}: {exc}); please report it", err=True)
        code = EXIT_INTERNAL
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fhir-bridge")
@click.pass_context
def main(ctx: click.Context) -> None:
    """fhir-bridge: DIALOG and DIALOG+ in FHIR R4 for NHS mental health services."""
    ctx.obj = Services(Settings.from_env())


# -- validate ------------------------------------------------------------------------------------
@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--profile", help="Validate against this profile (canonical URL) instead of the ones claimed.")
@click.option("--format", "fmt", type=click.Choice(["table", "outcome"]), default="table", show_default=True,
              help="table: readable; outcome: one OperationOutcome (JSON) per resource, one per line.")
@click.pass_obj
def validate(services: Services, files: tuple[str, ...], profile: str | None, fmt: str) -> None:
    """Validate FHIR resources (JSON, XML, NDJSON or Bundle files; - for stdin).

    Exit 0 when every resource is valid, 1 when any has errors, 2 when any input is unusable.
    """
    def command() -> int:
        validator = services.validator
        worst = EXIT_OK
        counts = {"valid": 0, "invalid": 0, "unusable": 0}
        for record in read_records(list(files), validator.model):
            if record.error is not None:
                issues = [Issue("fatal", record.error.code, record.error.message, record.error.expression)]
                counts["unusable"] += 1
                worst = max(worst, EXIT_UNUSABLE)
                _print_result(record.label, None, issues, fmt)
                continue
            result = validator.validate(record.resource, profile)
            fatal = any(i.severity == "fatal" for i in result.issues)
            counts["unusable" if fatal else "valid" if result.valid else "invalid"] += 1
            worst = max(worst, EXIT_UNUSABLE if fatal else EXIT_OK if result.valid else EXIT_ISSUES)
            _print_result(record.label, record.resource, result.issues, fmt)
        if fmt == "table":
            click.echo(f"\n{counts['valid']} valid, {counts['invalid']} invalid, {counts['unusable']} unusable")
        return worst

    _run(command)


def _print_result(label: str, resource: dict | None, issues: list[Issue], fmt: str) -> None:
    if fmt == "outcome":
        outcome = operation_outcome(issues)
        outcome["extension"] = [{"url": "https://fhir-bridge.example.org/StructureDefinition/validated-source",
                                 "valueString": label}]
        click.echo(orjson.dumps(outcome).decode())
        return
    errors = sum(i.is_error for i in issues)
    warnings = sum(i.severity == "warning" for i in issues)
    what = f"{resource.get('resourceType')}/{resource.get('id', '-')}" if resource else "unreadable"
    verdict = "VALID" if not errors else "INVALID"
    click.echo(f"{verdict:8} {label}  ({what}; {errors} errors, {warnings} warnings)")
    for issue in issues:
        if issue.severity == "information" and issue.code == "informational" and not issue.expression:
            continue
        click.echo(f"  {issue.severity:11} {issue.code:14} {issue.expression or '-'}")
        click.echo(f"  {'':11} {issue.message}")


# -- score ---------------------------------------------------------------------------------------
@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "observations"]), default="table",
              show_default=True, help="observations: the score Observations ($extract) as a FHIR Bundle.")
@click.pass_obj
def score(services: Services, files: tuple[str, ...], fmt: str) -> None:
    """Score DIALOG QuestionnaireResponses: item ratings, SQOL and treatment satisfaction means.

    Responses are validated first; an invalid one is reported and not scored (exit 1).
    """
    def command() -> int:
        from fhir_bridge.measures import extract_observations, score_dialog

        worst = EXIT_OK
        observations: list[dict] = []
        for record, result in _validated(services, files):
            if record.error is not None or not result.valid:
                worst = max(worst, EXIT_UNUSABLE if record.error else EXIT_ISSUES)
                problem = record.error.message if record.error else "; ".join(i.message for i in result.errors[:3])
                click.echo(f"NOT SCORED {record.label}: {problem}", err=True)
                continue
            for qr in _responses(record.resource):
                s = score_dialog(qr, services.dialog, min_answered=services.min_answered())
                if fmt == "observations":
                    observations += extract_observations(qr, services.dialog, s)
                elif fmt == "json":
                    click.echo(orjson.dumps(_score_json(record.label, qr, s)).decode())
                else:
                    _print_score(record.label, qr, s, services.dialog)
        if fmt == "observations":
            bundle = {"resourceType": "Bundle", "type": "collection",
                      "entry": [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o} for o in observations]}
            click.echo(orjson.dumps(bundle, option=orjson.OPT_INDENT_2).decode())
        return worst

    _run(command)


def _validated(services: Services, files):
    for record in read_records(list(files), services.validator.model):
        yield record, (services.validator.validate(record.resource) if record.error is None else None)


def _responses(resource: dict) -> list[dict]:
    if resource.get("resourceType") == "QuestionnaireResponse":
        return [resource]
    if resource.get("resourceType") == "Bundle":
        return [e["resource"] for e in resource.get("entry", [])
                if e.get("resource", {}).get("resourceType") == "QuestionnaireResponse"]
    return []


def _fmt(mean: float | None) -> str:
    return "-" if mean is None else f"{mean:.2f}"


def _score_json(label: str, qr: dict, s) -> dict:
    return {
        "source": label, "id": qr.get("id"), "authored": qr.get("authored"),
        "ratings": s.ratings, "notApplicable": list(s.not_applicable), "moreHelp": s.more_help,
        "sqolMean": s.sqol_mean, "sqolAnswered": s.sqol_answered,
        "treatmentSatisfactionMean": s.treatment_satisfaction_mean,
        "treatmentSatisfactionAnswered": s.treatment_satisfaction_answered,
        "dissatisfiedCount": s.dissatisfied_count, "moreHelpWanted": list(s.more_help_wanted),
        "problems": [{"expression": p.expression, "message": p.message} for p in s.problems],
    }


def _print_score(label: str, qr: dict, s, definition) -> None:
    click.echo(f"{label}  QuestionnaireResponse/{qr.get('id', '-')}  authored {qr.get('authored', '-')}")
    for item in s.items:
        rating = "n/a" if item.not_applicable else "-" if item.rating is None else str(item.rating)
        help_ = {True: "more help wanted", False: "", None: ""}[item.more_help]
        click.echo(f"  {item.domain.mhsds_item:>2}. {item.domain.display:<58} {rating:>3}  {help_}")
    click.echo(f"  SQOL mean (items 1-8)                   {_fmt(s.sqol_mean):>6}  from {s.sqol_answered} items")
    click.echo(f"  Treatment satisfaction (items 9-11)     {_fmt(s.treatment_satisfaction_mean):>6}  "
               f"from {s.treatment_satisfaction_answered} items")
    click.echo(f"  Rated 1-3 (dissatisfied): {s.dissatisfied_count}   more help wanted: {len(s.more_help_wanted)}")
    for p in s.problems:
        click.echo(f"  ! {p.message} ({p.expression})")


# -- demo ----------------------------------------------------------------------------------------
@main.command()
@click.pass_obj
def demo(services: Services) -> None:
    """Validate and score every example under examples/ and print one table.

    Examples named valid-* must validate and invalid-* must not; exit 1 if any disagrees.
    """
    def command() -> int:
        from fhir_bridge.measures import score_dialog
        from fhir_bridge.pipelines.seed import example_name, expected_invalid

        root = services.settings.examples_dir
        paths = sorted(p for p in root.rglob("*") if p.suffix in (".json", ".xml", ".ndjson")
                       and not p.name.endswith(".expected.json"))
        width = max((len(str(p.relative_to(root))) for p in paths), default=10) + 3  # room for an NDJSON ":n"
        click.echo(f"{'example':<{width}} {'type':<22} {'result':<11} {'err':>3} {'warn':>4} {'SQOL':>5} {'TS':>5}")
        surprises = 0
        for record, result in _validated(services, [str(p) for p in paths]):
            name = example_name(record.label, root)
            if record.error is not None:
                click.echo(f"{name:<{width}} {'-':<22} {'UNUSABLE':<11} {record.error.message}")
                surprises += 1
                continue
            errors = len(result.errors)
            warnings = sum(i.severity == "warning" for i in result.issues)
            sqol = ts = "-"
            qrs = _responses(record.resource) if result.valid else []
            if len(qrs) == 1 and qrs[0].get("questionnaire", "").startswith(services.dialog.url):
                s = score_dialog(qrs[0], services.dialog, min_answered=services.min_answered())
                sqol, ts = _fmt(s.sqol_mean), _fmt(s.treatment_satisfaction_mean)
            surprise = result.valid == expected_invalid(record)
            surprises += surprise
            verdict = ("valid" if result.valid else "invalid") + (" !!" if surprise else "")
            rtype = record.resource.get("resourceType", "?")
            click.echo(f"{name:<{width}} {rtype:<22} {verdict:<11} {errors:>3} {warnings:>4} {sqol:>5} {ts:>5}")
        click.echo(f"\n{len(paths)} example files; "
                   + ("every result as expected" if not surprises else f"{surprises} results NOT as expected (!!)"))
        return EXIT_ISSUES if surprises else EXIT_OK

    _run(command)


# -- serve ---------------------------------------------------------------------------------------
INSECURE_WARNING = """
########################################################################################
#  WARNING: AUTHENTICATION IS OFF (--insecure-dev).                                    #
#  Every request is accepted with full read and write access to every resource.        #
#  For local experiments only: never expose this server to a network or to real data.  #
########################################################################################
"""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--seed-examples", is_flag=True,
              help="On first start (empty database) store the valid examples/: Patients first, then the rest.")
@click.option("--insecure-dev", is_flag=True, help="Switch authentication OFF, for local experiments only.")
@click.option("--tokens", "tokens_file", envvar="FHIR_BRIDGE_TOKENS_FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Tokens file (SHA-256 hashes, see `fhir-bridge token`) [env FHIR_BRIDGE_TOKENS_FILE]. "
                   "Without one, a development token is generated for this run and printed.")
@click.option("--max-body-bytes", type=click.IntRange(min=1),
              help="Larger request bodies are refused with 413 [default: 5 MiB].")
@click.pass_obj
def serve(services: Services, host: str, port: int, seed_examples: bool, insecure_dev: bool,
          tokens_file: Path | None, max_body_bytes: int | None) -> None:
    """Run the FHIR R4 server (REST API under /fhir) on the configured database.

    The database is FHIR_BRIDGE_DATABASE_URL, or an SQLite file in FHIR_BRIDGE_DATA_DIR,
    created and migrated on start.
    """
    if insecure_dev and tokens_file:
        raise click.UsageError("--insecure-dev switches authentication off; it cannot be used with a tokens file")

    def command() -> int:
        import uvicorn

        from fhir_bridge.api.app import RESOURCE_TYPES, create_app
        from fhir_bridge.api.auth import TokenStore
        from fhir_bridge.bridge import Bridge
        from fhir_bridge.pipelines import seed

        if insecure_dev:
            tokens, dev_token = None, None
        elif tokens_file:
            tokens, dev_token = TokenStore.load(tokens_file), None
        else:
            tokens, dev_token = TokenStore.with_dev_token()
        bridge = Bridge(services.settings, validator=services.validator)
        try:
            if seed_examples:
                examples_dir = services.settings.examples_dir
                _print_seed_report(seed.seed_examples(bridge, examples_dir, RESOURCE_TYPES), examples_dir)
            limit = {"max_body_bytes": max_body_bytes} if max_body_bytes else {}  # else the app's default
            app = create_app(bridge, tokens=tokens, **limit)
            click.echo(f"fhir-bridge FHIR R4 server: http://{host}:{port}/fhir")
            click.echo(f"database: {bridge.database.engine.url.render_as_string(hide_password=True)}")
            if insecure_dev:
                click.echo(INSECURE_WARNING, err=True)
            elif dev_token:
                click.echo(f"development token (every scope, valid for this run only): {dev_token}")
                click.echo(f"  curl -H 'Authorization: Bearer {dev_token}' http://{host}:{port}/fhir/Patient")
            else:
                click.echo(f"tokens: {tokens_file}")
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            # uvicorn stops gracefully on SIGTERM, then raises it again for the handler it found: the
            # default one would kill the process before the database is closed. This one ends the
            # command through the `finally` below, with exit code 0.
            previous = signal.signal(signal.SIGTERM, _stop)
            try:
                # One worker: the embedded SQLite store has a single writer; the Bridge is built once here.
                uvicorn.run(app, host=host, port=port, workers=1, log_level="info")
            finally:
                signal.signal(signal.SIGTERM, previous)
        finally:
            bridge.close()
        return EXIT_OK

    _run(command)


def _stop(_signal: int, _frame) -> None:
    raise SystemExit(EXIT_OK)


def _print_seed_report(report: SeedReport, examples_dir: Path) -> None:
    if report.held:
        click.echo(f"examples not seeded: the database already holds {report.held} resources")
        return
    for name, reason in report.skipped:
        click.echo(f"example skipped: {name}: {reason}")
    click.echo(f"seeded {len(report.stored)} example resources from {examples_dir}")


# -- token ---------------------------------------------------------------------------------------
def _check_scopes(_ctx, _param, scopes: tuple[str, ...]) -> tuple[str, ...]:
    from fhir_bridge.api.auth import check_scope

    for scope in scopes:
        try:
            check_scope(scope)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return scopes


@main.command()
@click.option("--partner", required=True, help="ODS code of the partner organisation, e.g. RV3.")
@click.option("--name", help="The partner's name, for people reading the tokens file.")
@click.option("--scope", "scopes", multiple=True, required=True, callback=_check_scopes,
              help="SMART v1 system scope, e.g. system/*.read or system/QuestionnaireResponse.write; repeatable.")
def token(partner: str, name: str | None, scopes: tuple[str, ...]) -> None:
    """Issue a bearer token: prints the token once and the tokens-file entry holding only its hash."""
    import secrets

    from fhir_bridge.api.auth import token_hash

    new_token = secrets.token_urlsafe(32)
    entry = {"sha256": token_hash(new_token), "partner": partner, "name": name or partner, "scopes": list(scopes)}
    click.echo(f"token for {partner} (shown once, not stored: hand it to the partner over a secure channel):")
    click.echo(new_token)
    click.echo('add this entry to the "tokens" list of the tokens file:')
    click.echo(orjson.dumps(entry).decode())


# -- quarantine and identity reviews ---------------------------------------------------------------
def _bridge(services: Services):
    from fhir_bridge.bridge import Bridge

    return Bridge(services.settings, validator=services.validator)


@main.group()
def quarantine() -> None:
    """Records an import could not store, with where they came from and why."""


@quarantine.command("list")
@click.option("--source", help="Only this source (rio, hl7, vcse, dialog-app).")
@click.option("--state", type=click.Choice(["open", "released", "all"]), default="open", show_default=True)
@click.pass_obj
def quarantine_list(services: Services, source: str | None, state: str) -> None:
    """List quarantined records: id, source, location, reason."""
    def command() -> int:
        bridge = _bridge(services)
        try:
            entries = bridge.repository.quarantined(state=None if state == "all" else state, source=source)
        finally:
            bridge.close()
        for e in entries:
            click.echo(f"{e.entry_id}  {e.state:8} {e.source:10} {e.reason:16} {e.location}")
        click.echo(f"{len(entries)} quarantined record(s)")
        return EXIT_OK

    _run(command)


@quarantine.command("show")
@click.argument("entry_id")
@click.pass_obj
def quarantine_show(services: Services, entry_id: str) -> None:
    """Show one quarantined record: the raw record as received and the OperationOutcome."""
    from fhir_bridge.errors import NotFound

    def command() -> int:
        bridge = _bridge(services)
        try:
            entry = bridge.repository.quarantine_entry(entry_id)
        finally:
            bridge.close()
        if entry is None:
            raise NotFound(f"no quarantined record {entry_id}")
        click.echo(f"{entry.source} {entry.location} ({entry.reason}, {entry.state}; run {entry.run_id})")
        click.echo("raw record:")
        click.echo(entry.raw.decode("utf-8", "replace"))
        click.echo("why:")
        click.echo(orjson.dumps(orjson.loads(entry.outcome), option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK

    _run(command)


@main.group()
def identity() -> None:
    """Records waiting for a person to say who they belong to."""


@identity.command("review")
@click.pass_obj
def identity_review(services: Services) -> None:
    """List open identity reviews: the source's person, why, and the candidate Patients."""
    def command() -> int:
        bridge = _bridge(services)
        try:
            reviews = bridge.repository.reviews()
        finally:
            bridge.close()
        for r in reviews:
            click.echo(f"{r.review_id}  {r.source}:{r.source_key}  {r.reason}")
            click.echo(f"  candidates: {', '.join(f'Patient/{c}' for c in r.candidates) or 'none'}")
        click.echo(f"{len(reviews)} open review(s)")
        return EXIT_OK

    _run(command)


@identity.command("link")
@click.argument("review_id")
@click.argument("patient_id", required=False)
@click.option("--new", "as_new", is_flag=True, help="The records are a new person's, not a candidate's.")
@click.pass_obj
def identity_link(services: Services, review_id: str, patient_id: str | None, as_new: bool) -> None:
    """Resolve a review: the waiting records belong to PATIENT_ID (or, with --new, to a new person)."""
    from fhir_bridge.pipelines.ingest import Ingest, resolve_review
    from fhir_bridge.pipelines.resources import SYSTEM_CALLER

    if bool(patient_id) == as_new:
        raise click.UsageError("give either a PATIENT_ID or --new")

    def refuse_mapping(_record):  # resolving a review stores records mapped already
        raise AssertionError("no mapping when resolving a review")

    def command() -> int:
        bridge = _bridge(services)
        try:
            review = bridge.repository.review(review_id)
            run = Ingest(bridge, review.source if review else "review", refuse_mapping, SYSTEM_CALLER)
            status = resolve_review(run, review_id, patient_id)
        finally:
            bridge.close()
        click.echo(f"review {review_id}: {status}")
        return EXIT_OK if not status.startswith("quarantined") else EXIT_ISSUES

    _run(command)


# -- import ------------------------------------------------------------------------------------------
@main.command("import")
@click.argument("source", type=click.Choice(["dialog-app", "hl7", "rio", "vcse"]))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--organization", required=True,
              help="ODS code of the organisation the export comes from (VCSE rows carry their own; this names the importer).")
@click.pass_obj
def import_(services: Services, source: str, paths: tuple[Path, ...], organization: str) -> None:
    """Import a source's export files (CSV files, folders or zips) into the store.

    Every record is stored (created, updated, unchanged) or quarantined with its reason; records whose
    person cannot be identified safely wait in `fhir-bridge identity review`. Exit 0 when nothing was
    quarantined, 1 otherwise. The run report is printed and saved with the run.
    """
    from fhir_bridge.pipelines.resources import Caller
    from fhir_bridge.pipelines.sources import run_import

    def command() -> int:
        bridge = _bridge(services)
        try:
            report = run_import(bridge, source, list(paths), organization=organization,
                                caller=Caller(organization, organization),
                                quarantine_dir=services.settings.data_dir / "quarantine", show_progress=True)
        finally:
            bridge.close()
        summary = report.to_json()
        click.echo(f"run {report.run_id}: {summary['in']} in = {summary['created']} created + {summary['updated']} updated"
                   f" + {summary['unchanged']} unchanged + {summary['quarantined']} quarantined")
        for reason, n in sorted(report.quarantined.items()):
            click.echo(f"  quarantined, {reason}: {n}")
        for d in report.disagreements:
            click.echo(f"  Patient/{d['patient']} {d['element']}: kept {d['kept']!r} ({d['keptFrom']}), "
                       f"not {d['other']!r} ({d['otherFrom']})")
        return EXIT_ISSUES if report.quarantined else EXIT_OK

    _run(command)


# -- synth ---------------------------------------------------------------------------------------

@main.command()
@click.argument("source")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Records in each source's main file (DIALOGs, sessions, ORU messages).")
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same bytes.")
@click.option("--dirty", is_flag=True, help="Inject the quirks and faults real extracts contain.")
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the manifest (files, counts, every injection) as JSON here.")
def synth(source: str, out_dir: Path, count: int, seed: int, dirty: bool, manifest_path: Path | None) -> None:
    """Write a synthetic export of SOURCE (rio, vcse, dialog-app, hl7 or all) into OUT_DIR."""
    from fhir_bridge.synth import generate

    def command() -> int:
        manifest = generate(source, out_dir, count=count, seed=seed, dirty=dirty)
        for line in manifest.summary():
            click.echo(line)
        if manifest_path is not None:
            try:
                manifest_path.write_bytes(orjson.dumps(manifest.to_json(), option=orjson.OPT_INDENT_2))
            except OSError as exc:
                raise BridgeError(f"cannot write the manifest {manifest_path}: {exc.strerror}") from exc
        return EXIT_OK

    _run(command)


# -- mllp --------------------------------------------------------------------------------------------
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=2575, show_default=True, type=click.IntRange(0, 65535))
@click.option("--organization", required=True, help="ODS code of the organisation whose feed this is.")
@click.option("--idle-timeout", default=300.0, show_default=True, help="Seconds before an idle connection is closed.")
@click.pass_obj
def mllp(services: Services, host: str, port: int, organization: str, idle_timeout: float) -> None:
    """Listen for HL7 v2 messages over MLLP and import them as they arrive.

    Every message is answered: AA once its data is committed, AE with the reason when it cannot be
    imported (the message is quarantined), AR when it cannot be parsed. Shares the store named by
    FHIR_BRIDGE_DATABASE_URL with `serve`, so both can run as separate processes.
    """
    import asyncio

    from fhir_bridge.pipelines.source_hl7 import serve_mllp

    def command() -> int:
        bridge = _bridge(services)

        def ready(address) -> None:
            click.echo(f"fhir-bridge MLLP listener: {address[0]}:{address[1]} (feed of {organization})")
            click.echo(f"database: {bridge.database.engine.url.render_as_string(hide_password=True)}")

        try:
            asyncio.run(serve_mllp(bridge, host, port, organization, ready=ready, idle_timeout=idle_timeout))
        finally:
            bridge.close()
        return EXIT_OK

    _run(command)
