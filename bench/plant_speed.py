"""How fast the plant model runs, measured side by side in one run.

    .venv/bin/python bench/plant_speed.py [--days 7]

Three ways to cover the same sim period of the demo scenario:
  jump     one advance_to over the whole period (the model's floor)
  poll60   the history mode's 60 s polling: advance, read every view
  tick0.5  a real-time run's 0.5 s ticks (measured over 2 h of sim time, scaled)

Prints sim seconds per wall second for each and the ratios between them.
History mode is "fast" if poll60 covers a day in a few seconds; a real-time run is
cheap if one tick costs a small fraction of its 0.5 s budget.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from simulators.plant import Plant
from simulators.scenario import default_scenario_path, load_scenario


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=7.0)
    args = ap.parse_args()
    s = load_scenario(default_scenario_path())
    start = dt.datetime(2026, 11, 23, 0, tzinfo=s.tz).timestamp()
    period = args.days * 86_400

    def timed(step: float, span: float) -> float:
        plant = Plant(s, start)
        t0 = time.perf_counter()
        t = start
        while t < start + span:
            t = min(start + span, t + step)
            plant.advance_to(t)
            for e in s.equipment:
                plant.machine(e.id)
            for m in s.meters:
                plant.meter(m.id)
            plant.drain_truth()
        return span / (time.perf_counter() - t0)

    rates = {
        "jump": timed(period, period),
        "poll60": timed(60.0, period),
        "tick0.5": timed(0.5, 2 * 3600),
    }
    print(
        f"demo scenario, {len(s.equipment)} machines, {len(s.meters)} meters, "
        f"{args.days:g} days from {dt.date(2026, 11, 23)}"
    )
    for name, rate in rates.items():
        print(f"  {name:8s} {rate:14,.0f} sim s per wall s   ({86_400 / rate:8.3f} s per sim day)")
    print(
        f"  ratio jump/poll60 = {rates['jump'] / rates['poll60']:.1f}x, "
        f"poll60/tick0.5 = {rates['poll60'] / rates['tick0.5']:.1f}x"
    )
    tick_ms = 0.5 / rates["tick0.5"] * 1000
    print(f"  one 0.5 s real-time tick costs {tick_ms:.3f} ms = {tick_ms / 500:.4%} of its budget")


if __name__ == "__main__":
    main()
