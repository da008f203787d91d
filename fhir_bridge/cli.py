"""The command line. Thin: read input, call the validator / scorer, print, exit with a code.

Exit codes: 0 all good, 1 validation issues (errors) found, 2 unusable input, 3 configuration
error in the project's own files, 70 an internal error. Errors are printed as sentences, never
as tracebacks.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click
import orjson

from fhir_bridge.config import Settings
from fhir_bridge.errors import BridgeError, ConfigurationError
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
        return self.settings.min_answered


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
    try:
        ctx.obj = Services(Settings.from_env())
    except ValueError as exc:  # a setting that cannot be read: say which, not a traceback
        raise click.UsageError(f"bad setting: {exc}") from exc


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
@click.option("--mllp-port", type=click.IntRange(1, 65535),
              help="Also listen for HL7 v2 over MLLP on this port, as `fhir-bridge mllp` [env FHIR_BRIDGE_MLLP_PORT].")
@click.option("--mllp-host", help="Interface the MLLP listener binds [env FHIR_BRIDGE_MLLP_HOST; default: 127.0.0.1].")
@click.option("--mllp-organization",
              help="ODS code of the trust whose feed the MLLP listener takes [env FHIR_BRIDGE_MLLP_ORGANIZATION].")
@click.option("--workers", type=click.IntRange(1, 64), envvar="FHIR_BRIDGE_SERVE_WORKERS", default=1, show_default=True,
              help="Server processes sharing the port, e.g. one per core [env FHIR_BRIDGE_SERVE_WORKERS].")
@click.pass_obj
def serve(services: Services, host: str, port: int, seed_examples: bool, insecure_dev: bool,
          tokens_file: Path | None, max_body_bytes: int | None, mllp_port: int | None, mllp_host: str | None,
          mllp_organization: str | None, workers: int) -> None:
    """Run the FHIR R4 server (REST API under /fhir) on the configured database.

    The database is FHIR_BRIDGE_DATABASE_URL, or an SQLite file in FHIR_BRIDGE_DATA_DIR,
    created and migrated on start. With an MLLP port (--mllp-port or FHIR_BRIDGE_MLLP_PORT) the
    MLLP listener runs in the same process on the same store: see `fhir-bridge mllp`. With
    --workers N, N processes serve the port (fhir_bridge/api/workers.py); the first also runs the
    MLLP listener.
    """
    if insecure_dev and tokens_file:
        raise click.UsageError("--insecure-dev switches authentication off; it cannot be used with a tokens file")
    settings = services.settings
    mllp_port = mllp_port or settings.mllp_port
    mllp_host = mllp_host or settings.mllp_host
    mllp_organization = mllp_organization or settings.mllp_organization
    if mllp_port and not mllp_organization:
        raise click.UsageError("the MLLP listener needs the feed's organisation: --mllp-organization ODS "
                               "(or FHIR_BRIDGE_MLLP_ORGANIZATION)")
    if mllp_port:
        mllp_organization = _ods_code(mllp_organization)

    def command() -> int:
        import uvicorn

        from fhir_bridge.api.app import RESOURCE_TYPES, create_app
        from fhir_bridge.api.auth import TokenStore
        from fhir_bridge.bridge import Bridge
        from fhir_bridge.pipelines import seed
        from fhir_bridge.pipelines.bulk_gc import frozen_start

        if insecure_dev:
            tokens, dev_token = None, None
        elif tokens_file:
            tokens, dev_token = TokenStore.load(tokens_file), None
        else:
            tokens, dev_token = TokenStore.with_dev_token()
        limit = {"max_body_bytes": max_body_bytes} if max_body_bytes else {}  # else the app's default

        def serve_here(bridge, handed=None, with_mllp: bool = True) -> None:
            """One server process on `bridge`: on the port itself, or (a worker) on the connections
            the parent hands it, `handed(config)` being the uvicorn server for those."""
            app = create_app(bridge, tokens=tokens, **limit)
            config = uvicorn.Config(app, host=host, port=port, log_level="info")
            server = handed(config) if handed is not None else None
            # uvicorn stops gracefully on SIGTERM, then raises it again for the handler it found: the
            # default one would kill the process before the database is closed. This one ends the
            # command through the caller's `finally`, with exit code 0.
            previous = signal.signal(signal.SIGTERM, _stop)
            try:
                with frozen_start():
                    if mllp_port is not None and with_mllp:
                        _serve_with_mllp(config, bridge, mllp_host, mllp_port, mllp_organization, server)
                    elif server is None:
                        uvicorn.run(app, host=host, port=port, workers=1, log_level="info")
                    else:
                        server.run()
            finally:
                signal.signal(signal.SIGTERM, previous)

        bridge = Bridge(services.settings, validator=services.validator)  # creates and migrates the store
        try:
            if seed_examples:
                examples_dir = services.settings.examples_dir
                _print_seed_report(seed.seed_examples(bridge, examples_dir, RESOURCE_TYPES), examples_dir)
            click.echo(f"fhir-bridge FHIR R4 server: http://{host}:{port}/fhir"
                       + (f" ({workers} worker processes)" if workers > 1 else ""))
            click.echo(f"database: {bridge.database.engine.url.render_as_string(hide_password=True)}")
            if insecure_dev:
                click.echo(INSECURE_WARNING, err=True)
            elif dev_token:
                click.echo(f"development token (every scope, valid for this run only): {dev_token}")
                click.echo(f"  curl -H 'Authorization: Bearer {dev_token}' http://{host}:{port}/fhir/Patient")
            else:
                click.echo(f"tokens: {tokens_file}")
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            if workers == 1:
                serve_here(bridge)
                return EXIT_OK
        finally:
            bridge.close()  # with workers: before the fork, which no connection or thread may cross
        from fhir_bridge.api.workers import bind, serve_workers

        try:
            sock = bind(host, port)
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        sys.stdout.flush()

        def worker(index: int, handed) -> int:
            own = Bridge(services.settings, validator=services.validator)
            try:
                serve_here(own, handed, with_mllp=index == 0)
            finally:
                own.close()
            return EXIT_OK

        try:
            return EXIT_OK if serve_workers(workers, sock, worker) == 0 else EXIT_INTERNAL
        finally:
            sock.close()

    _run(command)


def _ods_code(value: str) -> str:
    """An ODS code as given (letters and digits, e.g. RV3, X1A2B), else a usage error: it names the
    importer in every record and Provenance, and a blank one failed each record instead."""
    code = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9]{2,10}", code):
        raise click.BadParameter(f"{value!r} is not an ODS code (letters and digits, e.g. RV3)")
    return code


def _stop(_signal: int, _frame) -> None:
    raise SystemExit(EXIT_OK)


def _serve_with_mllp(config, bridge, host: str, port: int, organization: str, server=None) -> None:
    import asyncio

    from fhir_bridge.api.serving import serve_with_mllp

    def ready(address) -> None:
        click.echo(f"fhir-bridge MLLP listener: {address[0]}:{address[1]} (feed of {organization})")

    asyncio.run(serve_with_mllp(config, bridge, host, port, organization, ready=ready, server=server))


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
@click.option("--state", type=click.Choice(["open", "resolved", "closed", "all"]), default="open", show_default=True)
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
            closing = bridge.repository.run_report(entry.resolved_run) if entry and entry.state == "closed" else None
        finally:
            bridge.close()
        if entry is None:
            raise NotFound(f"no quarantined record {entry_id}")
        resolved = f"; {entry.state} by run {entry.resolved_run}" if entry.resolved_run else ""
        click.echo(f"{entry.source} {entry.location} ({entry.reason}, {entry.state}; run {entry.run_id}{resolved})")
        click.echo("raw record:")
        click.echo(entry.raw.decode("utf-8", "replace"))
        click.echo("why:")
        click.echo(orjson.dumps(orjson.loads(entry.outcome), option=orjson.OPT_INDENT_2).decode())
        if entry.state == "closed" and closing is not None:
            click.echo(f"closed by {closing.get('by')}: {closing.get('reason')}")
        return EXIT_OK

    _run(command)


@quarantine.command("close")
@click.argument("entry_ids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why these records are not to be stored (kept with the closing run).")
@click.pass_obj
def quarantine_close(services: Services, entry_ids: tuple[str, ...], reason: str) -> None:
    """Close open entries by hand: their records are not to be stored (a test record, one sent twice
    by mistake). A run of source `quarantine-close` records who closed them and why; `retry ID`
    still stores a closed record if it is wanted after all. The same record quarantined again by a
    later import opens its entry again. Exit 0 when every entry named was open, 1 when one was not,
    2 when one does not exist (then nothing is closed)."""
    import getpass
    import time
    import uuid

    if not reason.strip():
        raise click.UsageError("--reason must say why")

    def command() -> int:
        bridge = _bridge(services)
        run_id = str(uuid.uuid4())
        try:
            before = bridge.repository.close_quarantined(list(entry_ids), run_id, time.time_ns() // 1000,
                                                         {"reason": reason.strip(), "by": getpass.getuser()})
        finally:
            bridge.close()
        for entry_id, state in before.items():
            click.echo(f"{entry_id}: closed" if state == "open" else f"{entry_id}: not open ({state}), left as it is")
        closed = sum(state == "open" for state in before.values())
        click.echo(f"closed {closed} of {len(before)} by run {run_id}")
        return EXIT_OK if closed == len(before) else EXIT_ISSUES

    _run(command)


@quarantine.command("retry")
@click.argument("entry_ids", nargs=-1)
@click.option("--source", type=click.Choice(["dialog-app", "hl7", "rio", "vcse"]),
              help="Retry every open entry of this source.")
@click.option("--all", "every", is_flag=True, help="Retry every open entry.")
@click.pass_obj
def quarantine_retry(services: Services, entry_ids: tuple[str, ...], source: str | None, every: bool) -> None:
    """Map quarantined records again, after the mapping or the data is fixed.

    A record now stored resolves its entry (so does one handed to `identity review`, where it
    waits for a person); one still failing stays open with its new reason. Each source's retry is a
    run with a report. Exit 0 when every record is stored, 1 when any is still quarantined, waits
    for identity review or cannot be retried (unreadable input: import the fixed file again).
    """
    if bool(entry_ids) == bool(source or every):
        raise click.UsageError("give ENTRY_IDs, or --source S and/or --all")
    from fhir_bridge.errors import NotFound
    from fhir_bridge.pipelines.quarantine_retry import ALREADY, CANNOT, RESOLVED, REVIEW, STILL, retry_entries

    def command() -> int:
        bridge = _bridge(services)
        try:
            if entry_ids:
                wanted = list(dict.fromkeys(entry_ids))
                entries = [bridge.repository.quarantine_entry(i) for i in wanted]
                missing = [i for i, e in zip(wanted, entries) if e is None]
                if missing:  # before anything is retried: a mistyped id must not half-run the command
                    raise NotFound(f"no quarantined record {', '.join(missing)}")
            else:
                entries = bridge.repository.quarantined(state="open", source=source, limit=None)
                if not entries:
                    click.echo("nothing to retry: no open quarantine entries" + (f" of {source}" if source else ""))
                    return EXIT_OK
            results, reports = retry_entries(bridge, entries, quarantine_dir=services.settings.data_dir / "quarantine")
        finally:
            bridge.close()
        position = {e.entry_id: n for n, e in enumerate(entries)}
        for r in sorted(results, key=lambda r: position[r.entry.entry_id]):
            click.echo(f"{r.entry.entry_id}  {r.entry.source:10} {r.entry.location}")
            click.echo(f"  {r.outcome}: {r.detail}" + (f" (run {r.run_id})" if r.outcome in (RESOLVED, REVIEW) else ""))
        for report in reports:
            c = report.to_json()
            click.echo(f"run {report.run_id} ({report.source}): {c['in']} in = {c['created']} created + "
                       f"{c['updated']} updated + {c['unchanged']} unchanged + {c['quarantined']} quarantined")
        n = {k: sum(r.outcome == k for r in results) for k in (RESOLVED, REVIEW, STILL, CANNOT, ALREADY)}
        click.echo(f"retried {n[RESOLVED] + n[REVIEW] + n[STILL]}: {n[RESOLVED]} resolved, "
                   + (f"{n[REVIEW]} waiting for identity review, " if n[REVIEW] else "")
                   + f"{n[STILL]} still quarantined"
                   + (f"; {n[CANNOT]} cannot be retried (import the fixed file again)" if n[CANNOT] else "")
                   + (f"; {n[ALREADY]} resolved already" if n[ALREADY] else ""))
        return EXIT_ISSUES if n[REVIEW] or n[STILL] or n[CANNOT] else EXIT_OK

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
            held = [e for e in bridge.repository.quarantined(source=run.source, limit=None)
                    if e.run_id == run.report.run_id]
        finally:
            bridge.close()
        click.echo(f"review {review_id}: {status}")
        for entry in held:  # why, and where the record waits now
            for issue in orjson.loads(entry.outcome).get("issue", ()):
                click.echo(f"  {issue.get('severity')}: {issue.get('diagnostics')}")
            retry = f"; `fhir-bridge quarantine retry {entry.entry_id}` once that is fixed" if entry.context else ""
            click.echo(f"  quarantined: `fhir-bridge quarantine show {entry.entry_id}`{retry}")
        return EXIT_OK if not status.startswith("quarantined") else EXIT_ISSUES

    _run(command)


# -- import ------------------------------------------------------------------------------------------
@main.command("import")
@click.argument("source", type=click.Choice(["dialog-app", "hl7", "rio", "vcse"]))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option("--organization", required=True, callback=lambda _c, _p, value: _ods_code(value),
              help="ODS code of the organisation the export comes from (VCSE rows carry their own; this names the importer).")
@click.pass_obj
def import_(services: Services, source: str, paths: tuple[Path, ...], organization: str) -> None:
    """Import a source's export files (files, folders or zips; - reads standard input) into the store.

    Every record is stored (created, updated, unchanged) or quarantined with its reason; records whose
    person cannot be identified safely wait in `fhir-bridge identity review`. Exit 0 when nothing was
    quarantined, 1 otherwise. The run report is printed and saved with the run.
    """
    from fhir_bridge.pipelines.care_access import operator_caller
    from fhir_bridge.pipelines.sources import run_import

    def command() -> int:
        bridge = _bridge(services)
        try:
            report = run_import(bridge, source, list(paths), organization=organization,
                                caller=operator_caller(organization),
                                quarantine_dir=services.settings.data_dir / "quarantine", show_progress=True,
                                workers=services.settings.import_workers)
        finally:
            bridge.close()
        summary = report.to_json()
        click.echo(f"run {report.run_id}: {summary['in']} in = {summary['created']} created + {summary['updated']} updated"
                   f" + {summary['unchanged']} unchanged + {summary['quarantined']} quarantined")
        for reason, n in sorted(report.quarantined.items()):
            click.echo(f"  quarantined, {reason}: {n}")
        if report.resolved:
            click.echo(f"  resolved {len(report.resolved)} quarantine entries of earlier imports: "
                       "what they could not read or store was read and stored this time")
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
@click.option("--host", help="Interface to listen on [env FHIR_BRIDGE_MLLP_HOST; default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="[env FHIR_BRIDGE_MLLP_PORT; default: 2575]")
@click.option("--organization", help="ODS code of the trust whose feed this is [env FHIR_BRIDGE_MLLP_ORGANIZATION].")
@click.option("--idle-timeout", default=300.0, show_default=True, help="Seconds before an idle connection is closed.")
@click.pass_obj
def mllp(services: Services, host: str | None, port: int | None, organization: str | None, idle_timeout: float) -> None:
    """Listen for HL7 v2 messages over MLLP and import them as they arrive.

    Every message is answered: AA once its data is committed, AE with the reason when it cannot be
    imported (the message is quarantined), AR when it cannot be parsed. Shares the store named by
    FHIR_BRIDGE_DATABASE_URL with `serve`, so both can run as separate processes (or let `serve`
    start the listener itself: `serve --mllp-port`).
    """
    import asyncio

    settings = services.settings
    host = host or settings.mllp_host
    port = port if port is not None else settings.mllp_port or 2575
    organization = organization or settings.mllp_organization
    if not organization:
        raise click.UsageError("say whose feed this is: --organization ODS (or FHIR_BRIDGE_MLLP_ORGANIZATION)")
    organization = _ods_code(organization)

    from fhir_bridge.pipelines.bulk_gc import frozen_start
    from fhir_bridge.pipelines.hl7_feed import serve_mllp

    def command() -> int:
        bridge = _bridge(services)

        def ready(address) -> None:
            click.echo(f"fhir-bridge MLLP listener: {address[0]}:{address[1]} (feed of {organization})")
            click.echo(f"database: {bridge.database.engine.url.render_as_string(hide_password=True)}")

        try:
            with frozen_start():
                asyncio.run(serve_mllp(bridge, host, port, organization, ready=ready, idle_timeout=idle_timeout))
        finally:
            bridge.close()
        return EXIT_OK

    _run(command)


# -- export ------------------------------------------------------------------------------------------
@main.group()
def export() -> None:
    """Send what the store holds to partners' systems."""


