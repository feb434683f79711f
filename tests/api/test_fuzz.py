"""schemathesis against the API's own OpenAPI schema, over real HTTP to a uvicorn server
on 127.0.0.1 with a stored plant: whatever it sends, no answer is a 5xx."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from ingest_server.repo.accounts import add_account, new_token
from tests.harness.apiserver import serving_api
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc

T0 = utc(2026, 11, 15, 16).timestamp()
# derandomized: the same requests in every run, so CI does not turn red by chance; set
# FE_FUZZ_EXAMPLES (and FE_FUZZ_RANDOM=1) to search wider by hand
EXAMPLES = int(os.environ.get("FE_FUZZ_EXAMPLES", "25"))
RANDOM = os.environ.get("FE_FUZZ_RANDOM") == "1"


@pytest.fixture(scope="module")
def live_api(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ingest_server.db.schema import migrate  # noqa: PLC0415

    with pg_server.database() as db:
        migrate(db)
        prepare_kpi(db)
        store_samples(db, plant_samples(51, T0, T0 + 6 * 3600), 51)
        with psycopg.connect(db, autocommit=True) as conn:
            add_account(conn, "root", "admin", [])
            token = new_token(conn, "root")
        key = Path(tmp_path_factory.mktemp("fuzz")) / "k.pem"
        with serving_api(db, key) as url:
            yield {"url": url, "token": token}


def test_no_request_gets_a_server_error(live_api: dict[str, Any]) -> None:
    """Every operation of the schema, a few dozen generated requests each (schemathesis'
    pytest plugin does not run on this pytest, so hypothesis drives it directly)."""
    schema = schemathesis.openapi.from_url(live_api["url"] + "/openapi.json")
    headers = {"Authorization": f"Bearer {live_api['token']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    statuses: dict[int, int] = {}
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=not RANDOM,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call_and_validate(
                base_url=live_api["url"], headers=headers, checks=[not_a_server_error],
                timeout=60,
            )  # fmt: skip
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        run()
    # the requests went deep as well as being refused at the door
    print(statuses)
    assert sum(statuses.values()) >= 10 * len(operations)
    assert sum(n for code, n in statuses.items() if code < 300) >= 2 * len(operations)
