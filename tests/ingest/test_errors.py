"""The server's exception tree (ingest_server/errors.py): every exception it defines has
one root, and the API and the CLI answer by an exception's kind, not by its message."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import ingest_server
from edge_agent.contract.wire import encode_message
from edge_agent.contract.yaml12 import InvalidFileError
from ingest_server.api.app import create_app
from ingest_server.cli import main as cli
from ingest_server.cli.common import DatabaseUnavailableError
from ingest_server.errors import (
    FactoryEvidenceError,
    InvalidInputError,
    NotFoundError,
    RefusedError,
    UnavailableError,
)
from ingest_server.ingest.payload import RejectedError, SignatureMismatchError, parse_message
from ingest_server.kpi.records import ReportError, UnknownEnterpriseError


def server_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of ingest_server, by qualified name."""
    found: dict[str, type[BaseException]] = {}
    for m in pkgutil.walk_packages(ingest_server.__path__, "ingest_server."):
        module = importlib.import_module(m.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == m.name:
                found[f"{m.name}.{obj.__qualname__}"] = obj
    return found


INTERRUPTED = "ingest_server.cli.main.Interrupted"


def test_every_server_exception_has_the_one_root() -> None:
    found = server_exceptions()
    # the walk sees the modules: the classes named in the brief of the tree are there
    names = {cls.__name__ for cls in found.values()}
    assert {"ApiError", "ReportError", "RegistryError", "RejectedError", "SchemaError",
            "DatabaseUnavailableError", "EmbeddedPostgresError", "SigningKeyError",
            "Interrupted"} <= names  # fmt: skip
    outside = sorted(
        name
        for name, cls in found.items()
        if not issubclass(cls, FactoryEvidenceError) and name != INTERRUPTED
    )
    assert outside == [], "exceptions outside the tree of ingest_server/errors.py"
    # Interrupted stays a BaseException: no `except Exception` may swallow a signal
    assert not issubclass(cli.Interrupted, Exception)


def test_the_old_bases_still_catch_them() -> None:
    found = {cls.__name__: cls for cls in server_exceptions().values()}
    for name in ("ReportError", "AccountError", "GatewayError", "CanonicalFormError",
                 "ReportFormatError", "UnknownEnterpriseError"):  # fmt: skip
        assert issubclass(found[name], ValueError), name
        assert issubclass(found[name], InvalidInputError), name
    assert issubclass(found["RegistryError"], InvalidFileError)
    assert issubclass(found["RegistryError"], InvalidInputError)
    err = found["RegistryError"]("f.yaml", ["a: b"])  # the contract's __init__ still runs
    assert str(err) == "f.yaml: invalid registry (1 problem(s)):\n  - a: b"
    assert err.problems == ["a: b"]
    for name in ("DatabaseUnavailableError", "EmbeddedPostgresError", "SchemaError"):
        assert issubclass(found[name], UnavailableError), name
    for name in ("RejectedError", "TooManyAttemptsError"):
        assert issubclass(found[name], RefusedError), name
    assert issubclass(UnknownEnterpriseError, NotFoundError)
    assert issubclass(UnknownEnterpriseError, ReportError)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The real app (its exception handlers), with two routes that only raise; no
    database: the pool opens in the lifespan, which a TestClient outside `with` skips."""
    app = create_app("postgresql://nowhere.invalid/none", signing_key=tmp_path / "signing.pem")

    @app.get("/test/not-found")
    def _not_found() -> None:
        raise UnknownEnterpriseError("a message that names nothing in particular")

    @app.get("/test/report-error")
    def _report_error() -> None:
        raise ReportError("no enterprise 'x': the words alone do not make a 404")

    return TestClient(app)


def test_the_api_answers_by_kind_not_by_message(client: TestClient) -> None:
    r = client.get("/test/not-found")
    assert r.status_code == 404
    assert r.json()["error"] == {
        "code": "report_error",
        "message": "a message that names nothing in particular",
    }
    r = client.get("/test/report-error")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "report_error"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UnavailableError("the broker is down"), 1),
        (DatabaseUnavailableError("cannot connect"), 1),
        (InvalidInputError("change it"), 2),
        (NotFoundError("no such thing"), 2),
        (UnknownEnterpriseError("no enterprise 'x'"), 2),
    ],
)
def test_the_cli_exits_by_kind(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: Exception,
    code: int,
) -> None:
    def dispatch(*_a: object) -> int:
        raise exc

    monkeypatch.setattr(cli, "dispatch", dispatch)
    assert cli.main(["factors"]) == code
    assert capsys.readouterr().err == f"ingest-server: {exc}\n"


KEY = b"k" * 32
TOPIC = "fe/v1/hf-precision/hf-plant1/gw-01/status"


def test_a_signature_made_with_another_key_is_its_own_kind() -> None:
    payload = encode_message({"gw": "gw-01", "online": True, "ts": 1}, b"o" * 32)
    with pytest.raises(SignatureMismatchError) as info:
        parse_message(TOPIC, payload, key_of=lambda _o: KEY)
    # the dead letter's reason is what it was
    assert info.value.reason == "signature: signature does not match the gateway's key"

    unsigned = payload[: payload.rindex(b',"sig"')] + b"}"
    with pytest.raises(RejectedError) as refused:
        parse_message(TOPIC, unsigned, key_of=lambda _o: KEY)
    assert not isinstance(refused.value, SignatureMismatchError)
    assert refused.value.reason.startswith("signature: payload does not end with")


def test_the_tree_drawn_in_errors_py_names_every_server_exception() -> None:
    """The drawing in ingest_server/errors.py is where a reader looks up which kind an
    exception is (and so its HTTP status and exit code): one the drawing lacks is a class
    someone added without saying where it belongs."""
    drawn = importlib.import_module(FactoryEvidenceError.__module__).__doc__ or ""
    missing = sorted(
        name
        for name, cls in server_exceptions().items()
        if name != INTERRUPTED
        and cls.__module__ != "ingest_server.errors"
        and f" {cls.__name__} " not in drawn
    )
    assert missing == [], "add these to the tree in ingest_server/errors.py's docstring"