@export.command("hl7")
@click.option("--receiving-organization", "organization", required=True,
              help="ODS code of the EPR's organisation: the responses it recorded are not sent back to it.")
@click.option("--out", "out", help="Write the messages to this new file (- for standard output) instead of sending them.")
@click.option("--to", "to", help="Send over MLLP to HOST:PORT [default: FHIR_BRIDGE_MLLP_PEER].")
@click.option("--since", help="Only responses changed at or after this FHIR date or dateTime (e.g. 2025-03-01).")
@click.option("--patient", help="Only this Patient's responses (an id, or Patient/id).")
@click.option("--receiving-application", default="", help="MSH-5: the EPR interface's application name.")
@click.option("--receiving-facility", help="MSH-6 [default: the receiving organisation's ODS code].")
@click.option("--all", "include_done", is_flag=True, help="Also versions this peer has taken already (a full resend).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for a connection and for each ACK.")
@click.pass_obj
def export_hl7(services: Services, organization: str, out: str | None, to: str | None, since: str | None,
               patient: str | None, receiving_application: str, receiving_facility: str | None, include_done: bool,
               timeout: float) -> None:
    """DIALOG responses recorded by other partners -> HL7 v2.4 ORU^R01 messages for the EPR.

    Each message is built from mappings/hl7-out/oru-dialog.yaml and validated with hl7apy before it
    leaves. Sent over MLLP one at a time, each waiting for its ACK (AA: taken; AE/AR: reported, sent
    again next run), or written to a file. Every version is recorded per peer, so a re-run sends only
    new or changed responses and those not taken yet. Exit 0 when all were taken, 1 when any was
    refused or invalid, 69 when the peer could not be reached or stopped answering.
    """
    from fhir_bridge.errors import PeerUnavailable
    from fhir_bridge.fhir.dates import to_microseconds
    from fhir_bridge.outputs.mllp_sender import parse_peer
    from fhir_bridge.pipelines.export_hl7 import Hl7Export, file_peer, mllp_peer

    if out and to:
        raise click.UsageError("give --out FILE or --to HOST:PORT, not both")
    target = to or (None if out else services.settings.mllp_peer)
    if not out and not target:
        raise click.UsageError("say where the messages go: --out FILE (- for standard output), or --to HOST:PORT "
                               "(or set FHIR_BRIDGE_MLLP_PEER)")
    since_us = to_microseconds(since) if since else None
    if since and since_us is None:
        raise click.BadParameter(f"{since!r} is not a FHIR date or dateTime (2025-03-01, 2025-03-01T09:00:00Z)",
                                 param_hint="--since")
    patient_id = patient.removeprefix("Patient/") if patient else None

    def command() -> int:
        host_port = parse_peer(target) if target else None
        bridge = _bridge(services)
        try:
            export = Hl7Export(bridge, organization, receiving_application=receiving_application,
                               receiving_facility=receiving_facility)
            if host_port:
                peer = mllp_peer(*host_port)
                selection = export.select(peer, since=since_us, patient_id=patient_id, include_done=include_done)
                report = export.send(selection, *host_port, peer, timeout=timeout)
            else:
                peer = file_peer(export.organization)
                selection = export.select(peer, since=since_us, patient_id=patient_id, include_done=include_done)
                report = _export_to_file(export, selection, out, peer)
        finally:
            bridge.close()
        echo = (lambda line: click.echo(line, err=True)) if out == "-" else click.echo
        c = report.counts
        outcome = (f"{c['accepted']} accepted (AA) + {c['error']} refused (AE) + {c['rejected']} rejected (AR)"
                   if host_port else f"{c['written']} written") + f" + {c['invalid']} invalid"
        messages = f"{report.total} message{'' if report.total == 1 else 's'}"
        echo(f"export hl7 to {peer}{f' ({out})' if out and out != '-' else ''}: {messages} = {outcome}"
             + (f"; {report.resent} sent again after an earlier attempt" if report.resent else ""))
        for line in report.problems:
            echo(f"  {line}")
        if report.stopped:
            echo(f"stopped: {report.stopped}. Nothing more was sent; the next run sends what the peer has not taken.")
            return PeerUnavailable.exit_code
        return EXIT_ISSUES if report.failed else EXIT_OK

    _run(command)


