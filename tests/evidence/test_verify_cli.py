"""`ingest-server verify --data-dir`: a verifier on the server's machine recomputes a
report on the embedded PostgreSQL of a running server (as docs/kpi.md says), borrowing
it and leaving it running."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest_server.cli.main import main
from ingest_server.db.schema import migrate
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc
from tests.harness.pg import own_postgres

T0 = utc(2026, 11, 15, 16).timestamp()


def test_verify_recomputes_on_a_running_servers_embedded_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with own_postgres() as pg:  # what `ingest-server run` without --dsn keeps running
        migrate(pg.dsn())
        prepare_kpi(pg.dsn())
        store_samples(pg.dsn(), plant_samples(5, T0, T0 + 86400), 5)
        root, out = str(pg.data_dir), tmp_path / "r.json"
        assert main(["report", "--data-dir", root, "--enterprise", "hf", "--from", "2026-11-16",
                     "--to", "2026-11-16", "--out", str(out), "--as-of",
                     "2026-11-25T00:00:00Z"]) == 0  # fmt: skip
        capsys.readouterr()
        assert main(["verify", str(out), "--data-dir", root]) == 0
        text = capsys.readouterr().out
        assert "kpi oee" in text  # every figure recomputed from the raw samples
        assert "valid, by server key" in text  # the key found in signing_keys
        assert text.rstrip().endswith("VERIFIED")
        assert pg.running(), "verify stopped the server it borrowed"
