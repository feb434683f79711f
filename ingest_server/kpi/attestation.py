"""How much of each KPI its gateways signed: the share of the samples behind a KPI that
came in gateway-signed batches (contract v2), and the report's summary of the period's
samples by gateway and origin (docs/kpi.md, "Gateway-signed share").

A sample of a v2 batch was signed by its gateway's own Ed25519 key, which the server
never holds; a sample of a v1 batch carries only an HMAC made with a key the server
issued and keeps, so the server could have made it. The counts per series come from
kpi/fetch.py (`Inputs.origins`); here they are mapped to each KPI's `inputs` as the KPI
code reads them:

- equipment: every series of the device it reads (state, status, part counters and the
  tags its coverage counts);
- a meter: the counter series of its carrier's role on its device (its quantity);
- a process (the process industry's measured NC rate): its key-process equipment;
- the declared NC rate rests on the registry, no sample: its share is None, as are its
  counts; `{kpi}_change` rests on its meters' samples in both periods.

A series read by two inputs of one KPI counts once. Pure functions, as engine.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from ingest_server.kpi.energy import INTENSITIES
from ingest_server.kpi.records import DeviceKey, Inputs, SeriesOrigin
from ingest_server.kpi.results import Kpi, ratio
from ingest_server.repo.registry_model import CARRIER_ROLES

# KPIs whose `inputs` are equipment ids (the measured NC rate: processes in the process
# industry)
EQUIPMENT_KPIS = frozenset({
    "nc_rate_measured", "networking_rate", "availability", "effectiveness", "quality_ratio",
    "oee", "utilisation", "mtbf", "mttr",
})  # fmt: skip
# KPIs that rest on the registry alone
DECLARED_KPIS = frozenset({"nc_rate_declared"})

SeriesKey = tuple[DeviceKey, str]


def _meter_kpi(kid: str) -> bool:
    return kid.startswith("consumption_") or kid in {"energy_tce", "carbon_tco2", *INTENSITIES}


class _Origins:
    """One period's counts, by the series each input reads."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.by_device: dict[DeviceKey, list[SeriesOrigin]] = defaultdict(list)
        for o in inputs.origins:
            self.by_device[o.device].append(o)

    def equipment(self, ids: Iterable[str]) -> set[SeriesKey]:
        want = set(ids)
        return {
            (o.device, o.tag)
            for e in self.inputs.equipment
            if e.id in want and e.device is not None
            for o in self.by_device.get(e.device, [])
        }

    def processes(self, ids: Iterable[str]) -> set[SeriesKey]:
        want = set(ids)
        return self.equipment(
            e.id for e in self.inputs.equipment if e.key_process and (e.process or "") in want
        )

    def meters(self, ids: Iterable[str]) -> set[SeriesKey]:
        want = set(ids)
        out: set[SeriesKey] = set()
        for m in self.inputs.meters:
            role = CARRIER_ROLES.get(m.carrier)
            if m.id in want and m.device is not None and role is not None:
                out |= {(o.device, o.tag) for o in self.by_device.get(m.device, [])
                        if o.role == role}  # fmt: skip
        return out

    def counts(self, keys: set[SeriesKey]) -> tuple[int, int]:
        n = signed = 0
        for o in self.inputs.origins:
            if (o.device, o.tag) in keys:
                n += o.samples
                signed += o.attested
        return n, signed

    def behind(self, k: Kpi) -> tuple[int, int] | None:
        """(samples, gateway-signed) behind the KPI; None: it rests on no samples."""
        if k.id in DECLARED_KPIS:
            return None
        if k.id in EQUIPMENT_KPIS:
            if k.id == "nc_rate_measured" and self.inputs.industry == "process":
                return self.counts(self.processes(k.inputs))
            return self.counts(self.equipment(k.inputs))
        if _meter_kpi(k.id):
            return self.counts(self.meters(k.inputs))
        raise ValueError(
            f"KPI {k.id!r}: kpi/attestation.py does not say which samples it rests on; "
            "add it to EQUIPMENT_KPIS, DECLARED_KPIS or the meter KPIs"
        )


def _with(k: Kpi, counts: tuple[int, int] | None) -> Kpi:
    if counts is None:
        return k.model_copy(update={"attested": None, "samples": None, "samples_attested": None})
    n, signed = counts
    return k.model_copy(
        update={"attested": ratio(signed, n), "samples": n, "samples_attested": signed}
    )


def attest(kpis: Sequence[Kpi], inputs: Inputs, baseline: Inputs | None = None) -> list[Kpi]:
    """The KPIs with their gateway-signed share and its counts filled in."""
    now = _Origins(inputs)
    base = None if baseline is None else _Origins(baseline)
    out = []
    for k in kpis:
        kid = k.id.removesuffix("_change")
        if k.id.endswith("_change") and kid in INTENSITIES:
            # the change rests on the intensity's meters in both periods
            n, signed = now.counts(now.meters(k.inputs))
            if base is not None:
                bn, bs = base.counts(base.meters(k.inputs))
                n, signed = n + bn, signed + bs
            out.append(_with(k, (n, signed)))
        else:
            out.append(_with(k, now.behind(k)))
    return out


def origin_summary(inputs: Inputs) -> dict[str, Any]:
    """The period's samples of the report's series by gateway and origin: each gateway
    its devices are on, with its contract, samples, gateway-signed samples and share."""
    samples: dict[int, int] = defaultdict(int)
    attested: dict[int, int] = defaultdict(int)
    for o in inputs.origins:
        samples[o.device[0]] += o.samples
        attested[o.device[0]] += o.attested
    rows = []
    for gid, g in inputs.gateways.items():
        n, signed = samples[gid], attested[gid]
        rows.append({
            "gateway": g.id, "site": g.site, "contract": g.contract, "samples": n,
            "attested": signed, "not_attested": n - signed, "share": ratio(signed, n),
        })  # fmt: skip
    n = sum(samples[gid] for gid in inputs.gateways)
    signed = sum(attested[gid] for gid in inputs.gateways)
    return {"samples": n, "attested": signed, "share": ratio(signed, n), "gateways": rows}