def _export_to_file(export, selection, out: str, peer: str):
    if out == "-":
        return export.write(selection, sys.stdout.buffer, peer)
    try:
        # A new file: the messages of an earlier run are recorded as written, so overwriting them
        # would lose them without trace.
        handle = open(out, "xb")
    except FileExistsError as exc:
        raise BridgeError(f"{out} exists already: write to a new file") from exc
    except OSError as exc:
        raise BridgeError(f"cannot write {out}: {exc.strerror}") from exc
    with handle:
        return export.write(selection, handle, peer)


# -- submission --------------------------------------------------------------------------------------
@main.group()
def submission() -> None:
    """MHSDS-style monthly submissions made from the store."""


@submission.command("mhsds")
@click.option("--period", required=True, help="The reporting month, YYYY-MM (e.g. 2026-10).")
@click.option("--provider", required=True, help="ODS code of the provider the submission is for (OrgIDProvider).")
@click.option("--submitter", help="ODS code of the organisation sending it (OrgIDSubmit) [default: the provider].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the file, its CSV tables and quality report [default: FHIR_BRIDGE_DATA_DIR/submissions].")
@click.option("--by", "created_by", help="Who is making it, recorded with it [default: the login name].")
@click.pass_obj
def submission_mhsds(services: Services, period: str, provider: str, submitter: str | None, out_dir: Path | None,
                     created_by: str | None) -> None:
    """Write the provider's MHSDS-style XML for one month (mappings/mhsds-out/), valid against its XSD.

    With it: the same tables as CSV files, and a data quality report (HTML and JSON) listing every
    record left out and why. The run is recorded in the store (`submission list`). Exit 0 when the
    file was made (records left out are in the report), 2 for a bad period or provider, 3 when the
    mapping or schema is wrong.
    """
    from fhir_bridge.pipelines.submission_mhsds import for_bridge
    from fhir_bridge.submission import Period

    try:
        month = Period.parse(period)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from exc

    def command() -> int:
        bridge = _bridge(services)
        try:
            result = for_bridge(bridge).run(month, provider.strip().upper(), out_dir or services.settings.data_dir / "submissions",
                                            submitter=submitter.strip().upper() if submitter else None,
                                            created_by=created_by)
        finally:
            bridge.close()
        record = result.record
        click.echo(f"MHSDS submission {record.provider} {record.period}: {result.xml}")
        click.echo(f"  valid against {result.schema}; "
                   f"sha256 {record.file_sha256[:16]}...; submission {record.submission_id}")
        click.echo("  rows: " + ", ".join(f"{table} {n}" for table, n in result.rows.items()))
        m = result.measures
        click.echo(f"  people {m['people']}, DIALOGs {m['dialogsSubmitted']} (people at T1 {m['peopleWithDialogAtT1']}, "
                   f"at T2 {m['peopleWithDialogAtT2']}), agreed care plans {m['peopleWithAgreedCarePlan']}, "
                   f"named key workers {m['peopleWithNamedKeyWorker']}")
        click.echo(f"  records left out: {result.left_out} (why: {result.report_html.name})")
        click.echo(f"  tables as CSV: {result.csv_folder}")
        click.echo(f"  quality report: {result.report_html} and {result.report_json.name}")
        if result.earlier:
            last = result.earlier[-1]
            same = "the same data as" if last.content_sha256 == record.content_sha256 else "data changed since"
            click.echo(f"  resubmission #{len(result.earlier) + 1} of {record.period}: {same} submission "
                       f"{last.submission_id} ({_when(last.created)}, by {last.created_by})")
        return EXIT_OK

    _run(command)


