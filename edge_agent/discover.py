"""`edge-agent discover`: find what a device offers and propose a config fragment.

    opc.tcp://HOST:PORT   browse Objects; each object with Monitoring and Production
                          below it (OPC 40501, umati machine tool) becomes a device:
                          state (MachineryItemState + OperationMode or
                          MachineryOperationMode), program, part counters (PartsCompleted,
                          PartsGood, ProductionPlan/<job>/RunsCompleted), spindle speed,
                          feed override; with notes on what to review (per-job counters)
    modbus://HOST:PORT    probe each table of one unit over an address range and list
                          the addresses that answer, with their raw values

The OPC UA fragment uses ``nsu=<namespace uri>;...`` NodeIds, which survive a server
that renumbers its namespaces after a restart. What is recognised, and why, is in
docs/agent.md ("Discover"). Discovery only reads.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from asyncua import Client, ua
from asyncua.common.node import Node
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge_agent.umati import ITEM_STATES, default_state

logger = logging.getLogger(__name__)

# browse name (without namespace) of a variable below a umati machine -> (tag, role, unit)
UMATI_ROLES: dict[tuple[str, ...], tuple[str, str, str | None]] = {
    ("Production", "ActiveProgram", "Name"): ("program", "program", None),
    ("PartsCompleted",): ("parts_completed", "part_count_total", "pcs"),
    ("PartsGood",): ("parts_good", "part_count_good", "pcs"),
    ("ActualSpeed",): ("spindle_rpm", "spindle_speed", "rpm"),
    ("FeedOverride",): ("feed_override_pct", "feed_override", "%"),
}
MAX_NODES = 20_000


@dataclass
class _Var:
    path: tuple[str, ...]  # browse names from the machine down
    node_id: str  # nsu= form


@dataclass
class _Machine:
    name: str
    variables: list[_Var] = field(default_factory=list)


def _nsu(node_id: ua.NodeId, namespaces: list[str]) -> str:
    text = node_id.to_string()
    if node_id.NamespaceIndex == 0:
        return text
    rest = text.split(";", 1)[1]
    return f"nsu={namespaces[node_id.NamespaceIndex]};{rest}"


async def _walk(
    node: Node,
    path: tuple[str, ...],
    out: list[tuple[tuple[str, ...], Node, ua.NodeClass]],
    depth: int,
) -> None:
    if depth > 10 or len(out) > MAX_NODES:
        return
    for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
        name = (await child.read_browse_name()).Name
        cls = await child.read_node_class()
        out.append(((*path, name), child, cls))
        if cls == ua.NodeClass.Object:
            await _walk(child, (*path, name), out, depth + 1)


def _is_machine(paths: set[tuple[str, ...]], root: tuple[str, ...]) -> bool:
    n = len(root)
    below = {p[n:] for p in paths if p[:n] == root}
    return ("Monitoring",) in below and ("Production",) in below


@dataclass
class Proposal:
    """A config fragment (``{"devices": [...]}``) and the notes to read before using it."""

    fragment: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _find(by_path: dict[tuple[str, ...], _Var], suffix: tuple[str, ...]) -> _Var | None:
    return next((v for p, v in by_path.items() if p[-len(suffix) :] == suffix), None)


def _state_node(device: str, by_path: dict[tuple[str, ...], _Var]) -> tuple[dict[str, Any], str]:
    """The machine_state node: the item state with a mode node, else a state_map."""
    state = _find(by_path, ("MachineryItemState", "CurrentState"))
    if state is None:
        return {}, ""
    entry: dict[str, Any] = {"tag": "state", "role": "machine_state", "node": state.node_id}
    mode = _find(by_path, ("MachineTool", "OperationMode")) or _find(
        by_path, ("MachineryOperationMode", "CurrentState")
    )
    if mode is not None:
        entry["umati_operation_mode"] = mode.node_id
        return entry, ""
    entry["state_map"] = {s: default_state(s, "Other").value for s in ITEM_STATES}
    return entry, (
        f"{device}.state: no OperationMode or MachineryOperationMode found, so the item state "
        "alone is mapped (state_map): setup and planned maintenance cannot be told from "
        "running or idle; give umati_operation_mode instead if the machine has a mode node"
    )


def _runs_nodes(
    device: str, by_path: dict[tuple[str, ...], _Var], has_parts: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Production/ProductionPlan/<job>/RunsCompleted: the part counter of OPC 40501."""
    runs = sorted(
        (p[-2], v)
        for p, v in by_path.items()
        if len(p) >= 3 and p[-3:-2] == ("ProductionPlan",) and p[-1] == "RunsCompleted"
    )
    nodes: list[dict[str, Any]] = []
    notes: list[str] = []
    for job, v in runs:
        tag = "runs_completed" if len(runs) == 1 else f"runs_completed_{_slug(job)}"
        role = "generic" if has_parts else "part_count_total"
        nodes.append({"tag": tag, "role": role, "node": v.node_id, "unit": "runs"})
        what = (
            f"{device}.{tag}: ProductionPlan/{job}/RunsCompleted counts the runs of job "
            f"{job!r}: a per-job counter, which starts again from 0 for each new job (the "
            "server counts the fall as a reset and adds the new reading), and a run can make "
            "several parts (the job's PartSets give PartsPerRun)"
        )
        if has_parts:
            notes.append(
                f"{what}; proposed as generic because the machine's PartsCompleted is its "
                "part_count_total, and two counters of one role on a device are added together"
            )
        else:
            notes.append(
                f"{what}; the machine's part counter (part_count_total); several jobs' "
                "counters on one device are added together"
            )
    return nodes, notes


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())


