"""Faults on demand: what can go wrong, how to ask for it, and when.

    offline  DEVICE  SECONDS   a machine or meter drops off the network (sim seconds)
    freeze   METER   SECONDS   a meter's counter stops, then catches up (sim seconds)
    reset    METER             a meter's counter is cleared to zero
    restart  SERVER  SECONDS   an OPC UA or Modbus server goes down and comes back with
                               new sessions (wall seconds down)

On the command line: ``--fault KIND:TARGET[:SECONDS][@AT]`` where AT is sim seconds
after the start, e.g. ``--fault offline:cnc-03:30@60``. From tests: ``FactorySim.inject``
or POST /faults on the control API (simulators.control).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["offline", "freeze", "reset", "restart"]
KINDS: tuple[FaultKind, ...] = ("offline", "freeze", "reset", "restart")
_NEEDS_SECONDS = {"offline", "freeze", "restart"}

_SPEC = re.compile(
    r"^(?P<kind>[a-z]+):(?P<target>[a-z0-9][a-z0-9_-]*)(?::(?P<seconds>[0-9.]+))?(?:@(?P<at>[0-9.]+))?$"
)


class FaultError(ValueError):
    """A fault request that cannot be carried out; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    target: str
    seconds: float = 0.0
    at_s: float | None = None
    """Sim seconds after the run's start; None means now."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.kind in _NEEDS_SECONDS and not self.seconds > 0:
            raise FaultError(f"fault {self.kind!r} needs a duration in seconds greater than 0")
        if self.seconds < 0 or (self.at_s is not None and self.at_s < 0):
            raise FaultError("seconds and start time cannot be negative")


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND:TARGET[:SECONDS][@AT]``."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise FaultError(
            f"cannot read fault {spec!r}; write KIND:TARGET[:SECONDS][@AT], "
            "e.g. offline:cnc-03:30@60 or reset:em-ht@120"
        )
    kind = next((k for k in KINDS if k == m.group("kind")), None)
    if kind is None:
        raise FaultError(f"unknown fault kind {m.group('kind')!r}; use one of {', '.join(KINDS)}")
    return Fault(
        kind=kind,
        target=m.group("target"),
        seconds=float(m.group("seconds") or 0),
        at_s=float(m.group("at")) if m.group("at") else None,
    )
