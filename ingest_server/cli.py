"""`ingest-server`: MQTT ingestion, storage and KPIs. Not built yet."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    del argv
    print("ingest-server: not yet available (see the ingestion server issue)", file=sys.stderr)
    return 2
