"""`factory-demo` (and `make demo`): the demo factory on this machine.

For now it starts the simulators of the demo scenario with a truth file and the
control API, and prints where everything listens; the edge agent, broker and
ingestion server join as they are built (see the issues).

A factory at rest is a dull demo: at night, on a Sunday or a holiday every machine
is OFF. Unless told `--now`, the demo then runs the plant from the last working
morning (09:30 local), in real time from there, and says so.
"""

from __future__ import annotations

import datetime as dt
import sys

from simulators import cli
from simulators.calendar import ShiftCalendar
from simulators.scenario import default_scenario_path, load_scenario

DEMO_TIME = dt.time(9, 30)


def demo_start(now: dt.datetime, cal: ShiftCalendar) -> dt.datetime | None:
    """None when `now` is inside a shift; else 09:30 on the last working day before it."""
    if cal.in_shift(now.timestamp()):
        return None
    day = now.date()
    for _ in range(30):
        candidate = dt.datetime.combine(day, DEMO_TIME, tzinfo=now.tzinfo)
        if candidate <= now and cal.windows(day) and cal.in_shift(candidate.timestamp()):
            return candidate
        day -= dt.timedelta(days=1)
    return None


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    use_now = "--now" in extra
    extra = [a for a in extra if a != "--now"]
    print("factory-evidence demo: simulated plant (OPC UA CNCs, Modbus PLCs and meters)")
    scenario = load_scenario(default_scenario_path())
    start = None
    if not use_now and "--start" not in extra:
        now = dt.datetime.now(scenario.tz)
        start = demo_start(now, ShiftCalendar(scenario.calendar, scenario.tz))
        if start is not None:
            print(
                f"It is {now:%a %H:%M} in {scenario.site.timezone}: the plant is off shift, so "
                f"the demo runs from {start:%a %Y-%m-%d %H:%M} in real time (--now to skip)."
            )
            extra += ["--start", start.isoformat()]
    print("Press Ctrl-C to stop. The truth file records what really happened.\n", flush=True)
    return cli.main(
        [
            "run",
            "--truth",
            ".sim/demo-truth.jsonl",
            "--control-port",
            "18080",
            "--status-every",
            "10",
            *extra,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
