"""`ingest-server gateway add|enroll|revoke|broker-files|list`
(ingest_server/repo/gateways.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge_agent.contract import identity
from edge_agent.contract.secrets import read_secret
from ingest_server.cli.common import db_args, migrated_connection
from ingest_server.files import write_atomic
from ingest_server.repo import broker, gateways


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    gw = sub.add_parser("gateway", help="gateway identities: keys, broker login, ACL")
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
    _public_key_args(add, required=False)
    enroll = gw_sub.add_parser(
        "enroll", help="enrol a gateway's own public key (contract v2, edge-agent keys init)"
    )
    db_args(enroll)
    for name in ("enterprise", "site", "gateway"):
        enroll.add_argument(name)
    _public_key_args(enroll, required=True)
    rev = gw_sub.add_parser("revoke", help="remove a gateway's key and broker login")
    db_args(rev)
    for name in ("enterprise", "site", "gateway"):
        rev.add_argument(name)
    files = gw_sub.add_parser(
        "broker-files", help="Mosquitto's dynamic-security file, or password_file and acl_file"
    )
    db_args(files)
    files.add_argument("--dynsec", type=Path,
                       help="the dynamic-security plugin's file to write (recommended: it "
                       "checks subscriptions and binds client ids)")  # fmt: skip
    files.add_argument("--passwd", type=Path, help="password_file to write (with --acl)")
    files.add_argument("--acl", type=Path, help="acl_file to write (with --passwd)")
    files.add_argument(
        "--server-user", action="append", default=[], metavar="NAME=FILE",
        help="a server login (reads the gateways' data, writes their acks), its password "
        "in FILE; repeat",
    )  # fmt: skip
    files.add_argument("--share-group", default="ingest",
                       help="the servers' shared subscription group (run --share-group; "
                       "default ingest)")  # fmt: skip
    lst = gw_sub.add_parser("list", help="gateways, their secrets and status")
    db_args(lst)


def _public_key_args(sp: argparse.ArgumentParser, *, required: bool) -> None:
    sp.add_argument(
        "--public-key", required=required, metavar="KEY",
        help="the gateway's public key as `edge-agent keys init` printed it (44 characters "
        "of base64), or @FILE holding it or a PEM public key (contract v2)",
    )  # fmt: skip
    sp.add_argument("--replace", action="store_true",
                    help="replace an enrolled public key (compare the new fingerprint with "
                    "the gateway's first)")  # fmt: skip


def _public_key(text: str) -> bytes:
    """--public-key: the base64 text, or @FILE holding it or a PEM public key."""
    where = "--public-key"
    if text.startswith("@"):
        path = Path(text[1:])
        where = f"--public-key {text}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise ValueError(f"{where}: cannot read {path} ({reason})") from None
    if "PRIVATE KEY" in text:
        raise ValueError(
            f"{where}: this is a private key, which never leaves the gateway: give its public "
            "key (`edge-agent keys init` printed it)"
        )
    try:
        return identity.parse_public_key(text)
    except identity.KeyFileError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _enrolment_lines(name: str, e: gateways.Enrolment) -> list[str]:
    if e.outcome == "unchanged":
        return [
            f"gateway {name}: this public key is already enrolled (contract 2); nothing changed",
            f"  fingerprint: {e.fingerprint}",
        ]
    was = f" (it replaces {e.previous})" if e.previous else ""
    return [
        f"gateway {name}: public key enrolled{was}: contract 2",
        f"  fingerprint: {e.fingerprint}",
        "compare it with the fingerprint `edge-agent keys init` printed on the gateway",
        "(read aloud, or on the site-visit form) before trusting it; if they differ, this",
        "is not the gateway's key: enrol the one it printed, with --replace",
        "from now on the server accepts only contract v2 from this gateway: set",
        "gateway.contract: 2 in its agent config and restart the agent",
    ]


def _write_secret(path: Path, text: str, mode: int = 0o600) -> None:
    write_atomic(path, text.encode(), mode)


def cmd_gateway(args: argparse.Namespace) -> int:

    # a bad key is refused before the database is touched
    text = getattr(args, "public_key", None)
    public_key = None if text is None else _public_key(text)
    if getattr(args, "replace", False) and public_key is None:
        raise ValueError("--replace replaces an enrolled public key: give --public-key too")
    with migrated_connection(args) as conn:
        if args.gateway_command == "add":
            ident = gateways.add_gateway(
                conn, args.enterprise, args.site, args.gateway, rotate=args.rotate,
                public_key=public_key, replace=args.replace,
            )  # fmt: skip
            _bundle(conn, args, ident)
        elif args.gateway_command == "enroll":
            assert public_key is not None  # required by the parser
            enrolment = gateways.enroll_public_key(
                conn, enterprise=args.enterprise, site=args.site, gateway=args.gateway,
                public_key=public_key, replace=args.replace,
            )  # fmt: skip
            name = f"{args.enterprise}/{args.site}/{args.gateway}"
            print("\n".join(_enrolment_lines(name, enrolment)))
        elif args.gateway_command == "revoke":
            gateways.revoke_gateway(conn, args.enterprise, args.site, args.gateway)
            print(f"gateway {args.enterprise}/{args.site}/{args.gateway} revoked: running "
                  "servers refuse its batches within a minute; rewrite the broker files "
                  "(gateway broker-files) and restart the broker (dynamic security) or "
                  "reload it (kill -HUP, password and ACL files) to end its login")  # fmt: skip
        elif args.gateway_command == "broker-files":
            _broker_files(conn, args)
        else:
            for g in gateways.list_gateways(conn):
                state = "revoked" if g["revoked_at"] else (
                    "ready" if g["has_key"] and g["has_login"] else
                    "key only" if g["has_key"] else "no secrets")  # fmt: skip
                online = {True: "online", False: "offline", None: "never seen"}[g["online"]]
                print(f"{g['enterprise_id']}/{g['site_id']}/{g['id']:<16} {state:<10} "
                      f"{online:<10}  contract {g['contract']}  "
                      f"{g['fingerprint'] or '-'}")  # fmt: skip
    return 0


def _broker_files(conn: Any, args: argparse.Namespace) -> None:
    if (args.passwd is None) != (args.acl is None):
        raise ValueError("broker-files: --passwd and --acl go together: give both")
    if args.dynsec is None and args.passwd is None:
        raise ValueError(
            "broker-files: give --dynsec FILE (Mosquitto's dynamic-security plugin, which "
            "checks subscriptions and client ids) or --passwd FILE --acl FILE (a broker "
            "without the plugin), or both"
        )
    users = {}
    for spec in args.server_user:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise ValueError(f"--server-user {spec!r}: write NAME=PASSWORD_FILE")
        users[name] = read_secret(Path(file), "password").decode()
    if args.dynsec is not None:
        doc = broker.dynamic_security(conn, users, share_group=args.share_group)
        _write_secret(args.dynsec, json.dumps(doc, indent=2) + "\n")
        n = len(doc["clients"]) - len(users)
        print(f"{args.dynsec}: {n} gateway login(s), {len(users)} server login(s). Restart "
              "the broker: it reads this file at its start only")  # fmt: skip
    if args.passwd is not None:
        passwd, acl = broker.broker_files(conn, users)
        _write_secret(args.passwd, passwd)
        _write_secret(args.acl, acl, 0o640)
        n = passwd.count("\n") - len(users)
        print(f"{args.passwd}: {n} gateway login(s), {len(users)} server login(s); "
              f"{args.acl} written. Reload the broker: kill -HUP <its pid>")  # fmt: skip


def _bundle(conn: Any, args: argparse.Namespace, ident: gateways.Identity) -> None:
    out = args.out or Path(f"gateway-{ident.enterprise}-{ident.site}-{ident.gateway}")
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    # a gateway keeps contract 2 through --rotate: its config must say so even when no key
    # is given this time (the server dead-letters v1 batches from a contract-2 gateway)
    contract = gateways.contract_of(conn, ident.enterprise, ident.site, ident.gateway)
    key_name, pw_name = "gateway.key", "mqtt.password"
    if contract == 1:  # a contract-2 gateway signs with its own key: no HMAC key to carry
        _write_secret(out / key_name, ident.hmac_key.decode() + "\n")
    _write_secret(out / pw_name, ident.password + "\n")
    # contract 2 signs with the gateway's own key, made on it by `edge-agent keys init` at
    # its default path; the config then names no HMAC key
    signing_key = args.secrets_dir / ("gateway.ed25519" if contract == 2 else key_name)
    cfg = gateways.agent_skeleton(
        ident, args.mqtt_url, signing_key, args.secrets_dir / pw_name, contract=contract
    )
    _write_secret(out / "agent.yaml", cfg, 0o640)
    print(f"gateway {ident.enterprise}/{ident.site}/{ident.gateway}: bundle in {out}/")
    if contract == 1:
        print(f"  {key_name}       HMAC key (signs every batch), mode 600")
    print(f"  {pw_name}    broker password of user {ident.username}, mode 600")
    print("  agent.yaml       agent config skeleton: add the devices, then edge-agent check")
    if ident.enrolment is not None:
        name = f"{ident.enterprise}/{ident.site}/{ident.gateway}"
        print("\n".join(_enrolment_lines(name, ident.enrolment)))
        print("the bundle holds no contract v2 key: the gateway's private key stays on it")
    print(f"copy them to {args.secrets_dir}/ on the gateway (see docs/deploy.md), then "
          "rewrite the broker's file and restart the broker:")  # fmt: skip
    print(
        "  ingest-server gateway broker-files --dynsec /etc/mosquitto/dynamic-security.json "
        "--server-user ingest=/etc/factory-evidence/mqtt.password"
    )
    kinds = ",".join(broker.GATEWAY_KINDS)
    print("the broker will allow it only:", file=sys.stderr)
    print(f"  login {ident.username} with client id {ident.username}\n"
          f"  publish {ident.prefix}/{{{kinds}}}\n"
          f"  subscribe to and receive {ident.prefix}/ack", file=sys.stderr)  # fmt: skip