def propose(machines: list[_Machine], endpoint: str) -> Proposal:
    """The config fragment for the machines found (pure: tested without a server)."""
    devices = []
    notes: list[str] = []
    for m in machines:
        slug = _slug(m.name)
        by_path = {v.path: v for v in m.variables}
        nodes: list[dict[str, Any]] = []
        state, note = _state_node(slug, by_path)
        if state:
            nodes.append(state)
        if note:
            notes.append(note)
        for suffix, (tag, role, unit) in UMATI_ROLES.items():
            found = _find(by_path, suffix)
            if found is not None and all(n["tag"] != tag for n in nodes):
                node = {"tag": tag, "role": role, "node": found.node_id}
                if unit:
                    node["unit"] = unit
                nodes.append(node)
        has_parts = any(n["role"] == "part_count_total" for n in nodes)
        runs, runs_notes = _runs_nodes(slug, by_path, has_parts)
        nodes.extend(runs)
        notes.extend(runs_notes)
        if nodes:
            devices.append({"id": slug, "protocol": "opcua", "endpoint": endpoint, "nodes": nodes})
    return Proposal({"devices": devices}, notes)


async def discover_opcua(url: str, timeout_s: float = 5.0) -> Proposal:
    client = Client(url, timeout=timeout_s)
    await client.connect()
    try:
        namespaces = await client.get_namespace_array()
        found: list[tuple[tuple[str, ...], Node, ua.NodeClass]] = []
        await _walk(client.nodes.objects, (), found, 0)
        paths = {p for p, _, _ in found}
        roots = sorted(
            {p for p, _, cls in found if cls == ua.NodeClass.Object and _is_machine(paths, p)}
        )
        machines = []
        for root in roots:
            m = _Machine(root[-1])
            for p, node, cls in found:
                if cls == ua.NodeClass.Variable and p[: len(root)] == root:
                    m.variables.append(_Var(p[len(root) :], _nsu(node.nodeid, namespaces)))
            machines.append(m)
        return propose(machines, url)
    finally:
        await client.disconnect()


_TABLES = ("holding", "input", "coil", "discrete")


