"""`edge-agent`: the gateway agent (OPC UA and Modbus to MQTT). Not built yet."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    del argv
    print("edge-agent: not yet available (see the edge agent issue)", file=sys.stderr)
    return 2
