"""`ingest-server accounts | api`: who may use the HTTP API, and serving it.

    ingest-server accounts add NAME --role R [--enterprise E] | token NAME | revoke ID
                           | password NAME | list          (ingest_server/repo/accounts.py)
    ingest-server api [--listen 127.0.0.1:8080]          serve the HTTP API (api/app.py)

The web stack (uvicorn, the FastAPI app) is imported inside `api` alone: `run` and its
workers never load it.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from pathlib import Path
from typing import Any

from edge_agent.contract.secrets import read_secret
from ingest_server.cli.common import db_args, migrated_connection, resolve_dsn, signing_key_path
from ingest_server.db.schema import migrate
from ingest_server.repo import accounts


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    acc = sub.add_parser("accounts", help="API accounts, roles and tokens")
    acc_sub = acc.add_subparsers(dest="accounts_command", required=True)
    a_add = acc_sub.add_parser("add", help="a new account")
    db_args(a_add)
    a_add.add_argument("name")
    a_add.add_argument("--role", required=True, choices=["admin", "enterprise", "verifier"])
    a_add.add_argument(
        "--enterprise", action="append", default=[], help="an enterprise it may see; repeat"
    )
    a_tok = acc_sub.add_parser("token", help="issue a token (printed once)")
    db_args(a_tok)
    a_tok.add_argument("name")
    a_tok.add_argument("--label", default="")
    a_rev = acc_sub.add_parser("revoke", help="revoke a token by its id (fe_<id>_...)")
    db_args(a_rev)
    a_rev.add_argument("token_id", type=int)
    a_pw = acc_sub.add_parser("password", help="set the console login password")
    db_args(a_pw)
    a_pw.add_argument("name")
    a_pw.add_argument(
        "--password-file", type=Path, help="read it from this file (mode 600); default: ask"
    )
    a_lst = acc_sub.add_parser("list", help="accounts, roles, enterprises, active tokens")
    db_args(a_lst)

    api = sub.add_parser("api", help="serve the HTTP API (OpenAPI at /docs)")
    db_args(api)
    api.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)"
    )
    api.add_argument("--signing-key", type=Path)
    api.add_argument(
        "--trusted-proxy",
        type=_trusted_proxy,
        action="append",
        default=[],
        metavar="IP",
        help="a reverse proxy (address or network, e.g. 127.0.0.1 or 10.0.0.0/24) whose "
        "X-Forwarded-For/-Proto headers are believed; repeat per proxy. Default none: the "
        "client address is the connection's, whatever the headers say",
    )


def cmd_accounts(args: argparse.Namespace) -> int:

    with migrated_connection(args) as conn:
        if args.accounts_command == "add":
            accounts.add_account(conn, args.name, args.role, args.enterprise)
            print(f"account {args.name} ({args.role}) added")
        elif args.accounts_command == "token":
            token = accounts.new_token(conn, args.name, args.label)
            print(token)
            print("this token is shown once: keep it in a secret store", file=sys.stderr)
        elif args.accounts_command == "password":
            accounts.set_password(conn, args.name, _password(args))
            print(f"password of {args.name} set")
        elif args.accounts_command == "revoke":
            accounts.revoke_token(conn, args.token_id)
            print(f"token {args.token_id} revoked")
        else:
            for name, role, ents, tokens, disabled in accounts.list_accounts(conn):
                off = "  (disabled)" if disabled else ""
                print(f"{name!s:<24} {role!s:<10} {tokens} token(s)  {ents or '*'}{off}")
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        return read_secret(args.password_file, "password").decode()
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _trusted_proxy(text: str) -> str:

    text = text.strip()
    try:
        if "/" in text:
            return str(ipaddress.ip_network(text, strict=False))
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IP address or network: give the proxy's address as the "
            "API sees it, e.g. 127.0.0.1 (nginx on this machine) or 10.0.0.0/24"
        ) from None


def cmd_api(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT: uvicorn shuts down, then raises the signal again,
    which ingest_server.cli.main turns into an exception, so the `finally` here stops the
    embedded server (by default SIGTERM would end the process before it)."""
    # the web stack is loaded by `api` alone: `run` and its workers need none of it (about
    # 20 MB and 0.3 s each)
    import uvicorn  # noqa: PLC0415

    from ingest_server.api.app import create_app  # noqa: PLC0415

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen {args.listen!r}: write HOST:PORT, e.g. 127.0.0.1:8080")
    dsn, pg = resolve_dsn(args, wait_s=60)
    try:
        migrate(dsn)
        app = create_app(dsn, signing_key=signing_key_path(args))
        # forwarded headers only from the proxies named: uvicorn would otherwise believe
        # them from 127.0.0.1, and a local client could pose as any address and slip
        # past the per-address login limit
        uvicorn.run(
            app,
            host=host,
            port=int(port),
            log_level="info",
            proxy_headers=bool(args.trusted_proxy),
            forwarded_allow_ips=list(args.trusted_proxy),
        )
    finally:
        if pg is not None:
            pg.release()
    return 0
