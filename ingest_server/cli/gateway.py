"""`ingest-server gateway add|revoke|broker-files|list` (ingest_server/repo/gateways.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_agent.contract.secrets import read_secret
from ingest_server.cli.common import db_args, migrated_connection
from ingest_server.files import write_atomic
from ingest_server.repo import gateways


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    gw = sub.add_parser("gateway", help="gateway identities: HMAC key, broker login, ACL")
    gw_sub = gw.add_subparsers(dest="gateway_command", required=True)
    add = gw_sub.add_parser("add", help="issue a gateway's key and broker login, write its bundle")
    db_args(add)
    for name in ("enterprise", "site", "gateway"):
        add.add_argument(name)
    add.add_argument(
        "--out", type=Path, default=None, help="bundle directory (default ./gateway-E-S-G)"
    )
    add.add_argument("--mqtt-url", default="mqtts://broker.example:8883",
                     help="the broker as the gateway reaches it (agent config)")  # fmt: skip
    add.add_argument("--secrets-dir", type=Path, default=Path("/etc/factory-evidence"),
                     help="where the key and password files will live on the gateway")  # fmt: skip
    add.add_argument("--rotate", action="store_true",
                     help="replace the secrets of a gateway that has them")  # fmt: skip
    rev = gw_sub.add_parser("revoke", help="remove a gateway's key and broker login")
    db_args(rev)
    for name in ("enterprise", "site", "gateway"):
        rev.add_argument(name)
    files = gw_sub.add_parser("broker-files", help="Mosquitto password_file and acl_file")
    db_args(files)
    files.add_argument("--passwd", type=Path, required=True, help="password_file to write")
    files.add_argument("--acl", type=Path, required=True, help="acl_file to write")
    files.add_argument(
        "--server-user", action="append", default=[], metavar="NAME=FILE",
        help="a server login that reads fe/v1/#, its password in FILE; repeat",
    )  # fmt: skip
    lst = gw_sub.add_parser("list", help="gateways, their secrets and status")
    db_args(lst)


def _write_secret(path: Path, text: str, mode: int = 0o600) -> None:
    write_atomic(path, text.encode(), mode)


def cmd_gateway(args: argparse.Namespace) -> int:

    with migrated_connection(args) as conn:
        if args.gateway_command == "add":
            ident = gateways.add_gateway(
                conn, args.enterprise, args.site, args.gateway, rotate=args.rotate
            )
            _bundle(args, ident)
        elif args.gateway_command == "revoke":
            gateways.revoke_gateway(conn, args.enterprise, args.site, args.gateway)
            print(f"gateway {args.enterprise}/{args.site}/{args.gateway} revoked: running "
                  "servers refuse its batches within a minute; rewrite the broker files "
                  "(gateway broker-files) and reload the broker (kill -HUP) to end its "
                  "login")  # fmt: skip
        elif args.gateway_command == "broker-files":
            users = {}
            for spec in args.server_user:
                name, sep, file = spec.partition("=")
                if not sep or not name or not file:
                    raise ValueError(f"--server-user {spec!r}: write NAME=PASSWORD_FILE")
                users[name] = read_secret(Path(file), "password").decode()
            passwd, acl = gateways.broker_files(conn, users)
            _write_secret(args.passwd, passwd)
            _write_secret(args.acl, acl, 0o640)
            n = passwd.count("\n") - len(users)
            print(f"{args.passwd}: {n} gateway login(s), {len(users)} server login(s); "
                  f"{args.acl} written. Reload the broker: kill -HUP <its pid>")  # fmt: skip
        else:
            for g in gateways.list_gateways(conn):
                state = "revoked" if g["revoked_at"] else (
                    "ready" if g["has_key"] and g["has_login"] else
                    "key only" if g["has_key"] else "no secrets")  # fmt: skip
                online = {True: "online", False: "offline", None: "never seen"}[g["online"]]
                print(f"{g['enterprise_id']}/{g['site_id']}/{g['id']:<16} {state:<10} {online}")
    return 0


def _bundle(args: argparse.Namespace, ident: gateways.Identity) -> None:
    out = args.out or Path(f"gateway-{ident.enterprise}-{ident.site}-{ident.gateway}")
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    key_name, pw_name = "gateway.key", "mqtt.password"
    _write_secret(out / key_name, ident.hmac_key.decode() + "\n")
    _write_secret(out / pw_name, ident.password + "\n")
    cfg = gateways.agent_skeleton(
        ident, args.mqtt_url, args.secrets_dir / key_name, args.secrets_dir / pw_name
    )
    _write_secret(out / "agent.yaml", cfg, 0o640)
    print(f"gateway {ident.enterprise}/{ident.site}/{ident.gateway}: bundle in {out}/")
    print(f"  {key_name}       HMAC key (signs every batch), mode 600")
    print(f"  {pw_name}    broker password of user {ident.username}, mode 600")
    print("  agent.yaml       agent config skeleton: add the devices, then edge-agent check")
    print(f"copy them to {args.secrets_dir}/ on the gateway (see docs/deploy.md), and "
          "rewrite the broker files:")  # fmt: skip
    print(
        "  ingest-server gateway broker-files --passwd /etc/mosquitto/passwd "
        "--acl /etc/mosquitto/acl --server-user ingest=/etc/factory-evidence/mqtt.password"
    )
    print("the broker will allow it only:", file=sys.stderr)
    print(f"  user {ident.username}\n  topic write {ident.prefix}/#", file=sys.stderr)
