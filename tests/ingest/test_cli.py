"""`ingest-server` as an operator runs it: migrate, registry import, status, and the
errors that say what to fix."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ingest_server.cli.main import _COMMANDS as COMMANDS
from ingest_server.cli.main import build_parser
from simulators.scenario import default_scenario_path
from tests.harness.netutil import free_port

REGISTRY = default_scenario_path().with_name("demo-registry.yaml")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest_server.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_import_and_status(db: str, tmp_path: Path) -> None:
    key = tmp_path / "gw.key"
    key.write_text("00" * 32)
    key.chmod(0o600)
    done = cli("migrate", "--dsn", db)
    assert done.returncode == 0, done.stderr
    assert "storage mode" in done.stdout
    done = cli("registry", "import", str(REGISTRY), "--key", f"gw-01={key}", "--dsn", db)
    assert done.returncode == 0, done.stderr
    assert "15 equipment, 9 meters; keys for 1 gateway(s)" in done.stdout
    with psycopg.connect(db) as conn:
        for reason in (
            "signature: signature does not match the gateway's key",
            "signature: signature does not match the gateway's key",
            "schema: seq: Input should be greater than or equal to 1",
        ):
            conn.execute(
                "INSERT INTO dead_letters (topic, reason, payload, payload_bytes) "
                "VALUES ('fe/v1/a/b/c/data', %s, '', 0)",
                (reason,),
            )
    done = cli("status", "--json", "--dsn", db)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["storage_mode"] in ("plain", "timescale")
    assert report["equipment"] == 15
    assert [(r["reason"], r["count"]) for r in report["dead_letter_reasons_24h"]] == [
        ("signature: signature does not match the gateway's key", 2),
        ("schema: seq", 1),
    ]
    assert report["gateways"] == [
        {
            "gateway": "hf-precision/hf-plant1/gw-01",
            "online": None,
            "status_at": None,
            "boot": None,
            "has_key": True,
            "contract": 1,
            "newest_batch": None,
            "missing_batches": 0,
            "declared_dropped": 0,
            "oldest_missing": None,
        }
    ]
    text = cli("status", "--dsn", db).stdout
    assert "storage mode:" in text
    # the figures in one column, each after its name and a space (counter_anomalies: was not)
    figures = [line for line in text.splitlines() if line[:1].isalpha() and line[18:19] == " "]
    assert len(figures) >= 14, text
    assert all(line[19:20] != " " for line in figures), text
    assert "counter_anomalies: " in text
    assert "never seen" in text
    assert "    contract 1, newest batch none" in text
    assert "dead letters in the last 24 h, by reason:" in text


def test_errors_say_what_to_fix(db: str, tmp_path: Path) -> None:
    key = tmp_path / "open.key"
    key.write_text("00" * 32)
    key.chmod(0o644)
    done = cli("registry", "import", str(REGISTRY), "--key", f"gw-01={key}", "--dsn", db)
    assert done.returncode == 2
    assert "readable by group or others (mode 644); chmod 600 it" in done.stderr
    done = cli("registry", "import", str(REGISTRY), "--key", "gw-01", "--dsn", db)
    assert done.returncode == 2
    assert "write --key GATEWAY=KEYFILE" in done.stderr
    key.chmod(0o600)
    done = cli("registry", "import", str(REGISTRY), "--key", f"gw-77={key}", "--dsn", db)
    assert done.returncode == 2
    assert "--key names gateway(s) ['gw-77'] that the registry does not list" in done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("enterprises: [{id: a, name: A, sites: []}]\n")
    done = cli("registry", "import", str(bad), "--dsn", db)
    assert done.returncode == 2
    assert "sites: List should have at least 1 item" in done.stderr
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    done = cli("status", "--dsn", nobody)
    assert done.returncode == 1
    assert "cannot connect to the database" in done.stderr
    assert "check --dsn" in done.stderr
    done = cli("run", "--max-past", "forever", "--dsn", db)
    assert done.returncode == 2
    assert "is not a duration" in done.stderr


def test_commands_borrow_a_running_embedded_server_and_leave_it_running() -> None:
    """`report`, `status` and the like next to `ingest-server run` on the same data
    directory use its database and must not stop it when they finish."""
    from tests.harness.pg import own_postgres  # noqa: PLC0415

    with own_postgres() as pg:
        root = pg.data_dir
        assert pg.running()
        migrated = cli("migrate", "--data-dir", str(root))
        assert migrated.returncode == 0, migrated.stderr
        assert pg.running(), "migrate stopped the server it borrowed"
        status = cli("status", "--data-dir", str(root), "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["schema_version"] >= 2
        assert pg.running(), "status stopped the server it borrowed"
        report = cli("report", "--data-dir", str(root), "--enterprise", "nobody", "--from",
                     "2026-11-01", "--to", "2026-11-02", "--unsigned")  # fmt: skip
        assert report.returncode == 2
        assert "no enterprise 'nobody'" in report.stderr
        assert pg.running(), "report stopped the server it borrowed"


def test_a_command_parsed_alone_has_the_help_it_has_in_the_whole_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A command builds only its own module's parser (start-up: bench/cli_startup.py);
    every command the whole parser lists must parse alone, with the very same help."""

    def help_of(parser: argparse.ArgumentParser, argv: list[str]) -> str:
        with pytest.raises(SystemExit) as done:
            parser.parse_args(argv)
        assert done.value.code == 0
        return capsys.readouterr().out

    whole = build_parser()
    commands = whole._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == set(COMMANDS)
    for name in commands:
        alone = help_of(build_parser(command=name), [name, "--help"])
        assert alone == help_of(build_parser(), [name, "--help"]), name
        assert alone.startswith(f"usage: ingest-server {name}"), name
