"""`factory-sim`: run the simulated factory, check a scenario, or write history.

    factory-sim [run] --scenario FILE [--truth truth.jsonl] [--speed N] [--fault SPEC]...
    factory-sim check FILE
    factory-sim history --scenario FILE --days N --out samples.jsonl.gz [--truth FILE]
    factory-sim agent-config --scenario FILE [--ready-file ready.json] [--out agent.yaml]
                             [--contract 2 [--key-file PATH]]

Exit codes: 0 ok, 2 bad arguments or scenario, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from simulators.scenario import (
    Scenario,
    ScenarioError,
    SecurityMode,
    default_scenario_path,
    load_scenario,
)

if TYPE_CHECKING:
    from simulators.control import ControlServer
    from simulators.runtime import FactorySim

logger = logging.getLogger("factory-sim")

SUBCOMMANDS = ("run", "check", "history", "agent-config", "registry")


def _parse_time(value: str) -> float:
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO date or time, e.g. 2026-11-23T08:00:00+08:00"
        ) from None
    if stamp.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no UTC offset; add one, e.g. +08:00")
    return stamp.timestamp()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="factory-sim", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve the factory over OPC UA and Modbus (default)")
    _scenario_args(run)
    run.add_argument("--truth", type=Path, help="write ground truth JSONL here")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--speed", type=float, default=1.0, help="sim seconds per wall second")
    run.add_argument("--start", type=_parse_time, help="sim start time (default: now)")
    run.add_argument("--duration", type=float, help="stop after this many sim seconds")
    run.add_argument("--tick", type=float, default=0.5, help="wall seconds between updates")
    run.add_argument("--free-ports", action="store_true", help="ignore the scenario's ports")
    run.add_argument(
        "--opcua-security",
        choices=["none", "sign_encrypt", "both"],
        help="override the scenario's OPC UA security modes",
    )
    run.add_argument("--cert-dir", type=Path, help="where OPC UA certificates are kept")
    run.add_argument(
        "--trusted-clients", type=Path,
        help="with sign_encrypt: admit only client certificates (DER/PEM) in this folder",
    )  # fmt: skip
    run.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:TARGET[:SECONDS][@AT]",
        help="inject a fault, e.g. offline:cnc-03:30@60, restart:opc-turning:5@120",
    )
    run.add_argument("--control-port", type=int, help="serve the control API on this port")
    run.add_argument("--ready-file", type=Path, help="write endpoints as JSON here once serving")
    run.add_argument(
        "--status-every", type=float, metavar="SECONDS", help="print machine states this often"
    )

    check = sub.add_parser("check", help="validate a scenario file and summarise it")
    check.add_argument("file", type=Path)

    hist = sub.add_parser("history", help="write N days of past samples and truth, fast")
    _scenario_args(hist)
    hist.add_argument("--days", type=float, required=True)
    hist.add_argument("--end", type=_parse_time, help="end of the period (default: now)")
    hist.add_argument("--out", type=Path, required=True, help="samples JSONL (.gz to compress)")
    hist.add_argument("--truth", type=Path)
    hist.add_argument("--interval", type=float, default=60.0, help="poll interval, seconds")

    agent = sub.add_parser("agent-config", help="print an edge-agent config for the scenario")
    _scenario_args(agent)
    agent.add_argument("--ready-file", type=Path, help="endpoints written by `run --ready-file`")
    agent.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    agent.add_argument("--outbox", default="var/outbox.db", help="outbox path in the config")
    agent.add_argument("--hmac-key-file", default="keys/gateway.key", help="contract 1's key")
    agent.add_argument(
        "--contract",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: sign with the gateway's own key (--key-file; make it with `edge-agent keys "
        "init --config AGENT.yaml`) instead of an HMAC key",
    )
    agent.add_argument(
        "--key-file", default="keys/gateway.ed25519", help="contract 2: the gateway's own key"
    )
    agent.add_argument("--gateway-id", default="gw-01")
    agent.add_argument("--mqtt-username", help="the gateway's broker login")
    agent.add_argument("--mqtt-password-file", help="its password file (mode 600)")
    agent.add_argument("--mqtt-ca", help="CA of the broker's certificate, for mqtts://")
    agent.add_argument("--out", type=Path, help="write here instead of standard output")

    reg = sub.add_parser("registry", help="print an ingest-server registry for the scenario")
    _scenario_args(reg)
    reg.add_argument("--gateway-id", default="gw-01")
    reg.add_argument("--out", type=Path, help="write here instead of standard output")
    return p


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", type=Path, default=default_scenario_path())
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("-v", "--verbose", action="store_true")


def _load(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(args.scenario)
    if getattr(args, "seed", None) is not None:
        scenario = scenario.model_copy(update={"seed": args.seed})
    return scenario


def free_ports(scenario: Scenario) -> Scenario:
    """The same scenario with every server on a free port (for tests and parallel runs)."""
    return scenario.model_copy(
        update={
            "opcua_servers": [s.model_copy(update={"port": 0}) for s in scenario.opcua_servers],
            "modbus_servers": [s.model_copy(update={"port": 0}) for s in scenario.modbus_servers],
        }
    )


def cmd_check(args: argparse.Namespace) -> int:
    s = load_scenario(args.file)
    key = {p.id for p in s.processes if p.key}
    key_eq = [e for e in s.equipment if e.process in key]
    print(f"{args.file}: ok")
    print(f"  {s.enterprise.name} / {s.site.name} ({s.site.timezone}), seed {s.seed}")
    print(
        f"  {len(s.processes)} processes ({len(key)} key), {len(s.equipment)} equipment, "
        f"{len(s.meters)} meters"
    )
    print(f"  declared key-process NC rate: {sum(e.nc for e in key_eq)}/{len(key_eq)}")
    for o in s.opcua_servers:
        print(f"  OPC UA {o.id}: port {o.port or 'free'}, machines {', '.join(o.machines)}")
    for m in s.modbus_servers:
        units = ", ".join(f"{u.unit}={u.device}" for u in m.units)
        print(f"  Modbus {m.id}: port {m.port or 'free'}, units {units}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from simulators.history import write_history  # noqa: PLC0415 - keeps `check` light

    scenario = _load(args)
    end = float(math.floor(args.end if args.end is not None else time.time()))
    start = end - args.days * 86_400
    t0 = time.perf_counter()
    counts = write_history(
        scenario, start=start, end=end, out=args.out, truth=args.truth, interval_s=args.interval
    )
    print(
        f"wrote {counts['samples']} samples to {args.out}"
        + (f" and {counts['truth_records']} truth records to {args.truth}" if args.truth else "")
        + f" in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def cmd_agent_config(args: argparse.Namespace) -> int:
    from simulators.agent_config import agent_config, dump_agent_config  # noqa: PLC0415

    scenario = _load(args)
    ready = {}
    if args.ready_file:
        try:
            ready = json.loads(args.ready_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(
                f"factory-sim: cannot read --ready-file {args.ready_file} ({exc}); start "
                "`factory-sim run --ready-file FILE` first and wait until it is written",
                file=sys.stderr,
            )
            return 2
    data = agent_config(
        scenario,
        opcua_urls=ready.get("opcua"),
        modbus_addresses=ready.get("modbus"),
        mqtt_url=args.mqtt_url,
        outbox_path=args.outbox,
        hmac_key_file=args.hmac_key_file,
        gateway_id=args.gateway_id,
        mqtt_username=args.mqtt_username,
        mqtt_password_file=args.mqtt_password_file,
        mqtt_ca_file=args.mqtt_ca,
        contract=args.contract,
        key_file=args.key_file,
    )
    text = dump_agent_config(data, scenario)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from simulators.agent_config import dump_registry, registry  # noqa: PLC0415

    scenario = _load(args)
    text = dump_registry(registry(scenario, gateway_id=args.gateway_id), scenario)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


async def _run(args: argparse.Namespace) -> int:
    from simulators.clock import ScaledClock  # noqa: PLC0415
    from simulators.control import ControlServer  # noqa: PLC0415
    from simulators.faults import FaultError, parse_fault  # noqa: PLC0415
    from simulators.runtime import FactorySim  # noqa: PLC0415

    scenario = _load(args)
    if args.free_ports:
        scenario = free_ports(scenario)
    try:
        faults = [parse_fault(f) for f in args.fault]
    except FaultError as exc:
        print(f"factory-sim: --fault: {exc}", file=sys.stderr)
        return 2
    modes: dict[str, list[SecurityMode]] = {
        "none": ["none"],
        "sign_encrypt": ["sign_encrypt"],
        "both": ["none", "sign_encrypt"],
    }
    security = modes[args.opcua_security] if args.opcua_security else None
    clock = ScaledClock(args.start, args.speed)
    try:
        sim = FactorySim(
            scenario,
            clock,
            truth_path=args.truth,
            host=args.host,
            tick_s=args.tick,
            opcua_security=security,
            cert_dir=args.cert_dir,
            faults=faults,
            opcua_trusted_clients=args.trusted_clients,
        )
    except FaultError as exc:
        print(f"factory-sim: --fault: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    control = None
    try:
        await sim.start()
        if args.control_port is not None:
            control = ControlServer(sim, host=args.host, port=args.control_port)
            await control.start()
    except (OSError, RuntimeError) as exc:
        await sim.stop()
        print(
            f"factory-sim: cannot listen ({exc}); a port is already taken: stop the other "
            "process, change the ports in the scenario, or pass --free-ports",
            file=sys.stderr,
        )
        return 1
    try:
        for line in sim.endpoints():
            print(line, flush=True)
        if control:
            print(f"Control API: {control.url}", flush=True)
        if args.truth:
            print(f"Truth: {args.truth}", flush=True)
        if args.ready_file:
            _write_ready(args.ready_file, sim, control)
        await _wait(sim, args, stop)
    finally:
        if control:
            await control.stop()
        await sim.stop()
    print("stopped", flush=True)
    return 0


async def _wait(sim: FactorySim, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Until Ctrl-C or --duration, printing a status line every --status-every seconds."""
    loop = asyncio.get_running_loop()
    deadline = None if args.duration is None else loop.time() + args.duration / args.speed
    while not stop.is_set():
        wait = args.status_every
        if deadline is not None:
            left = deadline - loop.time()
            if left <= 0:
                return
            wait = left if wait is None else min(wait, left)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
        if args.status_every and not stop.is_set():
            print(sim.summary_line(), flush=True)


def _write_ready(path: Path, sim: FactorySim, control: ControlServer | None) -> None:
    data = {
        "opcua": {sid: srv.url for sid, srv in sim.opcua.items()},
        "modbus": {sid: srv.address for sid, srv in sim.modbus.items()},
        "control": control.url if control else None,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncua warns about unused security policies on every start; keep real errors
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    try:
        if args.command == "check":
            return cmd_check(args)
        if args.command == "history":
            return cmd_history(args)
        if args.command == "agent-config":
            return cmd_agent_config(args)
        if args.command == "registry":
            return cmd_registry(args)
        return asyncio.run(_run(args))
    except ScenarioError as exc:
        print(f"factory-sim: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"factory-sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