@submission.command("list")
@click.option("--provider", help="Only this provider's (ODS code).")
@click.option("--period", help="Only this month's (YYYY-MM).")
@click.pass_obj
def submission_list(services: Services, provider: str | None, period: str | None) -> None:
    """The submissions made, oldest first: a month made again shows as a resubmission, with whether
    its data changed."""
    from fhir_bridge.pipelines.submission_mhsds import describe_submissions

    def command() -> int:
        bridge = _bridge(services)
        try:
            records = bridge.repository.submissions(provider=provider.strip().upper() if provider else None,
                                                    period=period.strip() if period else None)
        finally:
            bridge.close()
        for item in describe_submissions(records):
            r = item["record"]
            rows = sum(n for table, n in item["rows"].items() if table != "MHS000Header")
            kind = "first" if item["number"] == 1 else f"resubmission #{item['number']}"
            change = "" if item["number"] == 1 else \
                " (same data as " + item["sameDataAs"] + ")" if item["sameDataAs"] else " (data changed)"
            click.echo(f"{r.submission_id}  {r.provider} {r.period}  {_when(r.created)}  by {r.created_by}  "
                       f"{kind}{change}")
            click.echo(f"  {r.file_name}  sha256 {r.file_sha256[:16]}...  {rows} rows, {item['leftOut']} records left out")
        click.echo(f"{len(records)} submission(s)")
        return EXIT_OK

    _run(command)


