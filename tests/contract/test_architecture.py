"""The import contracts in pyproject.toml ([tool.importlinter], run by `make lint`) cover
the whole agent: a module added to edge_agent is forbidden to the server until it is
put in edge_agent.contract or named here."""

from __future__ import annotations

import ast
import pkgutil
import re
import tomllib
from pathlib import Path

import edge_agent

ROOT = Path(__file__).resolve().parents[2]


def contracts() -> list[dict]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return doc["tool"]["importlinter"]["contracts"]


def agent_modules_outside_the_contract() -> set[str]:
    return {
        f"edge_agent.{m.name}"
        for m in pkgutil.iter_modules(edge_agent.__path__)
        if m.name != "contract"
    }


def test_the_server_is_forbidden_every_agent_module_but_the_contract() -> None:
    (server,) = [c for c in contracts() if c.get("source_modules") == ["ingest_server"]]
    assert server["type"] == "forbidden"
    assert set(server["forbidden_modules"]) == agent_modules_outside_the_contract()


def test_the_contract_is_forbidden_the_rest_of_the_agent() -> None:
    (alone,) = [c for c in contracts() if c.get("source_modules") == ["edge_agent.contract"]]
    forbidden = set(alone["forbidden_modules"])
    assert agent_modules_outside_the_contract() <= forbidden
    assert {"ingest_server", "simulators"} <= forbidden


def test_every_server_package_is_in_a_layer() -> None:
    (layers,) = [c for c in contracts() if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    packages = {
        f"ingest_server.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "ingest_server")])
    }
    assert packages == named, "a module of ingest_server/ outside the layers is not checked"


# -- SQL has one home ---------------------------------------------------------------------
# Only the repositories (ingest_server/repo/) and the ingest writer (ingest/, derive/, with
# db/ for the schema) issue SQL against the application's tables; everything above them
# calls repository functions (docs/architecture.md).
SQL_HOMES = ("ingest_server/repo/", "ingest_server/ingest/", "ingest_server/derive/",
             "ingest_server/db/")  # fmt: skip


def application_tables() -> set[str]:
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "ingest_server/db/migrations").glob("*.sql")
    )
    found = re.findall(
        r"CREATE (?:TABLE|MATERIALIZED VIEW|VIEW)(?: IF NOT EXISTS)? ([a-z_]+)", text
    )
    return set(found)


def sql_strings(source: str, tables: set[str]) -> list[tuple[int, str]]:
    """(line, text) of each string literal in `source`, docstrings aside, that reads or
    writes one of `tables` (SQL keywords in capitals, as the code writes them)."""
    pattern = re.compile(rf"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+({'|'.join(sorted(tables))})\b")
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and pattern.search(node.value)
    ]


def test_the_detector_finds_sql_and_passes_over_prose() -> None:
    tables = application_tables()
    assert {"samples", "equipment", "production_entries", "signing_keys", "reports"} <= tables
    code = (
        '"""Reads FROM samples in a docstring: prose."""\n'
        'def f(conn):\n'
        '    """UPDATE equipment, said in a docstring."""\n'
        '    conn.execute("SELECT id FROM equipment WHERE x = %s", (1,))\n'
        '    conn.execute(f"INSERT INTO samples VALUES ({1})")\n'
        '    return "taken from samples"\n'
    )  # fmt: skip
    assert [line for line, _ in sql_strings(code, tables)] == [4, 5]
    # and the homes of SQL do hold it, so the scan below reads real code
    repo = (ROOT / "ingest_server/repo/production.py").read_text(encoding="utf-8")
    assert sql_strings(repo, tables)


def test_only_the_repositories_and_the_ingest_writer_issue_sql() -> None:
    tables = application_tables()
    outside = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip().splitlines()[0][:70]}"
        for path in sorted((ROOT / "ingest_server").rglob("*.py"))
        if not str(path.relative_to(ROOT)).startswith(SQL_HOMES)
        for line, text in sql_strings(path.read_text(encoding="utf-8"), tables)
    ]
    assert outside == [], "SQL outside ingest_server/repo/ (call a repository function)"
