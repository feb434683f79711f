"""A part of the plant: the KPI inputs of one site and/or one process, for the console's
filters (`/kpis` and `/trend` with `site`, `process`). The same engine computes their
figures; energy, water and carbon are metered per site, not per process, so under a
process they are left out (`MACHINE_KPIS` are the ones a process narrows).
"""

from __future__ import annotations

import dataclasses

from ingest_server.errors import InvalidInputError
from ingest_server.kpi.records import Inputs


class UnknownScopeError(InvalidInputError):
    """A site or process the enterprise does not have; `known` are the ones it has."""

    def __init__(self, what: str, given: str, known: list[str]) -> None:
        self.what, self.given, self.known = what, given, known
        super().__init__(f"{what}: no {what} {given!r}; give one of: {', '.join(known) or 'none'}")


# the KPIs of machines, which a process narrows; the others are metered per site
MACHINE_KPIS = frozenset((
    "nc_rate_declared", "nc_rate_measured", "networking_rate", "availability",
    "effectiveness", "quality_ratio", "oee", "utilisation", "mtbf", "mttr",
))  # fmt: skip


def narrow(inputs: Inputs, site: str | None, process: str | None) -> Inputs:
    """The inputs of one site and/or one process: its sites, machines (and under a site
    its meters; under a process none), and only their devices' rows. Production entered
    for the whole enterprise stays with a site only when the enterprise has one site
    (it cannot be shared out between sites)."""
    if site is not None and site not in {s.id for s in inputs.sites}:
        raise UnknownScopeError("site", site, sorted(s.id for s in inputs.sites))
    procs = {e.process for e in inputs.equipment if e.process}
    if process is not None and process not in procs:
        raise UnknownScopeError("process", process, sorted(procs))
    sites = [s for s in inputs.sites if site in (None, s.id)]
    equipment = [
        e for e in inputs.equipment if site in (None, e.site) and process in (None, e.process)
    ]
    meters = [] if process is not None else [m for m in inputs.meters if site in (None, m.site)]
    devices = {e.device for e in equipment if e.device is not None}
    devices |= {m.device for m in meters if m.device is not None}
    one_site = len(inputs.sites) == 1
    production = [
        p for p in inputs.production if site in (None, p.site) or (p.site is None and one_site)
    ]
    return dataclasses.replace(
        inputs,
        sites=sites,
        equipment=equipment,
        meters=meters,
        intervals={d: v for d, v in inputs.intervals.items() if d in devices},
        counters={k: v for k, v in inputs.counters.items() if k[0] in devices},
        tags=[t for t in inputs.tags if t.device in devices],
        anomalies=[a for a in inputs.anomalies if a.device in devices],
        production=production,
        device_names={d: n for d, n in inputs.device_names.items() if d in devices},
        origins=[o for o in inputs.origins if o.device in devices],
    )
