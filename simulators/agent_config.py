"""An edge-agent config that reads a scenario's simulated plant, generated from it.

    factory-sim agent-config --scenario demo.yaml [--ready-file ready.json] > agent.yaml

The scenario already says where every value lives (OPC UA browse paths, Modbus tables,
addresses, types, word orders, scales, state codes), so the agent's config is derived,
never typed twice: the committed ``scenarios/demo-agent.yaml`` is this module's output
for the demo (a test keeps the two equal), and tests generate one for simulators on
free ports. Tag ids are the simulator's source names, the same as in history files.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

from simulators.opcua_server import VARIABLES
from simulators.scenario import Register, Scenario

ROLE_OF_SOURCE = {
    "state": "machine_state",
    "parts_completed": "part_count_total",
    "parts_good": "part_count_good",
    "running": "generic",
    "alarm": "alarm",
    "energy_kwh": "energy_kwh",
    "power_kw": "power_kw",
    "water_m3": "water_m3",
    "gas_m3": "gas_m3",
    "flow_m3_per_h": "generic",
}
UNIT_OF_SOURCE = {
    "parts_completed": "pcs",
    "parts_good": "pcs",
    "energy_kwh": "kWh",
    "power_kw": "kW",
    "water_m3": "m3",
    "gas_m3": "m3",
    "flow_m3_per_h": "m3/h",
}
# OPC UA value key -> (tag id, role, unit, deadband)
OPCUA_TAGS = {
    "program": ("program", "program", None, 0.0),
    "parts_completed": ("parts_completed", "part_count_total", "pcs", 0.0),
    "parts_good": ("parts_good", "part_count_good", "pcs", 0.0),
    "actual_speed": ("spindle_rpm", "spindle_speed", "rpm", 5.0),
    "feed_override": ("feed_override_pct", "feed_override", "%", 0.0),
}


def _opcua_node(application_uri: str, machine: str, key: str) -> str:
    path = ".".join(name for _, name in VARIABLES[key][0])
    return f"nsu={application_uri};s={machine}.{path}"


def _metadata(scenario: Scenario, device: str) -> dict[str, Any]:
    eq = scenario.equipment_by_id().get(device)
    if eq is None:
        meter = scenario.meters_by_id()[device]
        return {"kind": "meter", "carrier": meter.carrier.value, "name": meter.name}
    meta: dict[str, Any] = {"kind": "machine", "name": eq.name, "vendor": eq.vendor}
    meta |= {"model": eq.model, "serial": eq.serial, "nc": eq.nc}
    return meta


def _register_tag(r: Register) -> dict[str, Any]:
    tag: dict[str, Any] = {"tag": r.source, "role": ROLE_OF_SOURCE[r.source]}
    if r.source in UNIT_OF_SOURCE:
        tag["unit"] = UNIT_OF_SOURCE[r.source]
    tag |= {"function": r.table, "address": r.address, "type": r.type}
    if r.order != "ABCD":
        tag["order"] = r.order
    if r.scale != 1.0:
        tag["scale"] = r.scale
    if r.codes:
        tag["state_map"] = {code: state.value for state, code in r.codes.items()}
    return tag


def agent_config(
    scenario: Scenario,
    *,
    opcua_urls: dict[str, str] | None = None,
    modbus_addresses: dict[str, str] | None = None,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    outbox_path: str = "var/outbox.db",
    hmac_key_file: str = "keys/gateway.key",
    gateway_id: str = "gw-01",
    poll_interval_s: float = 1.0,
    mqtt_username: str | None = None,
    mqtt_password_file: str | None = None,
    mqtt_ca_file: str | None = None,
    contract: int = 1,
    key_file: str = "keys/gateway.ed25519",
) -> dict[str, Any]:
    """The agent config (as plain data) for a scenario's servers.

    opcua_urls / modbus_addresses override the scenario's ports (server id -> URL or
    host:port), as written by ``factory-sim run --ready-file``; the broker login and CA,
    when given, are those of `ingest-server gateway add` and deploy/certs/make-certs.sh.
    contract 2 signs with the gateway's own key, `key_file` (`edge-agent keys init`
    makes it), and needs no HMAC key; contract 1 keeps the HMAC key file.
    """
    if contract not in (1, 2):
        raise ValueError(f"contract {contract!r}: 1 or 2")
    devices: list[dict[str, Any]] = []
    for srv in scenario.opcua_servers:
        url = (opcua_urls or {}).get(srv.id, f"opc.tcp://127.0.0.1:{srv.port}/")
        uri = f"urn:factory-evidence:sim:{srv.id}"
        for machine in srv.machines:
            nodes: list[dict[str, Any]] = [
                {
                    "tag": "state",
                    "role": "machine_state",
                    "node": _opcua_node(uri, machine, "state"),
                    "umati_operation_mode": _opcua_node(uri, machine, "operation_mode"),
                }
            ]
            for key, (tag, role, unit, deadband) in OPCUA_TAGS.items():
                node: dict[str, Any] = {
                    "tag": tag,
                    "role": role,
                    "node": _opcua_node(uri, machine, key),
                }
                if unit:
                    node["unit"] = unit
                if deadband:
                    node["deadband"] = deadband
                nodes.append(node)
            devices.append(
                {
                    "id": machine,
                    "protocol": "opcua",
                    "endpoint": url,
                    "metadata": _metadata(scenario, machine),
                    "nodes": nodes,
                }
            )
    for mb in scenario.modbus_servers:
        address = (modbus_addresses or {}).get(mb.id, f"127.0.0.1:{mb.port}")
        host, _, port = address.rpartition(":")
        devices.extend(
            {
                "id": unit.device,
                "protocol": "modbus",
                "host": host,
                "port": int(port),
                "unit": unit.unit,
                "poll_interval_s": poll_interval_s,
                "metadata": _metadata(scenario, unit.device),
                "tags": [_register_tag(r) for r in unit.registers],
            }
            for unit in mb.units
        )
    gateway: dict[str, Any] = {
        "enterprise": scenario.enterprise.id,
        "site": scenario.site.id,
        "id": gateway_id,
    }
    if contract == 2:
        gateway |= {"contract": 2, "key_file": key_file}
    return {
        "version": 1,
        "gateway": gateway,
        "mqtt": {
            "url": mqtt_url,
            **({"username": mqtt_username} if mqtt_username else {}),
            **({"password_file": mqtt_password_file} if mqtt_password_file else {}),
            **({"tls": {"ca_file": mqtt_ca_file}} if mqtt_ca_file else {}),
            **({"hmac_key_file": hmac_key_file} if contract == 1 else {}),
        },
        "outbox": {"path": outbox_path},
        "devices": devices,
    }


def dump_agent_config(data: dict[str, Any], scenario: Scenario) -> str:
    header = (
        f"# edge-agent config for the simulated plant of scenario {scenario.name!r}.\n"
        "# Generated by `factory-sim agent-config`; regenerate rather than edit.\n"
        "# Devices without a network interface (interface: none, meter_only) have no entry:\n"
        "# the gateway cannot see them, so the KPIs count them as not networked.\n"
    )
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return header + body


CARRIER_UNIT = {"electricity": "kWh", "water": "m3", "gas": "m3"}
# the demo's nameplates: a type designation and accuracy class (准确度等级) by carrier
NAMEPLATE = {"electricity": ("DTSD-3P4W", "0.5S"), "water": ("LXS-50E", "2"),
             "gas": ("LWQ-50", "1.5")}  # fmt: skip
DEMO_LAB = "演示计量检定站 (模拟) Demo Metrology Station (simulated)"


def nameplate(index: int, carrier: str, count: int) -> dict[str, Any]:
    """A meter's serial, model, accuracy class and calibration certificate, invented for
    the demo: the last meter has no certificate and the one before it an expired one, so
    that a report shows both warnings; the others are valid through March 2027."""
    model, accuracy = NAMEPLATE[carrier]
    item: dict[str, Any] = {
        "serial": f"HF{index + 1:06d}", "model": model, "accuracy_class": accuracy,
    }  # fmt: skip
    if index == count - 1:
        return item
    expired = index == count - 2
    item["calibration"] = {
        "certificate": f"JD{2024 if expired else 2026}-{index + 1:04d}",
        "issued_by": DEMO_LAB,
        "calibrated_on": dt.date(2024, 5, 20) if expired else dt.date(2026, 3, 10),
        "valid_until": dt.date(2026, 5, 19) if expired else dt.date(2027, 3, 9),
    }
    return item


# a small catalogue of downtime reasons (停机原因) for operators to attach to DOWN and
# IDLE intervals in the console (docs/ingest.md#downtime-reasons); categories are ISO
# 22400-2's planned and unplanned time and the enterprise's own groupings
DEMO_DOWNTIME_REASONS = [
    {"id": "breakdown", "name": "设备故障", "name_en": "Breakdown", "category": "unplanned",
     "applies_to": "DOWN"},
    {"id": "tooling", "name": "刀具更换", "name_en": "Tool change", "category": "unplanned"},
    {"id": "no-material", "name": "待料", "name_en": "Waiting for material",
     "category": "material", "applies_to": "IDLE"},
    {"id": "quality-check", "name": "质量检验", "name_en": "Quality inspection",
     "category": "quality"},
    {"id": "maintenance", "name": "计划保养", "name_en": "Planned maintenance",
     "category": "planned"},
    {"id": "no-operator", "name": "缺人", "name_en": "No operator", "category": "unplanned",
     "applies_to": "IDLE"},
]  # fmt: skip


def registry(scenario: Scenario, *, gateway_id: str = "gw-01") -> dict[str, Any]:
    """The ingestion server's registry for the scenario's plant (ingest-server registry
    import): the same enterprise, site, calendar, processes, equipment and meters, with
    every networked device read by one gateway. The gateway's key is not in it: give it
    with `--key GATEWAY=FILE` at import."""
    networked = {m for srv in scenario.opcua_servers for m in srv.machines}
    networked |= {u.device for mb in scenario.modbus_servers for u in mb.units}
    parent = {sub: m.id for m in scenario.meters for sub in m.submeters}

    def source(device: str) -> dict[str, str]:
        return {"gateway": gateway_id, "device": device} if device in networked else {}

    equipment = []
    for e in scenario.equipment:
        item: dict[str, Any] = {
            "id": e.id,
            "name": e.name,
            "name_en": e.name_en,
            "process": e.process,
            "nc": e.nc,
            "interface": e.interface.value,
            "ideal_cycle_time_s": e.ideal_cycle_time_s,
        }
        for key in ("product", "vendor", "model", "serial"):
            if getattr(e, key):
                item[key] = getattr(e, key)
        if e.year is not None:
            item["year"] = e.year
        equipment.append(item | source(e.id))
    meters = []
    for i, m in enumerate(scenario.meters):
        item = {
            "id": m.id,
            "name": m.name,
            "name_en": m.name_en,
            "carrier": m.carrier.value,
            "unit": CARRIER_UNIT[m.carrier.value],
        }
        if m.id in parent:
            item["parent"] = parent[m.id]
        if m.covers:
            item["covers"] = list(m.covers)
        item |= nameplate(i, m.carrier.value, len(scenario.meters))
        meters.append(item | source(m.id))
    cal = scenario.calendar.model_dump(mode="json")
    return {
        "version": 1,
        "enterprises": [
            {
                "id": scenario.enterprise.id,
                "name": scenario.enterprise.name,
                "name_en": scenario.enterprise.name_en,
                "credit_code": scenario.enterprise.credit_code,
                # the default text (docs/kpi.md#declaration); an invented signatory
                "declaration": {"signatory": "王建国", "position": "总经理 General manager"},
                "downtime_reasons": DEMO_DOWNTIME_REASONS,
                "calendars": [{"id": "default", **cal}],
                "processes": [
                    {"id": p.id, "name": p.name, "name_en": p.name_en, "key": p.key}
                    for p in scenario.processes
                ],
                "sites": [
                    {
                        "id": scenario.site.id,
                        "name": scenario.site.name,
                        "name_en": scenario.site.name_en,
                        "timezone": scenario.site.timezone,
                        "grid_region": scenario.site.grid_region,
                        "calendar": "default",
                        "gateways": [{"id": gateway_id}],
                        "equipment": equipment,
                        "meters": meters,
                    }
                ],
            }
        ],
    }


def dump_registry(data: dict[str, Any], scenario: Scenario) -> str:
    header = (
        f"# ingest-server registry for the simulated plant of scenario {scenario.name!r}.\n"
        "# Generated by `factory-sim registry`; regenerate rather than edit.\n"
        "# The gateway's HMAC key is given at import: ingest-server registry import FILE\n"
        "# --key gw-01=KEYFILE. Equipment without gateway/device is not networked.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
