"""The server's exceptions, one tree: what the API answers and what the CLI exits with
is chosen by an exception's kind, never by its message.

    FactoryEvidenceError
    ├── InvalidInputError        change the argument, file or request (API 422, CLI exit 2)
    │   ├── ReportError                   kpi.records        (also ValueError)
    │   │   ├── UnknownEnterpriseError    kpi.records        (also NotFoundError)
    │   │   └── PeriodError               kpi.period
    │   ├── AccountError                  repo.accounts      (also ValueError)
    │   ├── GatewayError                  repo.gateways      (also ValueError)
    │   ├── RegistryError                 repo.registry      (also contract InvalidFileError)
    │   ├── SigningKeyError               evidence.keys
    │   ├── CanonicalFormError            evidence.canonical (also ValueError)
    │   ├── ReportFormatError             evidence.columns   (also ValueError)
    │   │   └── EntryError                evidence.green     (green entries, with message_zh)
    │   ├── UnknownSiteError              repo.production
    │   ├── UnknownProcessError           repo.equipment
    │   ├── UnknownScopeError             kpi.scope          (a site or process filter)
    │   ├── DowntimeInputError            repo.downtime
    │   ├── GreenFileError                cli.green          (also contract InvalidFileError)
    │   ├── UnsupportedAlgorithmError     evidence.algorithms (also ValueError)
    │   ├── QrTextError                   evidence.qr        (also ValueError)
    │   ├── BundleInputError              evidence.offline.verdict (also ValueError)
    │   └── TsaCertificateError           evidence.timestamp
    ├── NotFoundError            no such enterprise, report... (API 404, CLI exit 2)
    │   ├── EnterpriseNotFoundError       repo.registry_model (an entry, an edit, a report)
    │   │   └── UnknownEnterpriseError    kpi.records        (a report: also ReportError)
    │   └── UnknownEquipmentError         repo.equipment
    ├── UnavailableError         the database or broker cannot be used (API 503, CLI exit 1)
    │   ├── DatabaseUnavailableError      cli.common
    │   ├── EmbeddedPostgresError         db.embedded_pg
    │   ├── SchemaError                   db.schema
    │   ├── PdfUnavailableError           evidence.render_pdf (no browser to print with)
    │   └── TsaUnreachableError           evidence.timestamp
    ├── RefusedError             refused and not carried out; the caller is told why
    │   ├── RejectedError                 ingest.payload     (a message: dead-lettered)
    │   │   └── SignatureMismatchError    ingest.payload     (retried with a fresh key)
    │   ├── TooManyAttemptsError          api.ratelimit      (a login: HTTP 429)
    │   ├── TsaRefusedError               evidence.timestamp (a time-stamp request)
    │   └── TokenInvalidError             evidence.timestamp (a time-stamp token)
    └── ApiError                 api.auth: an HTTP answer, carrying its own status
        ├── InvalidDatesError             api.params         (422, with message_zh)
        ├── YamlBodyError                 api.routes.green   (422, with message_zh)
        └── ScopeError                    api.routes.kpis    (422, from UnknownScopeError)

`ingest_server.cli.main.Interrupted` (SIGTERM, SIGINT) is a BaseException on purpose,
outside this tree: no `except Exception` may swallow it.

The classes that existed before the tree keep their other bases (ValueError,
InvalidFileError), so every `except ValueError` that caught them still does.
"""

from __future__ import annotations


class FactoryEvidenceError(Exception):
    """The root of every exception the server raises on purpose."""


class InvalidInputError(FactoryEvidenceError):
    """Bad user input: an argument, a file or a request to change. The API answers 422
    (`ReportError`), the CLI exits 2."""


class NotFoundError(FactoryEvidenceError):
    """What was asked about does not exist: an enterprise, a report. The API answers 404
    (`ReportError`), the CLI exits 2 (bad arguments)."""


class UnavailableError(FactoryEvidenceError):
    """The database or the broker cannot be used; retry later. The CLI exits 1."""


class RefusedError(FactoryEvidenceError):
    """Refused and not carried out, the caller told why: a gateway's message (to the dead
    letters), a login over the rate limit."""
