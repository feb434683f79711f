"""`ingest-server` start-up: what a command costs before it does anything, side by side.

    .venv/bin/python bench/cli_startup.py [--runs N]

Each case is `python -m ingest_server.cli.main ARGS --help` in a fresh process (argparse
prints the help and exits, so the time is the interpreter, the imports and the parser),
run N times (default 15), interleaved so that a busy moment of the machine falls on every
case alike; the median wall time and the median of user + system CPU are printed.

    all       `--help`: every command module, as every command paid before 927d640
    gateway   `gateway --help`: the gateway module alone (the operator's enrolment calls)
    status    `status --help`: the database module
    report    `report --help`: the evidence module (pyarrow, openpyxl, the renderers)
    paper     `paper --help`: the verifier's light path, no database driver

It ends with one JSON line: each case's medians and the ratio all / gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "all": [],
    "gateway": ["gateway"],
    "status": ["status"],
    "report": ["report"],
    "paper": ["paper"],
}


def one(args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system of the child) seconds of one start."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ingest_server.cli.main", *args, "--help"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=15)
    runs = p.parse_args().runs
    walls: dict[str, list[float]] = {c: [] for c in CASES}
    cpus: dict[str, list[float]] = {c: [] for c in CASES}
    for args in CASES.values():  # warm the file cache once
        one(args)
    for _ in range(runs):
        for name, args in CASES.items():
            wall, cpu = one(args)
            walls[name].append(wall)
            cpus[name].append(cpu)
    out: dict[str, object] = {"runs": runs}
    print(f"ingest-server ARGS --help, median of {runs} fresh processes each")
    for name, args in CASES.items():
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        out[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
        print(f"  {name:8} {' '.join(args) or '(none)':10} wall {wall:6.3f} s   cpu {cpu:6.3f} s")
    ratio = statistics.median(walls["all"]) / statistics.median(walls["gateway"])
    out["all_over_gateway_wall"] = round(ratio, 2)
    print(f"  ratio all / gateway (wall) = {ratio:.2f}x")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