def _when(microseconds: int) -> str:
    from fhir_bridge.store.types import instant

    return instant(microseconds)[:19].replace("T", " ") + " UTC"


# -- report ------------------------------------------------------------------------------------------
@main.group()
def report() -> None:
    """Reports read from the store."""


@report.command("outcomes")
@click.option("--level", type=click.Choice(["population", "service", "individual"]),
              help="[default: individual with --patient, service with --organization/--team, else population]")
@click.option("--from", "start", help="First day of the period (2024-04-01).")
@click.option("--to", "end", help="Last day of the period, inclusive; ages are taken at it [default: today].")
@click.option("--organization", multiple=True, help="Recording organisation: ODS code or Organization/id (repeat).")
@click.option("--team", multiple=True, help="Team: the referral's performer, e.g. CareTeam/cmht-north (repeat).")
@click.option("--patient", help="The person, for the individual level (an id, or Patient/id).")
@click.option("--subgroup", multiple=True,
              help="ethnicity, gender, age-band, team, organisation (repeat or comma-separate) [default: all].")
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json", "fhir"]), default="html", show_default=True,
              help="html: page with charts; csv/json: the figures; fhir: a Bundle of MeasureReports.")
@click.option("--out", "out", default="-", show_default=True, help="File to write (- for standard output).")
@click.option("--no-disclosure-control", "raw", is_flag=True,
              help="Exact counts, nothing suppressed: for analysts inside the organisation, never for publication.")
