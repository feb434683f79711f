"""`factory-demo` (and `make demo`): the demo factory on this machine.

For now it starts the simulators of the demo scenario with a truth file and the
control API, and prints where everything listens; the edge agent, broker and
ingestion server join as they are built (see the issues).
"""

from __future__ import annotations

import sys

from simulators import cli


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    print("factory-evidence demo: simulated plant (OPC UA CNCs, Modbus PLCs and meters)")
    print("Press Ctrl-C to stop. The truth file records what really happened.\n", flush=True)
    return cli.main(["run", "--truth", ".sim/demo-truth.jsonl", "--control-port", "18080", *extra])


if __name__ == "__main__":
    sys.exit(main())
