"""`edge-agent`: the gateway agent (OPC UA and Modbus to MQTT).

edge-agent run CONFIG             collect and publish until SIGTERM / Ctrl-C
edge-agent check CONFIG           validate, print the read plan, exit 0 (or 2)
edge-agent backfill --config CONFIG HISTORY.jsonl[.gz]
                                  publish past samples through the outbox, then exit
edge-agent discover opc.tcp://HOST:PORT
edge-agent discover modbus://HOST:PORT --unit N --range A-B
edge-agent keys init [--key PATH] [--config CONFIG]
                                  make the gateway's own key pair (contract v2), print
                                  its public key and fingerprint; exit 2 if it exists
edge-agent keys show [--key PATH] [--config CONFIG]
                                  print the public key and fingerprint of that key
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import AgentConfig, ModbusDeviceConfig, OpcUaDeviceConfig, load_config
from edge_agent.contract.secrets import ConfigError, read_secret
from edge_agent.modbus_plan import describe_plan, plan_device
from edge_agent.outbox import OutboxError

EXIT_BAD_CONFIG = 2
# beside the HMAC key and the broker password that `ingest-server gateway add` issues
# (docs/deploy.md: --secrets-dir, default /etc/factory-evidence/)
DEFAULT_KEY_FILE = Path("/etc/factory-evidence/gateway.ed25519")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent", description="factory-evidence gateway agent: OPC UA and Modbus to MQTT"
    )
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="collect and publish until stopped")
    run.add_argument("config", type=Path)
    check = sub.add_parser("check", help="validate a config and print the read plan")
    check.add_argument("config", type=Path)
    back = sub.add_parser(
        "backfill", help="publish a history file's samples through the outbox, then exit"
    )
    back.add_argument("--config", type=Path, required=True, help="the agent config")
    back.add_argument("history", type=Path, help="JSON lines (gzip too), factory-sim history's")
    disc = sub.add_parser("discover", help="browse an OPC UA server or probe a Modbus device")
    disc.add_argument("url", help="opc.tcp://HOST:PORT or modbus://HOST:PORT")
    disc.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    disc.add_argument("--range", default="0-99", help="Modbus addresses to probe, A-B")
    disc.add_argument("--device", default=None, help="device id for the config fragment")
    keys = sub.add_parser("keys", help="the gateway's own Ed25519 key pair (contract v2)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name, what in (
        ("init", "make the key pair; print the public key and fingerprint to enrol"),
        ("show", "print the public key and fingerprint of the gateway's key"),
    ):
        k = keys_sub.add_parser(name, help=what)
        k.add_argument(
            "--key",
            type=Path,
            default=None,
            help=f"the private key file (default: the config's gateway.key_file, else "
            f"{DEFAULT_KEY_FILE})",
        )
        k.add_argument("--config", type=Path, default=None, help="the agent config")
    return p


def plan_lines(config: AgentConfig) -> list[str]:
    lines = []
    for d in config.devices:
        if isinstance(d, ModbusDeviceConfig):
            where = d.link.removeprefix("tcp:").removeprefix("rtu:")
            lines.append(f"{describe_plan(d.id, plan_device(d))} (unit {d.unit} on {where})")
        else:
            assert isinstance(d, OpcUaDeviceConfig)
            how = (
                f"subscription, publishing {d.publishing_interval_ms} ms, "
                f"sampling {d.sampling_interval_ms} ms"
                if d.mode == "subscription"
                else f"polling every {d.poll_interval_s:g} s"
            )
            lines.append(f"{d.id}: {len(d.nodes)} nodes by {how} ({d.endpoint})")
            if d.umati_states:
                pairs = ", ".join(f"{k} -> {v.value}" for k, v in d.umati_states.items())
                lines.append(f"{d.id}: umati states overridden: {pairs}")
    return lines


def _secret_problems(config: AgentConfig) -> list[str]:
    files = []
    if config.gateway.contract == 1:  # contract 2 does not use an HMAC key file
        files.append((config.hmac_key_file, "HMAC key (mqtt.hmac_key_file)"))
    if config.mqtt.password_file is not None:
        files.append((config.mqtt.password_file, "MQTT password (mqtt.password_file)"))
    files.extend(
        (d.password_file, f"OPC UA password of {d.id}")
        for d in config.devices
        if isinstance(d, OpcUaDeviceConfig) and d.password_file is not None
    )
    problems: list[str] = []
    for path, what in files:
        try:
            read_secret(path, what)
        except ConfigError as exc:
            problems.extend(f"{exc.source}: {p}" for p in exc.problems)
    return problems


def cmd_check(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_CONFIG
    except ValueError as exc:  # a plan that cannot be read (a tag wider than the limit)
        print(f"{path}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        lines = plan_lines(config)
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    problems = _secret_problems(config)
    if problems:
        print(f"{path}: secrets cannot be used:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    g = config.gateway
    print(
        f"{path}: OK: gateway {g.enterprise}/{g.site}/{g.id}, {len(config.devices)} device(s), "
        f"MQTT {config.mqtt.url}, outbox {config.outbox.path}"
    )
    for line in lines:
        print(f"  {line}")
    if g.key_file is not None and not _check_gateway_key(path, g.key_file, g.contract):
        return EXIT_BAD_CONFIG
    if g.contract == 1:
        print(
            f"{path}: warning: gateway.contract 1: batches are signed with the HMAC key the "
            "server holds too, so the server (or whoever reads its secrets) can forge this "
            "gateway's data. Move to contract 2: `edge-agent keys init --config "
            f"{path}`, enrol the public key it prints on the server (`ingest-server gateway "
            "enroll ... --public-key`), then set gateway.contract: 2 (docs/agent.md, "
            '"Contract 2")',
            file=sys.stderr,
        )
    return 0


def _check_gateway_key(path: Path, key_file: Path, contract: int) -> bool:
    """False when contract 2 cannot use the key; contract 1 does not need it: a warning."""
    from edge_agent.contract import identity  # noqa: PLC0415 - keep `check` light

    try:
        signer = identity.FileSigner.load(key_file)
    except identity.KeyFileError as exc:
        if contract == 2:
            print(f"{path}: gateway.key_file cannot be used: {exc}", file=sys.stderr)
            return False
        print(
            f"{path}: warning: gateway.key_file cannot be used (contract 1 does not need it): "
            f"{exc}",
            file=sys.stderr,
        )
        return True
    use = (
        "signs every payload (contract 2)"
        if contract == 2
        else "for contract 2; contract 1 signs with mqtt.hmac_key_file"
    )
    fp = identity.fingerprint(signer.public_key())
    print(f"  gateway key {key_file}: fingerprint {fp} ({use})")
    return True


def cmd_keys(command: str, key: Path | None, config_path: Path | None) -> int:
    """`keys init` / `keys show`: what an installer enrols and an integrator compares."""
    from edge_agent.contract import identity  # noqa: PLC0415 - keep `check` light

    config = None
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_BAD_CONFIG
    if key is None and config is not None:
        key = config.gateway.key_file
    path = key if key is not None else DEFAULT_KEY_FILE
    try:
        if command == "init":
            signer = identity.FileSigner.create(path)
        else:
            signer = identity.FileSigner.load(path)
    except identity.KeyFileError as exc:
        print(f"edge-agent keys {command}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    public = identity.public_key_text(signer.public_key())
    fp = identity.fingerprint(signer.public_key())
    print(f"public key:  {public}")
    print(f"fingerprint: {fp}")
    if command == "init":
        g = config.gateway if config is not None else None
        who = f"{g.enterprise} {g.site} {g.id}" if g else "ENTERPRISE SITE GATEWAY"
        print(f"next: enrol the public key on the server and check it prints fingerprint {fp}:")
        print(f"  ingest-server gateway enroll {who} --public-key {public}")
        print(
            f"edge-agent keys init: wrote {path} (mode 600; keep it on this gateway)",
            file=sys.stderr,
        )
    return 0


def cmd_run(path: Path) -> int:
    try:
        config = load_config(path)
        plan_lines(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_CONFIG
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    from edge_agent.agent import Agent  # noqa: PLC0415 - keep `check` light

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Agent(config).run(stop)

    try:
        asyncio.run(main())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_CONFIG
    except OutboxError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_backfill(path: Path, history: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_CONFIG
    from edge_agent.backfill import (  # noqa: PLC0415 - keep `check` light
        Backfill,
        BackfillInterruptedError,
        BackfillResult,
        HistoryError,
    )

    async def main() -> BackfillResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await Backfill(config, history, config_path=path).run(stop)

    try:
        result = asyncio.run(main())
    except (ConfigError, HistoryError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_CONFIG
    except (OutboxError, BackfillInterruptedError) as exc:
        print(f"edge-agent backfill: {exc}", file=sys.stderr)
        return 1
    by = "server" if config.gateway.contract == 2 else "broker"  # who deletes a batch
    lost = ""
    if result.dropped_samples:  # outbox.max_bytes under two batches; the outbox logged it
        lost = f", {result.dropped_samples} samples DROPPED by outbox.max_bytes,"
    print(
        f"backfill {history}: {result.samples} samples in {result.batches} batches (boot "
        f"{result.boot}) acknowledged by the {by}{lost} in {result.seconds:.1f} s"
    )
    return 1 if result.dropped_samples else 0


def cmd_discover(args: argparse.Namespace) -> int:
    from edge_agent import discover  # noqa: PLC0415 - needs the protocol stacks

    return discover.main(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncua and pymodbus log every retry and timeout, up to ERROR; the agent reports
    # each failure itself, once, with the device and the fix. --log-level DEBUG shows all.
    if args.log_level != "DEBUG":
        for noisy in ("asyncua", "pymodbus"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if args.command == "check":
        return cmd_check(args.config)
    if args.command == "run":
        return cmd_run(args.config)
    if args.command == "backfill":
        return cmd_backfill(args.config, args.history)
    if args.command == "keys":
        return cmd_keys(args.keys_command, args.key, args.config)
    return cmd_discover(args)


if __name__ == "__main__":
    sys.exit(main())
