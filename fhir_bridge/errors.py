"""One exception tree. Each class carries the FHIR IssueType code, the HTTP status and the
command-line exit code it turns into, so the API and the CLI translate errors in one place each."""
from __future__ import annotations


class BridgeError(Exception):
    """Base of every error fhir-bridge raises on purpose."""

    code = "exception"  # FHIR IssueType (http://hl7.org/fhir/issue-type)
    http_status = 500
    exit_code = 2

    def __init__(self, message: str, *, expression: str | None = None, location: str | None = None):
        super().__init__(message)
        self.message = message
        self.expression = expression  # FHIRPath of the offending element, when there is one
        self.location = location      # file:line or similar, for source records


class InputError(BridgeError):
    """Input that cannot be used at all: not JSON/XML, not a FHIR resource, unreadable file."""

    code = "structure"
    http_status = 400
    exit_code = 2


class UnsupportedFormat(InputError):
    code = "not-supported"
    http_status = 415


class NotFound(BridgeError):
    code = "not-found"
    http_status = 404
    exit_code = 2


class ConfigurationError(BridgeError):
    """The project's own data files or settings are wrong: fails loudly at start-up, naming the file."""

    code = "exception"
    http_status = 500
    exit_code = 3


class FhirPathError(BridgeError):
    """A FHIRPath expression that cannot be parsed or evaluated."""

    code = "invalid"
    http_status = 400
    exit_code = 2


class Gone(BridgeError):
    """The resource existed and was deleted."""

    code = "deleted"
    http_status = 410
    exit_code = 2


class PreconditionFailed(BridgeError):
    """A stale If-Match version, or a conditional interaction matching more than one resource.
    `current_version`: the version to read again, when one resource is meant (answered as ETag)."""

    code = "conflict"
    http_status = 412
    exit_code = 2

    def __init__(self, message: str, *, current_version: int | None = None, **kw):
        super().__init__(message, **kw)
        self.current_version = current_version


class PreconditionRequired(BridgeError):
    """An update of a resource several partners share, sent without If-Match: it could overwrite a
    change the sender has not seen (RFC 6585 428)."""

    code = "business-rule"
    http_status = 428
    exit_code = 2


class Conflict(BridgeError):
    code = "conflict"
    http_status = 409
    exit_code = 2


class Duplicate(Conflict):
    """A second instance of something there may be only one of (a person's open care plan); the
    message points at the one that exists."""

    code = "duplicate"


class Unprocessable(BridgeError):
    """Valid FHIR syntax that breaks a profile or a business rule; carries the full outcome."""

    code = "processing"
    http_status = 422
    exit_code = 1

    def __init__(self, message: str, *, outcome: dict | None = None, **kw):
        super().__init__(message, **kw)
        self.outcome = outcome


class NotAcceptable(BridgeError):
    code = "not-supported"
    http_status = 406
    exit_code = 2


class PayloadTooLarge(BridgeError):
    code = "too-costly"
    http_status = 413
    exit_code = 2


class Unauthorized(BridgeError):
    code = "login"
    http_status = 401
    exit_code = 2


class Forbidden(BridgeError):
    code = "forbidden"
    http_status = 403
    exit_code = 2


class PeerUnavailable(BridgeError):
    """An HL7 peer (the EPR's MLLP endpoint) refused the connection, closed it, or did not answer
    in time: nothing sent after that is known to have arrived."""

    code = "transient"
    http_status = 503
    exit_code = 69  # sysexits EX_UNAVAILABLE