@click.option("--exit-as-entry/--no-exit-as-entry", default=None,
              help="The exit DIALOG of one service serves as the entry of the provider's next "
                   "[default: FHIR_BRIDGE_REPORT_EXIT_AS_ENTRY, on].")
@click.pass_obj
def report_outcomes(services: Services, level: str | None, start: str | None, end: str | None,
                    organization: tuple[str, ...], team: tuple[str, ...], patient: str | None,
                    subgroup: tuple[str, ...], fmt: str, out: str, raw: bool, exit_as_entry: bool | None) -> None:
    """Pooled DIALOG outcomes: counts, means, change between the entry and the latest PROM DIALOG of
    an episode, process measures (T1, T2, care plans), by subgroup. Aggregated in the database.

    Disclosure control is on by default for pooled levels: counts below 5 become *, others are
    rounded to the nearest 5, shares and means resting on fewer than 5 are suppressed; figures
    resting on fewer than 30 people carry a caution. Exit 0, 2 for unusable options.
    """
    from datetime import datetime, timezone

    from fhir_bridge.reports import build_outcome_report, measure_report_bundle, parse_request, to_csv, to_html, to_json

    def command() -> int:
        request = parse_request(level=level, start=start, end=end, organizations=organization, teams=team,
                                subject=patient, subgroups=list(subgroup) or None, disclosure_control=not raw,
                                exit_as_entry=services.settings.report_exit_as_entry if exit_as_entry is None
                                else exit_as_entry)
        bridge = _bridge(services)
        try:
            now = datetime.now(timezone.utc)
            result = build_outcome_report(bridge.repository, bridge.dialog, request, today=now.date())
        finally:
            bridge.close()
        if fmt == "html":
            data = to_html(result).encode()
        elif fmt == "csv":
            data = to_csv(result).encode()
        elif fmt == "json":
            data = to_json(result)
        else:
            data = orjson.dumps(measure_report_bundle(result, generated=now), option=orjson.OPT_INDENT_2)
        _write_output(out, data)
        figure = lambda m: (result.figure(m).shown.text if result.figure(m) else "") or "0"  # noqa: E731
        summary = (f"report outcomes ({request.level}, {request.start or 'start'} to {request.end or result.as_of}): "
                   f"{figure('people')} people, {figure('prom-dialogs')} PROM DIALOGs, "
                   f"{figure('people-paired')} people with change"
                   + ("" if request.disclosure_control and request.level != "individual" else " (exact counts)")
                   + ("" if out == "-" else f" -> {out}"))
        click.echo(summary, err=out == "-")
        return EXIT_OK

    _run(command)


def _write_output(out: str, data: bytes) -> None:
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        raise BridgeError(f"cannot write {out}: {exc.strerror}") from exc