async def _read(
    client: AsyncModbusTcpClient, table: str, address: int, count: int, unit: int
) -> list[int] | None:
    fn = {
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
    }[table]
    try:
        rr = await fn(address, count=count, device_id=unit)
    except ModbusException:
        return None
    if rr.isError():
        return None
    if table in ("coil", "discrete"):
        return [int(b) for b in rr.bits[:count]]
    return list(rr.registers)


async def _probe(
    client: AsyncModbusTcpClient, table: str, lo: int, hi: int, *, unit: int, out: dict[int, int]
) -> None:
    """Addresses in [lo, hi] that answer: read the span, halve it on refusal."""
    values = await _read(client, table, lo, hi - lo + 1, unit)
    if values is not None:
        out.update(zip(range(lo, hi + 1), values, strict=False))
        return
    if lo == hi:
        return
    mid = (lo + hi) // 2
    await _probe(client, table, lo, mid, unit=unit, out=out)
    await _probe(client, table, mid + 1, hi, unit=unit, out=out)


async def probe_modbus(
    host: str, port: int, unit: int, lo: int, hi: int
) -> dict[str, dict[int, int]]:
    """Per table, the addresses in [lo, hi] that answer and their raw values."""
    client = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0, reconnect_delay=0)
    if not await client.connect():
        raise ConnectionError(f"cannot connect to {host}:{port}")
    try:
        found: dict[str, dict[int, int]] = {}
        for table in _TABLES:
            out: dict[int, int] = {}
            limit = 2000 if table in ("coil", "discrete") else 125
            for start in range(lo, hi + 1, limit):
                await _probe(client, table, start, min(hi, start + limit - 1), unit=unit, out=out)
            found[table] = dict(sorted(out.items()))
        return found
    finally:
        client.close()


def _ranges(addresses: list[int]) -> str:
    spans: list[str] = []
    start = prev = None
    for a in addresses:
        if start is None:
            start = prev = a
        elif a == (prev or 0) + 1:
            prev = a
        else:
            spans.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = a
    if start is not None:
        spans.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ", ".join(spans)


def main(args: argparse.Namespace) -> int:
    parts = urlsplit(args.url)
    if parts.scheme == "opc.tcp":
        try:
            proposal = asyncio.run(discover_opcua(args.url))
        except (OSError, TimeoutError, ua.UaError) as exc:
            print(f"edge-agent discover: cannot browse {args.url}: {exc}", file=sys.stderr)
            return 1
        n = len(proposal.fragment["devices"])
        print(f"# {n} umati machine tool(s) found on {args.url}; review ids and roles")
        for note in proposal.notes:
            print("\n".join(textwrap.wrap(note, 88, initial_indent="# ", subsequent_indent="#   ")))
        dump = yaml.safe_dump(proposal.fragment, sort_keys=False, allow_unicode=True, width=120)
        print(dump, end="")
        return 0
    if parts.scheme == "modbus":
        try:
            lo, hi = (int(x) for x in args.range.split("-"))
        except ValueError:
            print(
                f"edge-agent discover: --range {args.range!r}: write A-B, e.g. 0-99",
                file=sys.stderr,
            )
            return 2
        try:
            found = asyncio.run(
                probe_modbus(parts.hostname or "", parts.port or 502, args.unit, lo, hi)
            )
        except (OSError, ConnectionError) as exc:
            print(f"edge-agent discover: {exc}", file=sys.stderr)
            return 1
        print(f"# unit {args.unit} on {parts.hostname}:{parts.port or 502}, addresses {lo}-{hi}")
        for table, values in found.items():
            if values:
                print(f"{table}: {_ranges(list(values))}")
                print("  raw: " + ", ".join(f"{a}={v}" for a, v in values.items()))
            else:
                print(f"{table}: nothing answers")
        return 0
    print(
        f"edge-agent discover: {args.url!r}: use opc.tcp://HOST:PORT or modbus://HOST:PORT",
        file=sys.stderr,
    )
    return 2
